"""Checking that video files decode from their first to their last frame, without decoding them whole.

Library code behind ``data_scripts/verify_videos.py``; the data module skips files that fail at run time
anyway, so this is for cleaning a dataset once, before training on it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from video_gn.data import decode
from video_gn.data.prep import stream_frame_rate
from video_gn.data.progress import parallel_map

__all__ = ["VideoCheck", "verify_video", "verify_videos"]


@dataclass(frozen=True)
class VideoCheck:
    """Result of :func:`verify_video` for one file (``ok`` False means: do not train on it).

    Attributes:
        path: the file.
        ok: whether every check passed.
        error: why not (empty if ok).
        frames_decoded: frames decoded at the start of the video.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frame rate.
        duration: seconds, from the header.
        num_frames: frames the header announces (its count capped by its duration, or a Matroska segment's
            duration × fps), else those counted from the packets' timestamps.
        last_frame: number of the last frame that decoded at the end of the stream (-1: not checked).
    """

    path: str
    ok: bool
    error: str = ""
    frames_decoded: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0
    num_frames: int = 0
    last_frame: int = -1


def verify_video(path: str | os.PathLike, num_frames: int = 4, check_end: bool = True) -> VideoCheck:
    """Check that ``path`` opens and decodes from its first to its last frame, without decoding it all.

    Decodes (1) the first ``num_frames`` frames, (2) the first frame after seeking to 1/3 and to 2/3 of the
    video, and, if ``check_end``, (3) every frame from the last key frame to the end of the stream, and
    compares the number of the last frame with the length the header announces: a stream that ends more
    than ``max(2, 2 %)`` frames early is truncated (the rule the loader applies,
    :mod:`video_gn.data.decode`). Step 3 is what catches a file that lost its last few percent of bytes but
    kept its index at the front (MP4 "faststart"): it opens, and its first and middle frames decode. (An
    MP4 with its index at the end loses the index and already fails to open.) Cost: one GOP plus a few
    frames per file.

    Never raises for a bad file: zero-byte, corrupt, truncated, non-video and audio-only files give
    ``ok=False`` with the reason in ``error``.

    Args:
        path: the video.
        num_frames: frames to decode at the start.
        check_end: also decode the last GOP and check the length.

    Returns:
        A :class:`VideoCheck`.
    """
    import av

    path = str(path)
    try:
        if os.path.getsize(path) == 0:
            return VideoCheck(path, False, "empty file (0 bytes)")
        with av.open(path) as c:
            if not c.streams.video:
                return VideoCheck(path, False, "no video stream")
            if image := decode.still_image_format(c):
                return VideoCheck(path, False, f"a still image ({image} format), not a video")
            vs = c.streams.video[0]
            if vs.codec_context is None:
                return VideoCheck(path, False, "no decoder for its video codec (unknown or damaged codec id)")
            fps = float(stream_frame_rate(vs))
            duration = 0.0
            if vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            elif c.duration is not None:  # Matroska: the segment's end time, start offset included
                duration = max(0.0, (c.duration - (c.start_time or 0)) / 1_000_000)
            # The loader's frame count: the header's, else counted from the packets' timestamps. The
            # truncation check's reference is what the header announces: its count, or a Matroska
            # segment's duration (written when the file was finished, so a cut file still announces its
            # full length); MPEG-TS/PS durations come from the file's last timestamps and announce nothing.
            announced = decode.header_frames(vs, fps)
            total = announced or decode.count_frames(path, fps)
            if not announced and "matroska" in c.format.name:
                announced = int(math.floor(duration * fps + 0.5))
            if total <= 0:
                return VideoCheck(path, False, "no video packets with timestamps", fps=fps)
            start_pts = vs.start_time or 0
            scale = float(vs.time_base) * fps  # pts ticks -> frames

            def frame_pts(frame_index: float) -> int:
                return start_pts + int(frame_index / scale)

            facts = dict(fps=fps, duration=duration, num_frames=announced or total)
            n = 0
            width = height = 0
            for frame in c.decode(vs):
                width, height = frame.width, frame.height
                n += 1
                if n >= num_frames:
                    break
            if n == 0:
                return VideoCheck(path, False, "no decodable video frames", **facts)
            facts.update(frames_decoded=n, width=width, height=height)
            for part in (1, 2):  # a frame a third and two thirds of the way in
                target = part * total // 3
                if target < num_frames:
                    continue
                c.seek(frame_pts(target), stream=vs, backward=True, any_frame=False)
                if next(iter(c.decode(vs)), None) is None:
                    return VideoCheck(
                        path, False, f"no frame decodes near frame {target} of {total}", **facts
                    )
            if not check_end:
                return VideoCheck(path, True, "", **facts)
            # The end: from the last key frame (seek backwards from past the last frame) to the end of the
            # stream, every frame decoded (non-reference ones too: the last shown frame may be one). MPEG-TS/PS
            # seek by bisection and can land past the last key frame: then from a few seconds, then a third,
            # further back.
            last = -1
            try:
                for target in (total + 1, total - max(int(3 * fps), total // 20), 2 * total // 3):
                    c.seek(frame_pts(max(target, 0)), stream=vs, backward=True, any_frame=False)
                    for frame in c.decode(vs):
                        pts = frame.pts if frame.pts is not None else frame.dts
                        if pts is not None:
                            last = max(last, int(round((pts - start_pts) * scale)))
                    if last >= 0:
                        break
            except (av.FFmpegError, EOFError) as e:
                got = f"the last that decoded is frame {last}" if last >= 0 else "none decoded at the end"
                return VideoCheck(
                    path, False, f"corrupt or truncated end: {type(e).__name__}: {e} (the header announces "
                    f"{announced or total} frames, {got})", **facts, last_frame=last,
                )  # fmt: skip
            facts["last_frame"] = last
            if last < 0:
                return VideoCheck(
                    path, False, f"truncated: no frame decodes near the end ({announced or total} announced)", **facts,
                )  # fmt: skip
            if announced > 0 and last < announced - max(2, announced // 50):
                return VideoCheck(
                    path, False, f"truncated: the header announces {announced} frames, the last that decodes "
                    f"is frame {last}", **facts,
                )  # fmt: skip
        return VideoCheck(path, True, "", **facts)
    except Exception as e:  # noqa: BLE001 - any decoder error marks the file bad
        return VideoCheck(path, False, f"{type(e).__name__}: {e}")


def _verify_job(job: tuple[str, int]) -> VideoCheck:
    return verify_video(job[0], num_frames=job[1])


def verify_videos(
    paths: Iterable[str | os.PathLike],
    *,
    num_frames: int = 4,
    workers: int | None = None,
    progress: bool = True,
) -> list[VideoCheck]:
    """Run :func:`verify_video` on every path in parallel; results in input order."""
    jobs = [(str(p), num_frames) for p in paths]
    return parallel_map(_verify_job, jobs, workers=workers, description="verify", progress=progress)
