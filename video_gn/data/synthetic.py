"""A synthetic motion-recognition dataset written as real H.264 MP4s in the Kinetics folder layout.

Every class is defined by motion only: no single frame tells the class, several frames do, and some classes
(reversals, slow vs fast oscillation) need many. One video (the classes, their rendering, the H.264 encoding)
is :mod:`video_gn.data.synthetic_video`, whose names are re-exported here; this module makes datasets of them:
the spec and its presets, per-video seeds, the folder layout and the atomic, resumable generation.

Layout written by :func:`generate`::

    <root>/train/<class>/<class>_<index:05d>.mp4
    <root>/val/<class>/<class>_<index:05d>.mp4
    <root>/classes.txt          # one class name per line, index order
    <root>/synthetic.json       # the SyntheticSpec used
    <root>/.complete            # written last; the whole tree is built in a temp dir and renamed atomically

Warning: left/right and cw/ccw classes swap under a horizontal flip, so train on this dataset with
horizontal-flip augmentation disabled (see :data:`FLIP_SENSITIVE`).

Determinism: each video's frames depend only on ``(spec.seed, split, class, index)`` and the spec's
size/fps/num_frames (not on the number of workers or on ``num_classes``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from video_gn.data.prep import X264_PRESETS
from video_gn.data.script_args import output_path_problem
from video_gn.data.synthetic_video import CLASSES, DESCRIPTIONS, FLIP_SENSITIVE, render_video, write_mp4
from video_gn.runlock import process_gone

__all__ = [
    "CLASSES",
    "DESCRIPTIONS",
    "FLIP_SENSITIVE",
    "PRESETS",
    "SyntheticSpec",
    "check_root",
    "class_names",
    "describe",
    "generate",
    "is_complete",
    "render_video",
    "video_seed",
    "write_mp4",
]

_SPLITS = ("train", "val")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. The defaults (preset ``"default"``) make 500 videos of 3 s at 64x80 px, 10 classes.

    The quick start (``configs/quickstart.yaml``) uses a smaller spec, preset ``"quickstart"``: 6 classes,
    1,680 videos at 40x48 px. A root holds one spec: generating another spec into it is an error.

    Args:
        num_classes: how many classes, the first ``num_classes`` of :data:`CLASSES` (1..14).
        train_per_class: training videos per class.
        val_per_class: validation videos per class.
        size: frame size ``(height, width)``; both even (H.264 4:2:0) and at least 32.
        fps: frame rate (frames per second) of the written videos.
        num_frames: video length in frames (``num_frames / fps`` seconds).
        seed: master seed (>= 0); every video's seed derives from ``(seed, split, class, index)``.
        crf: x264 constant rate factor (0 = lossless, 23 = x264 default; lower = larger files).
        preset: x264 preset (speed/size trade-off), e.g. ``"veryfast"`` or ``"medium"``.
    """

    num_classes: int = 10
    train_per_class: int = 40
    val_per_class: int = 10
    size: tuple[int, int] = (64, 80)
    fps: int = 25
    num_frames: int = 75
    seed: int = 0
    crf: int = 18
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {self.num_classes}")
        for name in ("train_per_class", "val_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train_per_class + self.val_per_class == 0:
            raise ValueError("train_per_class and val_per_class are both 0: the dataset would have no videos")
        if len(self.size) != 2:
            raise ValueError(f"size must be (height, width), got {self.size!r}")
        h, w = (int(s) for s in self.size)
        if h < 32 or w < 32 or h % 2 or w % 2:
            raise ValueError(f"size must be two even numbers >= 32 (H.264 yuv420p), got {self.size!r}")
        object.__setattr__(self, "size", (h, w))
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (motion needs two frames), got {self.num_frames}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51 (x264), got {self.crf}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0 (numpy seeds), got {self.seed}")
        if self.preset not in X264_PRESETS:
            raise ValueError(
                f"preset must be an x264 preset ({', '.join(X264_PRESETS)}), got {self.preset!r}"
            )

    def to_dict(self) -> dict:
        """Return the spec as a JSON-serialisable dict (``size`` as a list)."""
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticSpec:
        """Build a spec from :meth:`to_dict` output."""
        d = dict(d)
        if "size" in d:
            d["size"] = tuple(d["size"])
        return cls(**d)


#: Named specs: "tiny" (tests, smoke runs); "quickstart" (exactly ``data.synthetic`` of
#: configs/quickstart.yaml: 6 classes, 1,680 videos at 40x48, so a dataset made ahead of time is the one the
#: quick start reads); "default" (``SyntheticSpec()``: 10 classes, 500 videos at 64x80, incl. the
#: oscillation and late-reversal classes); "large" (112 px crops, all 14 classes).
PRESETS: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec(num_classes=4, train_per_class=4, val_per_class=2, size=(32, 40), num_frames=24),
    "quickstart": SyntheticSpec(
        num_classes=6, train_per_class=240, val_per_class=40, size=(40, 48), fps=25, num_frames=75, seed=0
    ),
    "default": SyntheticSpec(),
    "large": SyntheticSpec(
        num_classes=len(CLASSES), train_per_class=200, val_per_class=40, size=(128, 160), num_frames=100
    ),
}


def class_names(spec: SyntheticSpec) -> list[str]:
    """Return the class names of ``spec`` in label-index order (the first ``spec.num_classes`` of CLASSES)."""
    return list(CLASSES[: spec.num_classes])


def describe() -> str:
    """Return a human-readable description of every class, one per line, in index order."""
    return "\n".join(f"{i:2d} {name:16s} {DESCRIPTIONS[name]}" for i, name in enumerate(CLASSES))


def video_seed(seed: int, split: str, class_name: str, index: int) -> int:
    """Derive the 63-bit seed of one video from ``(seed, split, class, index)``.

    Independent of the worker count and of ``num_classes`` (the class is identified by its position in
    the full :data:`CLASSES` list).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    ss = np.random.SeedSequence([int(seed), _SPLITS.index(split), CLASSES.index(class_name), int(index)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _make_one(job: tuple[str, str, int, str, dict]) -> str:
    """Worker: render and write one video; returns its path."""
    out_dir, class_name, seed, name, spec_d = job
    spec = SyntheticSpec.from_dict(spec_d)
    frames = render_video(class_name, seed, size=spec.size, num_frames=spec.num_frames, fps=spec.fps)
    path = Path(out_dir) / name
    write_mp4(path, frames, fps=spec.fps, crf=spec.crf, preset=spec.preset)
    return str(path)


def is_complete(root: str | os.PathLike, spec: SyntheticSpec | None = None) -> bool:
    """Return True if ``root`` holds a finished synthetic dataset (and, if given, one made from ``spec``)."""
    root = Path(root)
    if not (root / ".complete").is_file():
        return False
    if spec is None:
        return True
    try:
        saved = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    return saved == spec.to_dict()


def check_root(root: str | os.PathLike, spec: SyntheticSpec) -> bool:
    """Whether :func:`generate` can use ``root`` for ``spec``: True if it already holds that dataset (reused),
    False if it can be written (new, or an empty folder).

    Raises:
        ValueError: ``root`` holds a dataset of another spec (the message names the differing fields), is
            a file or a non-empty folder, or cannot be created (a parent is a file).
    """
    root = Path(root).expanduser().absolute()
    if is_complete(root, spec):
        return True
    if is_complete(root):
        raise ValueError(
            f"{root} already holds a synthetic dataset made from a different spec "
            f"({_spec_diff(root, spec)}; see {root / 'synthetic.json'}); choose another root (or delete "
            "it if it is an old synthetic set you no longer need)"
        )
    if problem := output_path_problem(root, directory=True):  # a file, or under one
        raise ValueError(f"{problem}; choose a new or empty root")
    if root.exists() and any(root.iterdir()):
        raise ValueError(
            f"{root} exists and is not an empty directory (and holds no synthetic dataset); choose a new "
            "or empty root"
        )
    return False


def generate(
    root: str | os.PathLike,
    spec: SyntheticSpec | None = None,
    workers: int | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Generate the synthetic dataset of ``spec`` into ``root`` (atomically) and return ``root``.

    If ``root`` already holds a complete dataset of the same spec, it is reused: nothing is done. A root
    holding a dataset of another spec, or anything else (a file, a non-empty folder), is refused with a
    ``ValueError`` saying why (:func:`check_root`); an empty folder is filled. The tree is written into a
    temporary directory beside ``root`` and renamed into place once ``.complete`` is written, so a reader
    never sees a half-written dataset (several processes may call this concurrently). The root gets the
    mode a plain ``mkdir`` would give it (0777 minus the umask), not the temporary directory's private 0700.

    Args:
        root: dataset directory: new, empty, or holding a complete dataset of ``spec`` (reused).
        spec: what to generate (default: ``SyntheticSpec()``).
        workers: processes to use (default: ``os.cpu_count()``); ``0`` or ``1`` runs in this process.
        progress: show a progress bar with totals.

    Returns:
        The dataset root as a Path.
    """
    spec = SyntheticSpec() if spec is None else spec
    if not isinstance(spec, SyntheticSpec):
        raise TypeError(f"spec must be a SyntheticSpec, got {type(spec).__name__}")
    root = Path(root).expanduser().absolute()
    if check_root(root, spec):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(root)}{os.getpid()}-", dir=root.parent))
    try:
        names = class_names(spec)
        jobs = []
        for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
            if per_class == 0:  # no folder at all: "no val split" means training without validation
                continue
            for name in names:
                out_dir = tmp / split / name
                out_dir.mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    seed = video_seed(spec.seed, split, name, i)
                    jobs.append((str(out_dir), name, seed, f"{name}_{i:05d}.mp4", spec.to_dict()))
        _run_jobs(jobs, workers, progress, f"synthetic -> {root.name}")
        (tmp / "classes.txt").write_text("".join(f"{n}\n" for n in names))
        (tmp / "synthetic.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        (tmp / ".complete").write_text("")
        # mkdtemp makes the directory 0700 (private to this user); give the dataset root the mode a plain
        # mkdir would have (0777 minus the umask), so a shared dataset is readable like its files are.
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            if root.is_dir():  # empty directory (checked above): os.replace cannot replace it portably
                root.rmdir()
            os.replace(tmp, root)
        except OSError:
            if is_complete(root, spec):  # another process finished the same dataset first
                return root
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _tmp_prefix(root: Path) -> str:
    """Name prefix of the temporary folders ``generate`` writes ``root`` into (then the writer's pid)."""
    return f".{root.name}.tmp-{socket.gethostname()}-"


def _remove_abandoned_temporaries(root: Path) -> None:
    """Delete the temporary folders left beside ``root`` by generators of this host that were killed (SIGKILL,
    out of memory) before they could clean up. Those of live processes, and of other hosts sharing the file
    system (whose pids mean nothing here), are left alone."""
    prefix = _tmp_prefix(root)
    for tmp in root.parent.glob(f"{prefix}*"):
        pid = tmp.name[len(prefix) :].partition("-")[0]
        if pid.isdigit() and process_gone(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _spec_diff(root: Path, spec: SyntheticSpec) -> str:
    """Where ``root``'s saved spec differs from ``spec``: ``field: <saved> there, <new> asked; ...``."""
    try:
        saved = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return "its synthetic.json is missing or unreadable"
    wanted = spec.to_dict()
    diff = [f"{k}: {saved.get(k)!r} there, {v!r} asked" for k, v in wanted.items() if saved.get(k) != v]
    diff += [f"{k}: {saved[k]!r} there, absent asked" for k in saved if k not in wanted]
    return "; ".join(diff) or "the saved spec differs"


def _umask() -> int:
    """The process's file mode creation mask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read is to set it and put it back
    os.umask(mask)
    return mask


def _run_jobs(jobs: Sequence[tuple], workers: int | None, progress: bool, description: str) -> None:
    from video_gn.data.progress import default_workers, progress_bar

    workers = default_workers(workers)
    with progress_bar(total=len(jobs), description=description, enabled=progress) as advance:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _make_one(job)
                advance()
            return
        from video_gn.data.progress import process_pool

        with process_pool(workers) as pool:
            for _ in pool.map(_make_one, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers)))):
                advance()
