"""PyAV decoding of exactly the frames a clip needs.

A clip is ``num_frames`` frames taken every ``sampling_rate`` frames at the video's native frame rate,
starting at frame ``start``: frame indices ``start + sampling_rate * i`` for ``i < num_frames`` (GN paper
32x2, SlowFast 8x8). :func:`decode_frames` reads only that window:

1. seek to the key frame at or before the first needed frame (``container.seek`` in stream pts units,
   ``backward=True``, ``any_frame=False``),
2. decode forward, numbering each frame by its presentation time (``round((pts - start_pts) * time_base *
   fps)``), so the numbering is the same whether we seeked or decoded from the start,
3. let FFmpeg skip non-reference frames (most B-frames) that no kept frame needs
   (``skip_frame="NONREF"`` packet by packet; reference frames are always decoded, so the kept frames
   are bit-identical to a full decode),
4. convert to RGB only the frames that are kept, with one swscale context for the whole clip, and copy
   each straight into the preallocated (T, H, W, 3) clip (see :class:`_RGBClip`),
5. stop as soon as the last needed frame is reached, and close the container (``with`` statement).

If the demuxer lands after the wanted frame (some containers index key frames by decode time), we seek
again further back, and finally decode from the start (of a freshly opened file, without seeking), so the
frames returned are always exact. MPEG-TS/PS and raw elementary streams, whose seeks are inexact, are always
decoded from the start (:data:`SEQUENTIAL_FORMATS`).

The frame count is the container's (capped by the stream duration: an MP4 cut by stream copy counts the
pre-roll its edit list hides); containers without one (Matroska/WebM, MPEG-TS/PS) are counted from the
timestamp of their last packet, demuxed from the last key frame (:func:`count_frames`).

Videos shorter than the window loop: frame indices past the last frame wrap around modulo the number of
frames (:func:`clip_indices`). If a container over-reports its length, the missing tail frames repeat the
last decoded frame.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

__all__ = ["VideoInfo", "DecodeError", "clip_indices", "decode_frames", "probe_video"]

# Decoder threads. Measured on 2 cores (benchmarks/data.py, docs/benchmarks.md): one decoding thread per
# clip beat FFmpeg's automatic thread count and "FRAME"/"AUTO" threading; parallelism comes from the
# DataLoader workers, and extra decoder threads only wait for cores the workers already use.
DEFAULT_THREAD_TYPE: str | None = None
DEFAULT_THREAD_COUNT: int = 1


# Demuxers that cannot seek to a key frame exactly: MPEG-TS/PS seek by bisecting timestamps and land off
# the key frame in either direction (and MPEG-PS shifts the timestamps of the frames after a seek by half
# a frame, so frame numbers from them are wrong), raw elementary streams have no index. Clips of these are
# decoded from the first frame, without seeking: exact, and slower for long files.
SEQUENTIAL_FORMATS = frozenset({"mpeg", "mpegts", "mpegvideo", "h264", "hevc", "m4v", "mjpeg"})


def _sequential(container: av.container.InputContainer) -> bool:
    return bool(SEQUENTIAL_FORMATS & set(container.format.name.split(",")))


class DecodeError(ValueError):
    """A file could not be opened or decoded as a video (corrupt, truncated, empty, audio-only, ...)."""


@dataclass(frozen=True)
class VideoInfo:
    """Header facts about one video stream.

    Attributes:
        num_frames: number of frames (from the container, or estimated from duration x fps).
        fps: native frame rate (frames per second).
        height: frame height in pixels, as stored (a rotated phone video's decoded, upright frames swap them).
        width: frame width in pixels, as stored.
    """

    num_frames: int
    fps: float
    height: int
    width: int


def clip_indices(start: int, num_frames: int, sampling_rate: int, total_frames: int) -> np.ndarray:
    """Frame indices of one clip; indices past the end loop back to the start of the video.

    Args:
        start: index of the first frame.
        num_frames: T, frames in the clip.
        sampling_rate: s, step between kept frames.
        total_frames: frames in the video (> 0).

    Returns:
        int64 array (T,) of indices in [0, total_frames).
    """
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    return (start + sampling_rate * np.arange(num_frames, dtype=np.int64)) % total_frames


def still_image_format(container: av.container.InputContainer) -> str | None:
    """The container's format name if FFmpeg read it as a single still image (a JPEG or PNG saved under a
    video name is ``jpeg_pipe`` / ``png_pipe``, one frame), else None."""
    name = container.format.name or ""
    return name if name.endswith("_pipe") or name in ("image2", "image2pipe") else None


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise DecodeError(f"{path}: no video stream (streams: {[s.type for s in container.streams]})")
    if image := still_image_format(container):
        raise DecodeError(f"{path}: a still image ({image} format), not a video")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for this codec (or the codec id is damaged)
        raise DecodeError(f"{path}: no decoder for its video codec (unknown or damaged codec id)")
    return stream


def frame_rate(stream: av.video.stream.VideoStream, path: str) -> float:
    """The stream's native frame rate (average, else guessed, else base rate) in frames per second."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise DecodeError(f"{path}: cannot determine the frame rate")
    return float(rate)


def header_frames(stream: av.video.stream.VideoStream, fps: float) -> int:
    """Frames the stream's header counts, 0 if it has no count.

    The container's frame count (MP4, MOV, AVI ...), capped by the stream duration × fps: an MP4 cut by
    stream copy (``ffmpeg -ss … -c copy``) counts the pre-roll samples that its edit list hides. Other
    containers' durations are no count: Matroska/WebM give an end time that includes the start offset (or
    nothing, for live recordings), MPEG-TS/PS may estimate theirs from the bit rate. For those, see
    :func:`count_frames`.
    """
    frames = int(stream.frames or 0)
    if frames > 0 and stream.duration is not None and stream.time_base is not None:
        by_duration = int(math.floor(float(stream.duration * stream.time_base) * fps + 0.5))
        if by_duration > 0:
            return min(frames, by_duration)
    return frames


def count_frames(path: str, fps: float) -> int:
    """Frames of the first video stream from the timestamps of its packets (demuxed, not decoded).

    Seeks to the last key frame and demuxes to the end (the whole file if the container has no index),
    so it costs one GOP of reading, once per file and process (cached by path, size and modification
    time: the views of an eval video and later epochs reuse it). Frames are numbered as
    :func:`decode_frames` numbers them, so the last packet's timestamp gives the count. 0 if no packet
    carries a timestamp.
    """
    st = os.stat(path)
    return _count_frames(path, st.st_size, st.st_mtime_ns, fps)


@functools.lru_cache(maxsize=8192)
def _count_frames(path: str, _size: int, _mtime_ns: int, fps: float) -> int:

    def last_ts(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
        last = None
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and (last is None or ts > last):
                last = ts
        return last

    with av.open(path) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        scale = float(stream.time_base) * fps  # pts ticks -> frames
        last = None
        if not _sequential(container):
            try:  # far past the end: backward search finds the last key frame
                container.seek(start + int(1e9 / scale), stream=stream, backward=True, any_frame=False)
                last = last_ts(container, stream)
            except (av.FFmpegError, OverflowError):
                pass  # the whole file is read below
    if last is None:  # no index to seek with, or the seek ran off the end: read the whole file
        with av.open(path) as container:
            last = last_ts(container, container.streams.video[0])
    return 0 if last is None else int(round((last - start) * scale)) + 1


def _info(stream: av.video.stream.VideoStream, path: str) -> VideoInfo:
    fps = frame_rate(stream, path)
    frames = header_frames(stream, fps) or count_frames(path, fps)
    if frames <= 0:
        raise DecodeError(f"{path}: the video stream has no frames")
    cc = stream.codec_context
    return VideoInfo(num_frames=frames, fps=fps, height=int(cc.height), width=int(cc.width))


def probe_video(path: str | Path) -> VideoInfo:
    """Read the frame count, frame rate and size of a video's first video stream (header only).

    Args:
        path: video file.

    Returns:
        VideoInfo.

    Raises:
        DecodeError: the file is not a readable video.
    """
    path = str(path)
    try:
        with av.open(path) as container:
            return _info(_video_stream(container, path), path)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"{path}: {_describe_error(exc, path)}") from exc


def decode_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray | Callable[[VideoInfo], Sequence[int] | np.ndarray],
    *,
    thread_type: str | None = DEFAULT_THREAD_TYPE,
    thread_count: int = DEFAULT_THREAD_COUNT,
) -> tuple[torch.Tensor, VideoInfo]:
    """Decode the given frames of a video, seeking to the key frame before them and stopping after them.

    Args:
        path: video file (any container PyAV reads).
        indices: frame indices to return, in any order, repeats allowed (e.g. from :func:`clip_indices`);
            or a function of the :class:`VideoInfo` that returns them (so a clip can be chosen from the
            header without opening the file twice).
        thread_type: PyAV ``codec_context.thread_type`` ("SLICE", "FRAME", "AUTO"), or None for PyAV's
            default.
        thread_count: decoder threads, also used for the RGB conversion (0: FFmpeg chooses, usually one
            per core).

    Returns:
        (frames, info): frames is a uint8 tensor (T, H, W, 3) in RGB, frame ``t`` being video frame
        ``indices[t]``; info is the stream's :class:`VideoInfo`.

    Raises:
        DecodeError: the file cannot be opened, has no video stream, or no frame could be decoded.
    """
    path = str(path)

    def open_video() -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        container = av.open(path)
        try:
            stream = _video_stream(container, path)
        except BaseException:
            container.close()
            raise
        if thread_type is not None:
            stream.codec_context.thread_type = thread_type
        stream.codec_context.thread_count = thread_count
        return container, stream

    try:
        container, stream = open_video()
        with container:
            info = _info(stream, path)
            wanted = np.asarray(indices(info) if callable(indices) else indices, dtype=np.int64).reshape(-1)
            if wanted.size == 0:
                raise ValueError("indices must not be empty")
            if wanted.min() < 0:
                raise ValueError(f"frame indices must be >= 0, got min {int(wanted.min())}")
            frames = _decode_wanted(container, stream, open_video, info, wanted, path, thread_count)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise DecodeError(f"{path}: {_describe_error(exc, path)}") from exc
    return frames, info


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that ``frame``'s display matrix asks for to show it upright
    (0 when there is none, it is not a multiple of 90 degrees, or PyAV < 13 does not expose it)."""
    degrees = getattr(frame, "rotation", 0) or 0
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) < 1 else 0


def _describe_error(exc: BaseException, path: str) -> str:
    """The error as text, saying "empty file (0 bytes)" where FFmpeg would only say "Invalid data"."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    return f"{type(exc).__name__}: {exc}"


def _decode_wanted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    reopen: Callable[[], tuple[av.container.InputContainer, av.video.stream.VideoStream]],
    info: VideoInfo,
    wanted: np.ndarray,
    path: str,
    threads: int,
) -> torch.Tensor:
    needed = np.unique(wanted)  # sorted
    time_base = stream.time_base
    start_pts = stream.start_time or 0
    ticks_per_frame = 1.0 / (float(time_base) * info.fps)  # pts ticks between two frames
    clip = _RGBClip(wanted, path, threads)

    # Seek target: the latest pts that still rounds to the first needed frame, so a key frame exactly
    # at that frame is found by the backward search.
    target = start_pts + int(math.floor((int(needed[0]) + 0.45) * ticks_per_frame))
    seek_to: int | None = target if needed[0] > 0 and not _sequential(container) else None
    done, attempts = False, 0
    while seek_to is not None:
        attempts += 1
        done, landed_pts = _scan(container, stream, info, needed, start_pts, time_base, seek_to, path, clip)
        if done:
            break
        # Landed after the first needed frame (key frames indexed by decode time can sit after their
        # pts; MPEG-TS/PS seek by bisection and are inexact), or nothing decoded from there: seek to
        # just before the frame we landed on, i.e. one key frame further back; at most three tries.
        retry = attempts < 3 and landed_pts is not None and landed_pts - 1 > start_pts
        seek_to = landed_pts - 1 if retry else None
    if not done:
        # From the very start, which always succeeds: without any seek (seeking "to the start" of an
        # MPEG-TS/PS can land several frames in), in the untouched container or a freshly opened one.
        if attempts == 0:
            done, _ = _scan(container, stream, info, needed, start_pts, time_base, None, path, clip)
        else:
            fresh, fresh_stream = reopen()
            with fresh:
                try:
                    done, _ = _scan(fresh, fresh_stream, info, needed, start_pts, time_base, None, path, clip)
                except (av.FFmpegError, EOFError) as exc:  # nothing from the key frame on, broken before it
                    raise DecodeError(
                        f"{path}: truncated video: no frame decodes from the key frame before frame "
                        f"{int(needed[0])} on, and decoding from the start fails: {_describe_error(exc, path)}"
                    ) from exc
    if not done or clip.out is None:
        raise DecodeError(f"{path}: no frame could be decoded")
    return torch.from_numpy(clip.out)


class _RGBClip:
    """The clip being assembled: kept frames go to RGB and straight into one preallocated uint8 array.

    One swscale context (:class:`av.video.reformatter.VideoReformatter`) serves the whole clip:
    ``frame.to_ndarray(format="rgb24")`` builds a fresh one per frame, with FFmpeg's automatic thread
    count, and that set-up cost more than the conversion itself (docs/benchmarks.md). Each RGB frame is
    copied into the clip as soon as it is converted, so PyAV's row-padded frame buffer is released (and
    reused for the next frame) while it is still in cache, and no list of frames is held.
    """

    def __init__(self, wanted: np.ndarray, path: str, threads: int) -> None:
        self.path, self.threads = path, threads
        self.slots: dict[int, list[int]] = {}  # frame index -> positions in the clip
        for t, idx in enumerate(wanted.tolist()):
            self.slots.setdefault(idx, []).append(t)
        self.length = len(wanted)
        self.out: np.ndarray | None = None  # (T, H, W, 3), allocated at the first frame
        self._reformatter = VideoReformatter()
        self._turns: int | None = None  # display-matrix quarter turns, read from the first frame

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame upright, as an (H, W, 3) uint8 RGB array (a view into a PyAV buffer)."""
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=self.threads).to_ndarray()
        if self._turns is None:
            self._turns = quarter_turns(frame)
        # A phone video stores its frames on their side plus a display matrix: turn them as players do
        # (a view; ``put`` copies it into the clip).
        return np.rot90(rgb, self._turns) if self._turns else rgb

    def put(self, idx: int, rgb: np.ndarray) -> None:
        """Write frame ``idx`` into every clip position that asks for it."""
        if self.out is None:
            self.out = np.empty((self.length, *rgb.shape), dtype=np.uint8)
        elif rgb.shape != self.out.shape[1:]:
            raise DecodeError(
                f"{self.path}: the frame size changes inside the clip ({self.out.shape[1:]} -> {rgb.shape})"
            )
        # numpy copies PyAV's row-padded views ~100x faster than a torch slice assignment does (whose
        # inner dimension is only 3 bytes long).
        for t in self.slots[idx]:
            self.out[t] = rgb


def _decode_skipping(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    needed: np.ndarray,
    start_pts: int,
    scale: float,
) -> Iterator[av.VideoFrame]:
    """Decode forward, letting the decoder skip non-reference frames that no needed index can use.

    A packet whose frame number is neither needed nor just before a needed one (the nearest earlier
    frame serves a needed index under variable frame rate) is decoded with ``skip_frame="NONREF"``: if
    no other frame references it (e.g. most H.264 B-frames), FFmpeg drops it without decoding. Reference
    frames are always decoded, so the frames we keep are bit-identical to a full decode.
    """
    cc = stream.codec_context
    keep = set(needed.tolist()) | set((needed - 1).tolist())
    mode = "DEFAULT"
    cc.skip_frame = mode
    try:
        for packet in container.demux(stream):
            want = "DEFAULT"
            if packet.pts is not None and int(round((packet.pts - start_pts) * scale)) not in keep:
                want = "NONREF"
            if want != mode:
                cc.skip_frame = mode = want
            yield from cc.decode(packet)
    finally:
        cc.skip_frame = "DEFAULT"


def _scan(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: VideoInfo,
    needed: np.ndarray,
    start_pts: int,
    time_base: Fraction,
    seek_to: int | None,
    path: str,
    clip: _RGBClip,
) -> tuple[bool, int | None]:
    """Decode forward from ``seek_to`` (None: from where the container stands, which must be the start
    of a container nothing has been read from) and put every needed frame into ``clip``.

    A needed index is served by the last frame whose number is <= it (exact for constant frame rate;
    nearest earlier frame for variable frame rate). After a seek, returns ``(False, pts)`` if the first
    frame decoded (at ``pts``) is already past the first needed index and ``(False, None)`` if no frame
    decodes from there; else ``(True, None)``.
    """
    if seek_to is not None:
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
    scale = float(time_base) * info.fps
    ptr, n_needed = 0, len(needed)
    prev_frame = None  # last decoded frame, not yet converted
    prev_rgb: np.ndarray | None = None  # its RGB array, once converted
    last_idx = -1
    for frame in _decode_skipping(container, stream, needed, start_pts, scale):
        pts = frame.pts if frame.pts is not None else frame.dts
        idx = int(round((pts - start_pts) * scale)) if pts is not None else last_idx + 1
        if idx <= last_idx:  # duplicate timestamp (VFR rounding): keep the first frame of that number
            continue
        if prev_frame is None and idx > needed[0]:
            if seek_to is not None:
                return False, pts
        # Frames before idx are served by the previous frame.
        while ptr < n_needed and needed[ptr] < idx and prev_frame is not None:
            if prev_rgb is None:
                prev_rgb = clip.rgb(prev_frame)
            clip.put(int(needed[ptr]), prev_rgb)
            ptr += 1
        if ptr < n_needed and needed[ptr] < idx:  # video starts after the needed index: use first frame
            rgb = clip.rgb(frame)
            while ptr < n_needed and needed[ptr] < idx:
                clip.put(int(needed[ptr]), rgb)
                ptr += 1
            prev_frame, prev_rgb, last_idx = frame, rgb, idx
        else:
            prev_frame, prev_rgb, last_idx = frame, None, idx
        if ptr < n_needed and needed[ptr] == idx:
            prev_rgb = clip.rgb(frame)
            clip.put(idx, prev_rgb)
            ptr += 1
        if ptr >= n_needed:
            return True, None
    # End of stream before every needed frame. A header that over-counts by a frame or two (estimated
    # lengths) is tolerated by repeating the last frame; a stream ending well before its announced
    # length is a truncated file.
    if last_idx < 0 and seek_to is not None:  # nothing from the seek point on: let the caller go back
        return False, None
    if ptr < n_needed and last_idx < info.num_frames - max(2, info.num_frames // 50):
        if last_idx < 0:
            where = "no frame decodes"
        else:
            where = f"the last frame that decodes is frame {last_idx}"
        raise DecodeError(
            f"{path}: truncated video: the header announces {info.num_frames} frames, but {where} "
            f"(frame {int(needed[ptr])} was asked for)"
        )
    if prev_frame is not None:
        if prev_rgb is None:
            prev_rgb = clip.rgb(prev_frame)
        while ptr < n_needed:
            clip.put(int(needed[ptr]), prev_rgb)
            ptr += 1
    return ptr > 0, None
