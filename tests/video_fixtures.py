"""Writers for small test videos (real encodes with PyAV), shared by the data tests.

Frames written with ``pattern="index"`` carry their own frame number: the picture is split into three
vertical bands, each a flat grey level encoding one base-16 digit of the index (``level = 16 * digit + 8``),
so :func:`read_index` recovers the index from a decoded frame despite lossy H.264 compression.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_BANDS = 3  # base-16 digits -> indices up to 4095


def index_frame(index: int, height: int, width: int) -> np.ndarray:
    """Build an RGB frame whose three vertical grey bands encode ``index`` in base 16.

    Args:
        index: frame number, 0 <= index < 4096.
        height: frame height in pixels.
        width: frame width in pixels.

    Returns:
        uint8 array (height, width, 3).
    """
    if not 0 <= index < 16**_BANDS:
        raise ValueError(f"index must be in [0, {16**_BANDS}), got {index}")
    frame = np.empty((height, width, 3), dtype=np.uint8)
    for band in range(_BANDS):
        digit = (index // 16 ** (_BANDS - 1 - band)) % 16
        lo, hi = band * width // _BANDS, (band + 1) * width // _BANDS
        frame[:, lo:hi] = 16 * digit + 8
    return frame


def read_index(frame: np.ndarray) -> int:
    """Recover the index written by :func:`index_frame` from a decoded RGB frame (H, W, 3) or (3, H, W)."""
    if frame.shape[0] == 3 and frame.shape[-1] != 3:
        frame = frame.transpose(1, 2, 0)
    height, width = frame.shape[:2]
    index = 0
    for band in range(_BANDS):
        lo, hi = band * width // _BANDS, (band + 1) * width // _BANDS
        # Sample the band's interior, away from edges where chroma/compression bleeds.
        core = frame[height // 4 : 3 * height // 4, lo + (hi - lo) // 4 : hi - (hi - lo) // 4]
        digit = int(round((float(np.asarray(core, dtype=np.float64).mean()) - 8.0) / 16.0))
        index = index * 16 + min(max(digit, 0), 15)
    return index


def write_video(
    path: str | Path,
    *,
    num_frames: int = 30,
    fps: int | Fraction = 30,
    width: int = 96,
    height: int = 64,
    gop: int | None = 30,
    codec: str = "libx264",
    pattern: str = "index",
    options: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Encode a small video with PyAV.

    Args:
        path: output file; the container follows the extension (.mp4, .mkv, .avi, .webm ...).
        num_frames: number of frames.
        fps: frame rate.
        width: frame width (even for yuv420p).
        height: frame height (even for yuv420p).
        gop: key-frame interval (None: the encoder's default, 250 for x264).
        codec: encoder name ("libx264", "mpeg4", "libvpx", ...).
        pattern: "index" (frames encode their number, see :func:`read_index`) or "noise" (random pixels).
        options: extra encoder options (defaults give x264 B-frames so seeking is realistic).
        seed: RNG seed for ``pattern="noise"``.

    Returns:
        The path written.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        opts = {"preset": "veryfast", "bf": "2"} if codec == "libx264" else {}
        opts.update(options or {})
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                opts.setdefault("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0")
        stream.options = opts
        for i in range(num_frames):
            if pattern == "index":
                rgb = index_frame(i, height, width)
            elif pattern == "noise":
                rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            else:
                raise ValueError(f"pattern must be 'index' or 'noise', got {pattern!r}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def remux_faststart(src: str | Path, dst: str | Path) -> Path:
    """Remux ``src`` with the MP4 index (moov) in front, as web and YouTube downloads usually have it."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        ostream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = ostream
                out.mux(packet)
    return Path(dst)


def write_audio_only(path: str | Path, *, seconds: float = 0.5, rate: int = 16000) -> Path:
    """Write an audio-only file (AAC in an MP4 container) with no video stream."""
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = int(seconds * rate)
        chunk = 1024
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            tone = (0.1 * np.sin(np.arange(start, start + n) * 0.05)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_corrupt(path: str | Path, kind: str, *, source: str | Path | None = None) -> Path:
    """Write a broken file of the given kind.

    Args:
        path: output file.
        kind: "empty" (zero bytes), "garbage" (random bytes), "text" (a text file), "truncated" (the first
            40 % of ``source``), "audio" (audio-only MP4).
        source: a valid video to truncate (kind="truncated").

    Returns:
        The path written.
    """
    path = Path(path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "truncated":
        if source is None:
            raise ValueError("kind='truncated' needs source=")
        data = Path(source).read_bytes()
        path.write_bytes(data[: int(len(data) * 0.4)])
    elif kind == "audio":
        write_audio_only(path)
    else:
        raise ValueError(f"unknown corrupt kind {kind!r}")
    return path


def write_rotated_video(path: str | Path, degrees: int, *, num_frames: int = 10) -> Path | None:
    """A 96x64 H.264 MP4 (left half of each stored frame white) with a display matrix turning it ``degrees``
    counter-clockwise, as phones write them; None when this PyAV/FFmpeg cannot write or read one back."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        if not hasattr(s, "set_display_rotation"):
            return None
        s.set_display_rotation(degrees)  # counter-clockwise, as VideoFrame.rotation reads it
        img = np.zeros((64, 96, 3), np.uint8)
        img[:, :48] = 255
        for _ in range(num_frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        if (next(c.decode(video=0)).rotation - degrees) % 360:  # 180 reads back as -180
            return None
    return path
