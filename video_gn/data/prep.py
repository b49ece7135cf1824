"""Preparing video datasets on disk: transcode/trim/resize with PyAV, verify, and write file lists.

Library code behind ``data_scripts/resize_videos.py``, ``verify_videos.py`` and ``make_filelists.py``
(``download_kinetics.py`` lives in :mod:`video_gn.data.kinetics_download`). Every writer encodes H.264
(libx264, yuv420p) MP4s, keeps the source frame rate, drops audio, and writes to a temporary name that is
renamed on success, so an existing output file is always complete (this is what makes the tools resumable).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from video_gn.data import decode
from video_gn.data.progress import parallel_map, progress_bar

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoCheck",
    "X264_PRESETS",
    "bounded_int",
    "find_videos",
    "make_filelists",
    "folder_problem",
    "output_path_problem",
    "read_list",
    "resize_tree",
    "resize_video",
    "scaled_size",
    "split_list_line",
    "transcode",
    "verify_video",
    "verify_videos",
    "write_clean_csv",
    "write_rows_csv",
]

#: File extensions treated as videos everywhere (dataset folders, ``predict`` on folders, the data scripts).
VIDEO_EXTENSIONS = (
    ".3g2", ".3gp", ".asf", ".avi", ".f4v", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
    ".mts", ".mxf", ".ogv", ".ts", ".vob", ".webm", ".wmv",
)  # fmt: skip
#: The x264 presets, fastest first (the ``preset`` of every H.264 writer here).
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Return ``(H', W')`` with the short side equal to ``short_side``, aspect kept, both rounded to even.

    Args:
        height: source height in pixels.
        width: source width in pixels.
        short_side: target length of the shorter side (rounded up to even).

    Returns:
        The new ``(height, width)``.
    """
    if short_side < 2:
        raise ValueError(f"short_side must be >= 2, got {short_side}")
    if height < 1 or width < 1:
        raise ValueError(f"video size must be positive, got {height}x{width}")

    def even(x: float) -> int:
        return max(2, 2 * round(x / 2))

    if height <= width:
        return even(short_side), even(width * short_side / height)
    return even(height * short_side / width), even(short_side)


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        return Fraction(30, 1)
    return Fraction(rate).limit_denominator(1001)


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    start: float | None = None,
    end: float | None = None,
    short_side: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    upscale: bool = True,
) -> dict:
    """Re-encode the video stream of ``src`` as H.264 MP4 ``dst``, optionally trimmed and resized.

    The frame rate is kept; frames whose timestamp lies in ``[start, end)`` seconds are kept; audio is
    dropped; a video with a rotation in its display matrix (phone videos) is turned upright, as players
    show it, and ``short_side`` applies to the upright frame. The output is written to ``<dst>.part`` and renamed to ``dst`` only on success.

    Args:
        src: input video (any container/codec PyAV/FFmpeg reads).
        dst: output ``.mp4`` path (parent directories are created).
        start: first second to keep (default: the beginning).
        end: second to stop at, exclusive (default: the end).
        short_side: if set, scale so the short side is this many pixels (aspect kept, even dims).
        crf: x264 constant rate factor.
        preset: x264 preset.
        upscale: if False, a video whose short side is already below ``short_side`` keeps its size
            (it is only re-encoded) instead of being scaled up.

    Returns:
        ``{"frames", "fps", "width", "height"}`` of the written video, plus ``"source_width"``,
        ``"source_height"`` and ``"upscaled"`` (True if the frames were scaled up).
    """
    import av

    src, dst = Path(src), Path(dst)
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be greater than start ({start}) for {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    written = 0
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise ValueError(f"{src} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            fps = _frame_rate(vin)
            # Timestamps are taken relative to the stream's first timestamp (Kinetics times are offsets).
            t0 = float(vin.start_time * vin.time_base) if vin.start_time is not None else 0.0
            frames = _decode_from(str(src), inp, vin, start, t0)
            first = next(frames, None)
            # A rotated video (phones: portrait stored as landscape plus a display matrix) is written upright,
            # as players and ffmpeg show it: the re-encoded file carries no display matrix.
            turns = decode.quarter_turns(first)
            src_h, src_w = h, w = vin.codec_context.height, vin.codec_context.width
            if turns % 2:
                src_h, src_w = h, w = w, h
            if short_side is not None and (upscale or min(h, w) > short_side):
                h, w = scaled_size(h, w, short_side)
            else:
                h, w = h - h % 2, w - w % 2  # yuv420p needs even sizes
            with av.open(str(part), mode="w", format="mp4") as out:
                vout = out.add_stream("libx264", rate=fps)
                vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
                vout.options = {"crf": str(crf), "preset": preset}
                for frame in itertools.chain([first] if first is not None else [], frames):
                    t = None if frame.time is None else frame.time - t0
                    if t is not None and start is not None and t < start - 1e-6:
                        continue
                    if t is not None and end is not None and t >= end - 1e-6:
                        break
                    if turns:  # scale in the stored orientation, then turn the pixels
                        sw, sh = (h, w) if turns % 2 else (w, h)
                        rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA")
                        turned = np.ascontiguousarray(np.rot90(rgb.to_ndarray(), turns))
                        frame = av.VideoFrame.from_ndarray(turned, format="rgb24")
                    frame = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                    frame.pts, frame.time_base = written, 1 / fps
                    out.mux(vout.encode(frame))
                    written += 1
                if written == 0:
                    raise ValueError(f"{src}: no video frames in [{start}, {end}) seconds")
                out.mux(vout.encode(None))
        os.replace(part, dst)
    finally:
        if part.exists():
            part.unlink()
    return {
        "frames": written, "fps": float(fps), "width": w, "height": h,
        "source_width": src_w, "source_height": src_h, "upscaled": h * w > src_h * src_w,
    }  # fmt: skip


def _decode_from(src: str, inp, vin, start: float | None, t0: float):
    """Frames of ``vin`` from the key frame at or before ``start`` seconds (after ``t0``) on.

    MPEG-TS/PS seek by bisection and can land after ``start``: then the file is read again from its first
    frame, without seeking, so no frame of the cut is lost.
    """
    import av

    if not start:
        yield from inp.decode(vin)
        return
    inp.seek(int((start + t0) / vin.time_base), stream=vin, backward=True, any_frame=False)
    frames = inp.decode(vin)
    first = next(frames, None)
    if first is None or first.time is None or first.time - t0 <= start + 1e-6:
        if first is not None:
            yield first
        yield from frames
        return
    with av.open(src) as again:  # landed past start
        stream = again.streams.video[0]
        stream.thread_type = vin.thread_type
        yield from again.decode(stream)


def resize_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    short_side: int = 256,
    crf: int = 23,
    preset: str = "veryfast",
    upscale: bool = True,
) -> dict:
    """Rescale ``src`` so its short side is ``short_side`` (aspect and fps kept) into H.264 MP4 ``dst``.

    With ``upscale=False`` a video whose short side is already smaller keeps its size.

    Returns:
        Same as :func:`transcode`.
    """
    return transcode(src, dst, short_side=short_side, crf=crf, preset=preset, upscale=upscale)


def find_videos(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Return every file under ``root`` with a video extension, sorted (hidden files and ``*.part`` skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    exts = {e.lower() for e in extensions}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and Path(f).suffix.lower() in exts:
                out.append(Path(dirpath) / f)
    return sorted(out)


def _resize_job(job: tuple[str, str, int, int, str, bool]) -> tuple[str, str, str]:
    src, dst, short_side, crf, preset, upscale = job
    try:
        info = resize_video(src, dst, short_side=short_side, crf=crf, preset=preset, upscale=upscale)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch; it is reported
        return src, "failed", f"{type(e).__name__}: {e}"
    small = min(info["source_height"], info["source_width"]) < short_side
    size = f"{info['source_width']}x{info['source_height']} -> {info['width']}x{info['height']}"
    return src, "done", size if small else ""


#: Settings of a resized tree, recorded in ``<dst>/.resize.json`` so a rerun with other settings is refused.
RESIZE_SETTINGS = ".resize.json"


def _check_unrecorded_output(
    src: Path, src_root: Path, dst_root: Path, short_side: int, upscale: bool
) -> None:
    """Refuse to keep outputs of an unrecorded earlier run whose size does not match this one's settings."""
    from video_gn.data.decode import probe_video  # lazy: decode imports torch, the scripts need not

    dst = (dst_root / src.relative_to(src_root)).with_suffix(".mp4")
    try:
        have, source = (min(i.height, i.width) for i in (probe_video(dst), probe_video(src)))
    except Exception:  # noqa: BLE001 - an unreadable output is redone by its own job later, not judged here
        return
    want = short_side if upscale or source >= short_side else source
    if have != want:
        raise ValueError(
            f"{dst_root} already holds resized videos without a settings record ({RESIZE_SETTINGS}), and "
            f"{dst} has a {have}px short side, not {want}: they would be kept as they are; choose another "
            "output folder (or delete that one)"
        )


def resize_tree(
    src_root: str | os.PathLike,
    dst_root: str | os.PathLike,
    *,
    short_side: int = 256,
    crf: int = 23,
    preset: str = "veryfast",
    upscale: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, list]:
    """Resize every video under ``src_root`` into the same relative path (``.mp4``) under ``dst_root``.

    A ``<src_root>/classes.txt`` (the class order) is copied too. Resumable: an output that exists and is
    not older than its source is skipped (outputs are written to a temporary name and renamed, so an
    existing output is complete). The settings are recorded in
    ``<dst_root>/.resize.json``; a rerun into the same ``dst_root`` with another ``short_side`` or
    ``upscale`` is refused (it would skip the outputs of the other size as "already done"). Two sources
    that differ only in their extension (``a.webm``, ``a.mkv``) would write the same ``a.mp4``: the first
    (sorted) is resized, the others fail with that reason.

    Args:
        src_root: input root (every video file under it).
        dst_root: output root; must not be ``src_root`` or inside it.
        short_side: target short side in pixels.
        crf: x264 constant rate factor.
        preset: x264 preset.
        upscale: also scale up videos whose short side is below ``short_side`` (the usual Kinetics
            preprocessing: every video gets the same short side); if False they keep their size.
        workers: processes (default: CPUs available).
        progress: show a progress bar with totals.

    Returns:
        ``{"done": [src, ...], "skipped": [src, ...], "failed": [(src, error), ...],
        "smaller": [(src, "WxH -> W'xH'"), ...]}``; ``smaller`` lists the sources resized in this run
        whose short side was below ``short_side`` (scaled up, or kept at their size with ``upscale=False``).

    Raises:
        FileNotFoundError: ``src_root`` is not a directory.
        ValueError: ``dst_root`` is ``src_root``, lies inside it, is a file, or was resized with other
            settings; or ``src_root`` holds no video files.
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    if why := folder_problem(src_root):
        raise FileNotFoundError(f"source folder {src_root} {why}")
    if src_root.resolve() == dst_root.resolve():
        raise ValueError(
            f"the output folder must differ from the source folder ({src_root}); resizing in place is not "
            "supported"
        )
    if src_root.resolve() in dst_root.resolve().parents:
        raise ValueError(
            f"the output folder {dst_root} lies inside the source folder {src_root}: a rerun would take the "
            "resized videos for sources; choose an output folder outside it"
        )
    if dst_root.exists() and not dst_root.is_dir():
        raise ValueError(f"the output folder {dst_root} exists and is not a directory")
    settings = {"short_side": short_side, "upscale": upscale}
    marker = dst_root / RESIZE_SETTINGS
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except ValueError:
            old = {}
        old = {k: old.get(k) for k in settings}
        if old != settings:
            raise ValueError(
                f"{dst_root} holds videos resized with {old} ({marker}), not {settings}: existing outputs "
                "would be kept as they are; choose another output folder (or delete that one)"
            )
    sources = find_videos(src_root)
    if not sources:
        raise ValueError(f"no video files under {src_root} (extensions: {' '.join(VIDEO_EXTENSIONS)})")
    result: dict[str, list] = {"done": [], "skipped": [], "failed": [], "smaller": []}
    jobs = []
    first_of: dict[Path, Path] = {}
    for src in sources:
        dst = (dst_root / src.relative_to(src_root)).with_suffix(".mp4")
        if dst in first_of:
            result["failed"].append(
                (str(src), f"same output {dst} as {first_of[dst]} (only the extension differs); not resized")
            )
            continue
        first_of[dst] = src
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            result["skipped"].append(str(src))
        else:
            jobs.append((str(src), str(dst), short_side, crf, preset, upscale))
    if result["skipped"] and not marker.is_file():  # outputs of a run that predates the settings record
        _check_unrecorded_output(Path(result["skipped"][0]), src_root, dst_root, short_side, upscale)
    if jobs or result["skipped"]:
        dst_root.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings) + "\n")
        if (src_root / "classes.txt").is_file():  # the class order (label indices) stays that of the source
            shutil.copyfile(src_root / "classes.txt", dst_root / "classes.txt")
    for src, status, info in parallel_map(
        _resize_job, jobs, workers=workers, description=f"resize -> {short_side}px", progress=progress
    ):
        if status == "done":
            result["done"].append(src)
            if info:
                result["smaller"].append((src, info))
        else:
            result["failed"].append((src, info))
    return result


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
            vs = c.streams.video[0]
            if vs.codec_context is None:
                return VideoCheck(path, False, "no decoder for its video codec (unknown or damaged codec id)")
            fps = float(_frame_rate(vs))
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


def split_list_line(line: str) -> tuple[str, str | None]:
    """Split one line of a ``path label`` list into ``(path, label)``; ``label`` is None if there is none.

    The label is the last whitespace-separated token, so paths may contain spaces, unless that token
    looks like a file name (it holds a ``/`` or ``\\``, or ends with a video extension): then the whole
    line is a path without a label (``train/swim fast/0.mp4`` is one path, not path ``train/swim`` with
    label ``fast/0.mp4``). A label-less path whose last part has a space and no video extension cannot be
    told from ``path label``; name such files with an extension.

    Args:
        line: one line, without the newline.

    Returns:
        ``(path, label or None)``, both stripped.
    """
    line = line.strip()
    parts = line.rsplit(None, 1)
    if len(parts) == 1:
        return line, None
    last = parts[1]
    if "/" in last or "\\" in last or last.lower().endswith(VIDEO_EXTENSIONS):
        return line, None
    return parts[0], last


def read_list(csv_path: Path) -> list[tuple[str, str]]:
    """Read a ``path label`` list into ``[(path, label)]`` (label ``""`` if none; :func:`split_list_line`); a
    header line such as ``path label`` is skipped with a warning.

    Raises:
        ValueError: the file is comma-separated (e.g. an official Kinetics annotation CSV), with the
            reason and how to convert it (:func:`video_gn.data.layout.check_not_comma_separated`).
    """
    from video_gn.data.layout import _read_csv  # layout imports this module

    return [(path, label or "") for path, label, _ in _read_csv(Path(csv_path))]


def write_clean_csv(
    csv_in: str | os.PathLike,
    csv_out: str | os.PathLike,
    bad_paths: Iterable[str],
    *,
    root: str | None = None,
) -> int:
    """Copy the ``path label`` list ``csv_in`` to ``csv_out`` without the rows whose file is in ``bad_paths``.

    Paths in the list are resolved against ``root`` (default: the list's folder) before comparing.

    Returns:
        The number of rows removed.
    """
    csv_in = Path(csv_in)
    base = Path(root) if root is not None else csv_in.parent
    bad = {os.path.abspath(p) for p in bad_paths}
    kept, removed = [], 0
    for path, label in read_list(csv_in):
        if os.path.abspath(base / path) in bad:
            removed += 1
        else:
            kept.append(f"{path} {label}".rstrip())
    Path(csv_out).write_text("".join(k + "\n" for k in kept))
    return removed


def make_filelists(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    classes_from: str | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Turn the folder layout ``<root>/<split>/<class>/<video>`` into ``<split>.csv`` lists and classes.txt.

    Each list line is ``<path relative to out_dir> <label index>`` (pytorchvideo's ``LabeledVideoPaths``
    convention); the label index is the class's position in ``classes.txt``. Class order: ``classes`` if
    given, else an existing ``<root>/classes.txt``, else the sorted union of class folders of all splits.
    Listing the class folders (the slow part on a network file system: Kinetics-400 has 1,200 of them
    and 300,000 files) shows progress with totals (:func:`~video_gn.data.progress.progress_bar`).

    Args:
        root: dataset root.
        splits: split folder names (default: every sub-folder of root that contains class folders).
        out_dir: where to write the lists and classes.txt (default: root).
        classes: explicit class order.
        classes_from: where ``classes`` came from, for error messages (e.g. the file it was read from;
            default: "the classes argument").
        progress: show progress (class folders listed / all class folders).

    Returns:
        ``{split: csv_path}``.
    """
    root = Path(root)
    if why := folder_problem(root):
        raise FileNotFoundError(f"dataset root {root} {why}")
    out_dir = Path(out_dir) if out_dir is not None else root
    if splits is None:
        splits = sorted(
            d.name
            for d in root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and any(c.is_dir() for c in d.iterdir())
        )
    if not splits:
        raise ValueError(f"no split folders (<root>/<split>/<class>/...) found in {root}")
    class_dirs: dict[str, list[Path]] = {}
    for split in splits:
        sdir = root / split
        if not sdir.is_dir():
            found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
            raise FileNotFoundError(
                f"split folder {sdir} does not exist (folders in {root}: {', '.join(found) or 'none'})"
            )
        class_dirs[split] = [c for c in sorted(sdir.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    per_split: dict[str, dict[str, list[Path]]] = {split: {} for split in splits}
    total = sum(len(dirs) for dirs in class_dirs.values())
    with progress_bar(total=total, description=f"list {root.name}", enabled=progress) as advance:
        for split, dirs in class_dirs.items():
            for c in dirs:
                per_split[split][c.name] = find_videos(c)
                advance()
    folder_classes = sorted({c for s in per_split.values() for c in s})
    source = classes_from or "the classes argument"
    if classes is None and (root / "classes.txt").is_file():
        classes = [
            ln.strip()
            for ln in (root / "classes.txt").read_text(encoding="utf-8-sig").splitlines()
            if ln.strip()
        ]
        source = str(root / "classes.txt")
    if classes is None:
        classes = folder_classes
    if not classes:
        raise ValueError(
            f"no class folders in the splits {list(splits)} of {root} (and the class list is empty)"
        )
    twice = sorted(c for c, n in Counter(classes).items() if n > 1)
    if twice:
        raise ValueError(f"{source} lists classes twice: {twice[:10]}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in folder_classes if c not in index]
    if unknown:
        raise ValueError(
            f"class folders {unknown[:10]} are not in the class list ({len(classes)} classes, from "
            f"{'the folders' if classes is folder_classes else source})"
        )
    # Paths relative to the folder holding the lists, which is what the loader resolves them against
    # (with out_dir elsewhere they start with ../ ). Every list is built and checked before any file is
    # written, so a failure leaves the old lists as they were.
    base = out_dir.absolute()
    lists = {}
    for split, by_class in per_split.items():
        lines = [
            f"{Path(os.path.relpath(p.absolute(), base)).as_posix()} {index[c]}\n"
            for c in sorted(by_class)
            for p in by_class[c]
        ]
        if not lines:
            raise ValueError(f"split {split!r} in {root} holds no video files (nothing written)")
        lists[split] = "".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    written = {}
    for split, text in lists.items():
        written[split] = out_dir / f"{split}.csv"
        written[split].write_text(text)
    return written


def write_rows_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV with a header (used for failure/bad-file reports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ----------------------------------------------------------------------------------------------------
# Helpers for the data scripts' command lines
# ----------------------------------------------------------------------------------------------------


def bounded_int(minimum: int, maximum: int | None = None):
    """An argparse ``type``: integers ``>= minimum`` (and ``<= maximum``); a usage error otherwise."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not an existing input folder (``"does not exist"``, ``"is not a directory"``), or None."""
    path = Path(path)
    if path.is_dir():
        return None
    return "is not a directory" if path.exists() else "does not exist"


def output_path_problem(path: str | os.PathLike, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written as an output file (``directory=False``) or folder, or None if it can.

    Checks what can be known before any work is done: the path is a folder where a file is wanted (or the
    reverse), one of its parents exists as a file, or this user may not write it (the existing path, or
    the folder in which it would be created), so a long run does not fail only when it writes its results.
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is not a directory"
        if not directory and path.is_dir():
            return f"{path} is a directory, expected a file name"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable (permission denied)"
        return None
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create {path}: {parent} is a file, not a directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot create {path}: no permission to write in {parent}"
            return None
    return None
