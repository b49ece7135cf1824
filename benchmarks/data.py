"""Clip-loading throughput: video_gn's PyAV window decoder vs pytorchvideo's stock path vs torchcodec.

Writes 10-second 340x256 30 fps H.264 videos (GOP 30 and x264's default GOP), then, on exactly the same
windows (T x s = 8x8, 32x2, 64x1; random starts from a fixed seed):

1. decode-only, one process, methods interleaved clip by clip (so load from other processes hits all
   methods alike): video_gn ``decode_frames`` (uint8), pytorchvideo
   ``EncodedVideo.from_path(p, decoder="pyav").get_clip(start, end)`` + temporal subsampling (float), and
   torchcodec ``VideoDecoder(p, seek_mode="exact").get_frames_at(indices)`` (uint8) when importable;
2. PyAV thread settings for video_gn's decoder;
3. the full training loader (``KineticsDataModule.train_dataloader()``: decode + random short-side scale
   256-320 + random crop 224 + flip + normalise), ``num_workers`` 0 and 2.

Prints markdown tables: clips/s, decoded (kept) frames/s, peak memory as the summed PSS of this process and its
workers (not RSS, which counts pages the forked workers share with the parent once per process). The "RSS flat
over 2,000 clips" check of issue 3 is a test (tests/test_data.py), on one process's RSS.

    python benchmarks/data.py                       # full run (~5-10 min on 2 cores)
    python benchmarks/data.py --videos 2 --clips 12  # quick look
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch

from video_gn._pytorchvideo import ptv_data
from video_gn.data import KineticsDataModule
from video_gn.data.decode import clip_indices, decode_frames
from video_gn.data.sampler import window_span

WINDOWS = ((8, 8), (32, 2), (64, 1))
GOPS: dict[str, int | None] = {"gop30": 30, "x264-default": None}
FPS, SECONDS, WIDTH, HEIGHT = 30, 10, 340, 256


# --------------------------------------------------------------------------- inputs
def write_bench_video(path: Path, *, gop: int | None, seed: int) -> None:
    """A 10 s 340x256 30 fps H.264 video (x264 preset medium, CRF 23) of a panning texture plus a moving disc."""
    rng = np.random.default_rng(seed)
    n = FPS * SECONDS
    big = rng.integers(0, 256, size=(HEIGHT // 4 + 64, WIDTH // 4 + 128, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big, 4, axis=0), 4, axis=1).astype(np.float32)
    k = np.ones(9, dtype=np.float32) / 9  # separable blur: a smooth, textured background
    big = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 0, big)
    big = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, big).astype(np.uint8)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    vx, vy = rng.uniform(0.5, 1.5), rng.uniform(0.2, 0.8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        opts = {"preset": "medium", "crf": "23"}
        if gop is not None:
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        stream.options = opts
        for i in range(n):
            ox, oy = int(i * vx) % 400, int(i * vy) % 200
            frame = big[oy % (big.shape[0] - HEIGHT) :, ox % (big.shape[1] - WIDTH) :][:HEIGHT, :WIDTH].copy()
            cx, cy = (40 + 3 * i) % WIDTH, HEIGHT / 2 + 60 * np.sin(i / 15)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 30**2
            frame[disc] = (255, 80, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(out: Path, per_gop: int) -> dict[str, list[Path]]:
    """Write (or reuse) ``per_gop`` videos per GOP setting under ``out/<gop name>/videos``."""
    videos: dict[str, list[Path]] = {}
    for name, gop in GOPS.items():
        d = out / name / "videos"
        d.mkdir(parents=True, exist_ok=True)
        videos[name] = []
        for i in range(per_gop):
            p = d / f"v{i}.mp4"
            if not p.exists():
                tmp = p.with_suffix(".tmp.mp4")
                write_bench_video(tmp, gop=gop, seed=i)
                tmp.rename(p)
            videos[name].append(p)
    return videos


def dataset_root(root: Path, sources: list[Path], count: int) -> Path:
    """A Kinetics-layout dataset of ``count`` (at least 2) links to ``sources``, alternating classes c0 / c1.

    The data module refuses a one-class dataset, so the links are spread over two class folders; a root with
    another number of videos (another ``--videos`` / ``--loader-videos``, an interrupted build, one class
    folder from an older version of this script) is rebuilt.
    """
    want = max(count, 2)
    if (root / "train" / "c1").is_dir() and len(list(root.glob("train/c*/v*.mp4"))) == want:
        return root
    if root.exists():
        shutil.rmtree(root)
    for i in range(want):
        d = root / "train" / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(sources[i % len(sources)].resolve(), d / f"v{i}.mp4")
    return root


# --------------------------------------------------------------------------- memory
def _rss_kib(pid: int) -> int:
    # PSS, not RSS: forked workers share the parent's pages, and summing RSS would count them twice.
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


class PeakRSS:
    """Samples the summed proportional set size (PSS) of this process and its children every 50 ms (context manager); ``peak`` in MiB."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    def _total(self) -> int:
        me = os.getpid()
        return _rss_kib(me) + sum(_rss_kib(c) for c in _children(me))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total() / 1024)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total() / 1024)


# --------------------------------------------------------------------------- decoders
def ours(thread_type: str | None = None, thread_count: int = 1) -> Callable[[Path, np.ndarray, int], int]:
    def run(path: Path, idx: np.ndarray, s: int) -> int:
        frames, _ = decode_frames(path, idx, thread_type=thread_type, thread_count=thread_count)
        return frames.shape[0]

    return run


def pytorchvideo_stock(path: Path, idx: np.ndarray, s: int) -> int:
    video = ptv_data.encoded_video.EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
    try:
        start = int(idx[0])
        span = int(idx[-1]) - start + 1
        # Half a frame of margin on both sides so seconds -> pts rounding keeps the first and last frame.
        clip = video.get_clip(max(0.0, (start - 0.5) / FPS), (start + span - 0.5) / FPS)[
            "video"
        ]  # (C, T', H, W)
        clip = clip[:, ::s][:, : len(idx)]  # temporal subsampling: every s-th frame
        return clip.shape[1]
    finally:
        video.close()


def torchcodec_exact() -> Callable[[Path, np.ndarray, int], int] | None:
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # noqa: BLE001 - missing package or missing system FFmpeg libraries
        return None

    def run(path: Path, idx: np.ndarray, s: int) -> int:
        decoder = VideoDecoder(str(path), seek_mode="exact")
        return decoder.get_frames_at(idx.tolist()).data.shape[0]

    return run


def interleaved(
    methods: dict[str, Callable[[Path, np.ndarray, int], int]], jobs: list[tuple[Path, np.ndarray, int]]
) -> dict[str, np.ndarray]:
    """Run every method on every job, rotating the order per job; return {name: seconds per job}."""
    names = list(methods)
    times = {n: np.zeros(len(jobs)) for n in names}
    for j, (path, idx, s) in enumerate(jobs):
        for k in range(len(names)):
            name = names[(j + k) % len(names)]
            t0 = time.perf_counter()
            frames = methods[name](path, idx, s)
            times[name][j] = time.perf_counter() - t0
            if frames != len(idx):
                raise RuntimeError(f"{name} returned {frames} frames instead of {len(idx)} on {path}")
    return times


def paired_ratio(ref: np.ndarray, ours_: np.ndarray) -> float:
    """Median over clips of ref time / our time: robust to load bursts from other processes."""
    return float(np.median(ref / ours_))


def make_jobs(paths: list[Path], t: int, s: int, clips: int, seed: int) -> list[tuple[Path, np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    total = FPS * SECONDS
    span = window_span(t, s)
    jobs = []
    for i in range(clips):
        start = int(rng.integers(0, total - span + 1))
        jobs.append((paths[i % len(paths)], clip_indices(start, t, s, total), s))
    return jobs


# --------------------------------------------------------------------------- loader
def loader_run(root: Path, t: int, s: int, workers: int, epochs: int) -> tuple[float, int, float]:
    dm = KineticsDataModule(
        str(root),
        num_frames=t,
        sampling_rate=s,
        batch_size=8,
        num_workers=workers,
        persistent_workers=True,
        drop_last=False,  # every clip counts, also with fewer than 8 videos (--loader-videos)
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    with PeakRSS() as mem:
        for _ in loader:  # warm-up epoch: worker start-up, first opens
            pass
        clips = 0
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                clips += batch["video"].shape[0]
        seconds = time.perf_counter() - t0
    del loader
    return seconds, clips, mem.peak


def rss_run(root: Path, clips: int) -> tuple[float, float]:
    """VmRSS (MiB) of this process after 200 and after ``clips`` 8x8 training clips (decode + transforms)."""
    dm = KineticsDataModule(str(root), num_frames=8, sampling_rate=8, num_workers=0)
    dm.setup("fit")
    dataset = dm.datasets["train"]

    def vmrss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    at = {}
    for n in range(1, clips + 1):
        dataset[n % dataset.num_videos]
        if n in (200, clips):
            at[n] = vmrss()
    return at[200], at[clips]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/video_gn_bench_data"), help="where videos go")
    parser.add_argument("--videos", type=int, default=4, help="videos per GOP setting")
    parser.add_argument("--clips", type=int, default=40, help="clips per window and GOP (decode-only part)")
    parser.add_argument("--loader-epochs", type=int, default=3, help="timed epochs per loader run")
    parser.add_argument("--loader-videos", type=int, default=16, help="videos in the loader's dataset")
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--rss-clips", type=int, default=0, help="also measure RSS after 200 and N clips")
    parser.add_argument("--only-rss", action="store_true", help="run only the RSS measurement")
    parser.add_argument("--clean", action="store_true", help="delete --out first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("video_gn.data.datamodule").setLevel(logging.ERROR)  # "no val split" notes
    if args.clean:
        shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.time()
    videos = make_videos(args.out, args.videos)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, av {av.__version__}"
    )
    print(
        f"videos: {args.videos} per GOP, {SECONDS} s {WIDTH}x{HEIGHT} {FPS} fps H.264 (written in {time.time() - t0:.0f} s)\n"
    )

    if args.rss_clips or args.only_rss:
        n = args.rss_clips or 2000
        root = dataset_root(args.out / "rss_x264-default", videos["x264-default"], args.videos)
        before, after = rss_run(root, n)
        print("### Host memory (training dataset, 8x8 clips, decode + transforms, one process)\n")
        print(f"| RSS after 200 clips | RSS after {n} clips | change |\n| --- | --- | --- |")
        print(f"| {before:.0f} MiB | {after:.0f} MiB | {100 * (after - before) / before:+.1f} % |\n")
        if args.only_rss:
            return

    tc = torchcodec_exact()
    methods: dict[str, Callable] = {"video_gn": ours(), "pytorchvideo": pytorchvideo_stock}
    if tc is not None:
        methods["torchcodec"] = tc
    else:
        print("torchcodec not importable (pip install torchcodec + system FFmpeg): column omitted\n")

    print("### Decode only (one process, same windows, interleaved)\n")
    print("Ratios: median over clips of (reference time / video_gn time) on the same clip.\n")
    cols = list(methods)
    head = " | ".join(f"{m} clips/s | {m} frames/s" for m in cols)
    ratio_cols = ["vs pytorchvideo"] + (["vs torchcodec"] if tc else [])
    print(f"| video | window | {head} | " + " | ".join(ratio_cols) + " |")
    print("|" + " --- |" * (2 + 2 * len(cols) + len(ratio_cols)))
    for gop_name, paths in videos.items():
        for t, s in WINDOWS:
            jobs = make_jobs(paths, t, s, args.clips, seed=t * 100 + s)
            res = interleaved(methods, jobs)
            cells = []
            for m in cols:
                sec = res[m].sum()
                cells.append(f"{len(jobs) / sec:.1f} | {len(jobs) * t / sec:.0f}")
            ratios = [f"{paired_ratio(res['pytorchvideo'], res['video_gn']):.2f}x"]
            if tc:
                ratios.append(f"{paired_ratio(res['torchcodec'], res['video_gn']):.2f}x")
            print(f"| {gop_name} | {t}x{s} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    print("\n### PyAV thread settings for video_gn's decoder (clips/s, interleaved)\n")
    variants = {
        "default (1 thread)": ours(None, 1),
        "FFmpeg auto": ours(None, 0),
        "FRAME x2": ours("FRAME", 2),
        "AUTO x2": ours("AUTO", 2),
        "AUTO auto": ours("AUTO", 0),
    }
    print("| video | window | " + " | ".join(variants) + " |")
    print("|" + " --- |" * (2 + len(variants)))
    for gop_name, paths in videos.items():
        for t, s in WINDOWS:
            jobs = make_jobs(paths, t, s, max(8, args.clips // 2), seed=t * 100 + s + 1)
            res = interleaved(variants, jobs)
            print(
                f"| {gop_name} | {t}x{s} | "
                + " | ".join(f"{len(jobs) / res[v].sum():.1f}" for v in variants)
                + " |"
            )

    if args.skip_loader:
        return
    print("\n### Training loader (decode + scale 256-320 + crop 224 + flip + normalise, batch 8)\n")
    print("| video | window | workers | clips/s | frames/s | peak memory MiB (PSS, main + workers) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for gop_name in videos:
        # more videos for the loader: the written ones linked several times
        root = dataset_root(args.out / f"loader_{gop_name}", videos[gop_name], args.loader_videos)
        for t, s in WINDOWS:
            for workers in (0, 2):
                sec, clips, peak = loader_run(root, t, s, workers, args.loader_epochs)
                print(
                    f"| {gop_name} | {t}x{s} | {workers} | {clips / sec:.1f} | {clips * t / sec:.0f} | {peak:.0f} |"
                )


if __name__ == "__main__":
    main()
