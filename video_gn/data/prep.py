"""Preparing video datasets on disk: transcode, trim and resize with PyAV.

Library code behind ``data_scripts/resize_videos.py`` and the trimming of ``download_kinetics.py``
(:mod:`video_gn.data.kinetics_download`); checking files is :mod:`video_gn.data.verify`, file lists
:mod:`video_gn.data.filelists`. Every writer encodes H.264
(libx264, yuv420p) MP4s, keeps the source frame rate, drops audio, and writes to a temporary name that is
renamed on success, so an existing output file is always complete (this is what makes the tools resumable).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from video_gn.data import decode
from video_gn.data.progress import parallel_map
from video_gn.data.script_args import folder_problem

__all__ = [
    "VIDEO_EXTENSIONS",
    "X264_PRESETS",
    "find_videos",
    "resize_tree",
    "resize_video",
    "scaled_size",
    "transcode",
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


def stream_frame_rate(stream) -> Fraction:
    """The frame rate of a PyAV video stream as a fraction (30 if the container does not say)."""
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
            fps = stream_frame_rate(vin)
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


def write_rows_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV with a header (used for failure/bad-file reports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
