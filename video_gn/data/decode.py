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
4. convert to RGB only the frames that are kept (RGB conversion costs more than decoding),
5. stop as soon as the last needed frame is reached, and close the container (``with`` statement).

If the demuxer lands after the wanted frame (some containers index key frames by decode time), we seek
again further back, and finally from the start, so the frames returned are always exact.

Videos shorter than the window loop: frame indices past the last frame wrap around modulo the number of
frames (:func:`clip_indices`). If a container over-reports its length, the missing tail frames repeat the
last decoded frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

__all__ = ["VideoInfo", "DecodeError", "clip_indices", "decode_frames", "probe_video"]

# Decoder threads. Measured on 2 cores (benchmarks/data.py, docs/benchmarks.md): one decoding thread per
# clip beat FFmpeg's automatic thread count and "FRAME"/"AUTO" threading; parallelism comes from the
# DataLoader workers, and extra decoder threads only wait for cores the workers already use.
DEFAULT_THREAD_TYPE: str | None = None
DEFAULT_THREAD_COUNT: int = 1


class DecodeError(ValueError):
    """A file could not be opened or decoded as a video (corrupt, truncated, empty, audio-only, ...)."""


@dataclass(frozen=True)
class VideoInfo:
    """Header facts about one video stream.

    Attributes:
        num_frames: number of frames (from the container, or estimated from duration x fps).
        fps: native frame rate (frames per second).
        height: frame height in pixels.
        width: frame width in pixels.
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


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise DecodeError(f"{path}: no video stream (streams: {[s.type for s in container.streams]})")
    return container.streams.video[0]


def _info(
    stream: av.video.stream.VideoStream, container: av.container.InputContainer, path: str
) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise DecodeError(f"{path}: cannot determine the frame rate")
    fps = float(rate)
    frames = int(stream.frames or 0)
    if frames <= 0:
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = 0.0
        frames = int(math.floor(seconds * fps + 0.5))
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
            stream = _video_stream(container, path)
            return _info(stream, container, path)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"{path}: {type(exc).__name__}: {exc}") from exc


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
        thread_count: decoder threads (0: FFmpeg chooses, usually one per core).

    Returns:
        (frames, info): frames is a uint8 tensor (T, H, W, 3) in RGB, frame ``t`` being video frame
        ``indices[t]``; info is the stream's :class:`VideoInfo`.

    Raises:
        DecodeError: the file cannot be opened, has no video stream, or no frame could be decoded.
    """
    path = str(path)
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            info = _info(stream, container, path)
            wanted = np.asarray(indices(info) if callable(indices) else indices, dtype=np.int64).reshape(-1)
            if wanted.size == 0:
                raise ValueError("indices must not be empty")
            if wanted.min() < 0:
                raise ValueError(f"frame indices must be >= 0, got min {int(wanted.min())}")
            cc = stream.codec_context
            if thread_type is not None:
                cc.thread_type = thread_type
            cc.thread_count = thread_count
            frames = _decode_wanted(container, stream, info, wanted, path)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise DecodeError(f"{path}: {type(exc).__name__}: {exc}") from exc
    return frames, info


def _decode_wanted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: VideoInfo,
    wanted: np.ndarray,
    path: str,
) -> torch.Tensor:
    needed = np.unique(wanted)  # sorted
    time_base = stream.time_base
    start_pts = stream.start_time or 0
    ticks_per_frame = 1.0 / (float(time_base) * info.fps)  # pts ticks between two frames

    # Seek target: the latest pts that still rounds to the first needed frame, so a key frame exactly
    # at that frame is found by the backward search.
    target = start_pts + int(math.floor((int(needed[0]) + 0.45) * ticks_per_frame))
    seek_to: int | None = target if needed[0] > 0 else None
    arrays: dict[int, np.ndarray] | None = None
    for _attempt in range(3):
        arrays, landed_pts = _scan(container, stream, info, needed, start_pts, time_base, seek_to, path)
        if arrays is not None or seek_to is None:
            break
        # Landed after the first needed frame (key frames indexed by decode time can sit after their
        # pts): seek to just before the frame we landed on, i.e. one key frame further back.
        seek_to = landed_pts - 1 if landed_pts is not None and landed_pts - 1 > start_pts else None
    if arrays is None:  # still past the window: decode from the very start, which always succeeds
        arrays, _ = _scan(container, stream, info, needed, start_pts, time_base, None, path)
    if not arrays:
        raise DecodeError(f"{path}: no frame could be decoded")
    first = next(iter(arrays.values()))
    # Assemble in numpy: PyAV's arrays are row-padded views, and numpy copies those ~100x faster than a
    # torch slice assignment does (whose inner dimension is only 3 bytes long).
    out = np.empty((len(wanted), *first.shape), dtype=np.uint8)
    for t, idx in enumerate(wanted.tolist()):
        if arrays[idx].shape != first.shape:
            raise DecodeError(
                f"{path}: the frame size changes inside the clip ({first.shape} -> {arrays[idx].shape})"
            )
        out[t] = arrays[idx]
    return torch.from_numpy(out)


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
) -> tuple[dict[int, np.ndarray] | None, int | None]:
    """Decode forward from ``seek_to`` (None: from the start); map each needed index to an RGB array.

    A needed index is served by the last frame whose number is <= it (exact for constant frame rate;
    nearest earlier frame for variable frame rate). Returns ``(None, pts)`` if the first frame decoded after
    the seek (at ``pts``) is already past the first needed index, else ``(arrays, None)``.
    """
    container.seek(
        seek_to if seek_to is not None else start_pts, stream=stream, backward=True, any_frame=False
    )
    scale = float(time_base) * info.fps
    out: dict[int, np.ndarray] = {}
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
                return None, pts
        # Frames before idx are served by the previous frame.
        while ptr < n_needed and needed[ptr] < idx and prev_frame is not None:
            if prev_rgb is None:
                prev_rgb = prev_frame.to_ndarray(format="rgb24")
            out[int(needed[ptr])] = prev_rgb
            ptr += 1
        if ptr < n_needed and needed[ptr] < idx:  # video starts after the needed index: use first frame
            rgb = frame.to_ndarray(format="rgb24")
            while ptr < n_needed and needed[ptr] < idx:
                out[int(needed[ptr])] = rgb
                ptr += 1
            prev_frame, prev_rgb, last_idx = frame, rgb, idx
        else:
            prev_frame, prev_rgb, last_idx = frame, None, idx
        if ptr < n_needed and needed[ptr] == idx:
            prev_rgb = frame.to_ndarray(format="rgb24")
            out[idx] = prev_rgb
            ptr += 1
        if ptr >= n_needed:
            return out, None
    # End of stream before every needed frame. A header that over-counts by a frame or two (estimated
    # lengths) is tolerated by repeating the last frame; a stream ending well before its announced
    # length is a truncated file.
    if ptr < n_needed and last_idx < info.num_frames - max(2, info.num_frames // 50):
        raise DecodeError(
            f"{path}: truncated video: the header announces {info.num_frames} frames but the stream ends at frame "
            f"{last_idx + 1}"
        )
    if prev_frame is not None:
        if prev_rgb is None:
            prev_rgb = prev_frame.to_ndarray(format="rgb24")
        while ptr < n_needed:
            out[int(needed[ptr])] = prev_rgb
            ptr += 1
    return out, None
