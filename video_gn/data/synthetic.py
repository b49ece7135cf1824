"""A synthetic motion-recognition dataset written as real H.264 MP4s in the Kinetics folder layout.

Every class is defined by *motion only*: the appearance of a video (background colour and texture, object
shape/colour/size/stripes, brightness, contrast, sensor noise) and the object's initial state (position,
angle, scale) are drawn from the same distribution for every class, and at any single instant the object's
position, angle and scale are distributed identically across classes (motion wraps around the frame edges,
scaling is a log-periodic sawtooth). So no single frame tells the class; several frames do, and some classes
(reversals, slow vs fast oscillation) need many frames.

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
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from video_gn.data.prep import X264_PRESETS
from video_gn.data.script_args import output_path_problem
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

# Fixed order: ``num_classes=N`` takes the first N. The default 10 include two reversal classes.
DESCRIPTIONS: dict[str, str] = {
    "move_right": "the object translates to the right at constant speed (wrapping around the frame edge)",
    "move_left": "the object translates to the left at constant speed (wrapping around the frame edge)",
    "rotate_cw": "the object spins clockwise in place at constant angular speed",
    "rotate_ccw": "the object spins counter-clockwise in place at constant angular speed",
    "expand": "the object grows exponentially, jumping back to small once per 1-2 s cycle (log sawtooth)",
    "contract": "the object shrinks exponentially, jumping back to large once per 1-2 s cycle (log sawtooth)",
    "oscillate_fast": "back-and-forth along a random direction, period 0.4-0.6 s",
    "oscillate_slow": "back-and-forth along a random direction, period 1.4-2.0 s, same peak speed as fast "
    "(a short window looks like a translation; telling it needs many frames)",
    "right_then_left": "moves right, reverses between 35 % and 65 % of the clip and moves left "
    "(a short window looks like move_right or move_left)",
    "left_then_right": "moves left, reverses between 35 % and 65 % of the clip and moves right",
    "move_up": "the object translates upwards at constant speed",
    "move_down": "the object translates downwards at constant speed",
    "up_then_down": "moves up, reverses between 35 % and 65 % of the clip and moves down",
    "down_then_up": "moves down, reverses between 35 % and 65 % of the clip and moves up",
}
CLASSES: tuple[str, ...] = tuple(DESCRIPTIONS)

#: Classes whose label changes under a horizontal flip (do not use hflip augmentation with them).
FLIP_SENSITIVE: frozenset[str] = frozenset(
    {"move_right", "move_left", "rotate_cw", "rotate_ccw", "right_then_left", "left_then_right"}
)

_SPLITS = ("train", "val")
_SHAPES = ("disc", "square", "triangle", "ellipse", "cross", "ring")


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


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random field in [-1, 1], shape (h, w, 3)."""
    gh, gw = cells + 1, max(2, round(cells * w / h)) + 1
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw, 3)).astype(np.float32)
    y = np.linspace(0, gh - 1, h, dtype=np.float32)
    x = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(y.astype(np.int64), gh - 2)
    x0 = np.minimum(x.astype(np.int64), gw - 2)
    fy = (y - y0)[:, None, None]
    fx = (x - x0)[None, :, None]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fx) + g01 * fx) * (1 - fy) + (g10 * (1 - fx) + g11 * fx) * fy


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (in object radii) to the boundary of ``shape`` at local coords (u, v)."""
    if shape == "disc":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "triangle":
        d = None
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            dk = u * math.cos(a) + v * math.sin(a)
            d = dk if d is None else np.maximum(d, dk)
        return 2.0 * (d - 0.5)
    if shape == "ellipse":
        return np.sqrt(u * u + (v / 0.55) ** 2) - 1.0
    if shape == "cross":
        au, av_ = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av_ - 0.35), np.maximum(au - 0.35, av_ - 1.0))
    if shape == "ring":
        return np.abs(np.sqrt(u * u + v * v) - 0.7) - 0.3
    raise ValueError(f"unknown shape {shape!r}")


def _motion(
    class_name: str, rng: np.random.Generator, t: np.ndarray, state0: dict, side: float, scale_range: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (cx, cy, angle, log_scale), each shape (T,), of ``class_name``; equal to state0 at t=0."""
    n = t.shape[0]
    cx = np.full(n, state0["cx"], np.float64)
    cy = np.full(n, state0["cy"], np.float64)
    ang = np.full(n, state0["angle"], np.float64)
    ls = np.full(n, state0["log_scale"], np.float64)
    # All motion parameters are drawn in a fixed order so that the streams are comparable across classes.
    speed = rng.uniform(0.8, 1.4) * side  # px / s (also the peak speed of the oscillations)
    omega = rng.uniform(3.0, 6.0)  # rad / s
    lo, hi = scale_range
    zoom_rate = rng.uniform(1.0, 2.0) * (hi - lo)  # log-scale units / s
    direction = rng.uniform(0.0, 2 * math.pi)
    period = rng.uniform(0.4, 0.6) if class_name == "oscillate_fast" else rng.uniform(1.4, 2.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    duration = n and (t[-1] + (t[1] - t[0]) if n > 1 else 1.0)
    t_rev = rng.uniform(0.35, 0.65) * duration
    folded = np.where(t < t_rev, t, 2 * t_rev - t)  # position along a path that reverses at t_rev

    if class_name == "move_right":
        cx = cx + speed * t
    elif class_name == "move_left":
        cx = cx - speed * t
    elif class_name == "move_up":
        cy = cy - speed * t
    elif class_name == "move_down":
        cy = cy + speed * t
    elif class_name == "right_then_left":
        cx = cx + speed * folded
    elif class_name == "left_then_right":
        cx = cx - speed * folded
    elif class_name == "up_then_down":
        cy = cy - speed * folded
    elif class_name == "down_then_up":
        cy = cy + speed * folded
    elif class_name == "rotate_cw":  # image y points down, so increasing angle is clockwise on screen
        ang = ang + omega * t
    elif class_name == "rotate_ccw":
        ang = ang - omega * t
    elif class_name in ("expand", "contract"):
        sign = 1.0 if class_name == "expand" else -1.0
        ls = lo + np.mod(ls - lo + sign * zoom_rate * t, hi - lo)
    elif class_name in ("oscillate_fast", "oscillate_slow"):
        amp = speed * period / (2 * math.pi)
        s = amp * (np.sin(2 * math.pi * t / period + phase) - math.sin(phase))
        cx = cx + s * math.cos(direction)
        cy = cy + s * math.sin(direction)
    else:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    return cx, cy, ang, ls


def render_video(
    class_name: str, seed: int, *, size: tuple[int, int] = (64, 80), num_frames: int = 75, fps: int = 25
) -> np.ndarray:
    """Render one video of ``class_name``, all frames at once with numpy.

    Appearance and the object's initial state come from one random stream of ``seed`` and the motion
    parameters from another, so the same ``seed`` rendered for two classes gives the same first frame.

    Args:
        class_name: one of :data:`CLASSES`.
        seed: the video's seed (see :func:`video_seed`).
        size: ``(H, W)`` in pixels.
        num_frames: T, number of frames.
        fps: frames per second; motion is defined in seconds, so fps sets the temporal sampling.

    Returns:
        uint8 array of shape (T, H, W, 3), RGB.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    h, w = size
    side = float(min(h, w))
    app = np.random.default_rng([int(seed), 0])  # appearance + initial state
    mot = np.random.default_rng([int(seed), 1])  # motion parameters

    # --- appearance (identical for every class given the seed) ---
    bg_color = app.uniform(0.1, 0.9, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    g_freq = app.uniform(1.0, 6.0) / side
    g_ang = app.uniform(0, math.pi)
    g_amp = app.uniform(0.0, 0.12)
    g_col = app.uniform(-1, 1, 3).astype(np.float32)
    grating = np.sin(
        2 * math.pi * g_freq * (xx * math.cos(g_ang) + yy * math.sin(g_ang)) + app.uniform(0, 6.3)
    )
    blobs = _smooth_noise(app, h, w, int(app.integers(2, 7)))
    background = bg_color + g_amp * grating[..., None] * g_col + app.uniform(0.03, 0.15) * blobs  # (H, W, 3)

    shape = _SHAPES[int(app.integers(len(_SHAPES)))]
    radius = app.uniform(0.10, 0.15) * side
    # The object differs from the background in luminance by 0.45-0.7 (darker on light backgrounds,
    # lighter on dark ones) with a random tint: motion must be visible for the classes to be learnable
    # from a few hundred clips (with colour-only contrast, width-16 3D ResNets memorised appearance
    # instead). The stripe colour differs from the object colour by 0.3-0.7 per channel (cyclically).
    sign = -1.0 if float(bg_color.mean()) > 0.5 else 1.0
    col_a = np.clip(bg_color + sign * app.uniform(0.45, 0.7) + app.uniform(-0.15, 0.15, 3), 0.0, 1.0)
    col_a = col_a.astype(np.float32)
    col_b = np.mod(col_a + app.uniform(0.3, 0.7, 3), 1.0).astype(np.float32)
    stripe_freq = app.uniform(0.8, 2.0)  # stripes per radius; make rotation of a disc visible
    stripe_phase = app.uniform(0, 2 * math.pi)
    stripe_strength = app.uniform(0.15, 0.4)
    contrast = app.uniform(0.6, 1.4)
    brightness = app.uniform(-0.25, 0.25)
    noise_sigma = app.uniform(0.0, 0.03)
    scale_range = (math.log(0.65), math.log(1.5))
    state0 = {
        "cx": app.uniform(0, w),
        "cy": app.uniform(0, h),
        "angle": app.uniform(0, 2 * math.pi),
        "log_scale": app.uniform(*scale_range),
    }
    noise = app.standard_normal((num_frames, h, w, 3), dtype=np.float32) * np.float32(noise_sigma)

    # --- motion ---
    t = np.arange(num_frames, dtype=np.float64) / fps
    cx, cy, ang, ls = _motion(class_name, mot, t, state0, side, scale_range)
    r = (radius * np.exp(ls)).astype(np.float32)[:, None, None]  # (T, 1, 1) radius in px

    # Offsets from the object centre, wrapped on the torus so motion never leaves the frame.
    dx = xx[None] - cx.astype(np.float32)[:, None, None]
    dy = yy[None] - cy.astype(np.float32)[:, None, None]
    dx = np.mod(dx + w / 2, w) - w / 2  # (T, H, W)
    dy = np.mod(dy + h / 2, h) - h / 2
    c = np.cos(ang).astype(np.float32)[:, None, None]
    s = np.sin(ang).astype(np.float32)[:, None, None]
    u = (c * dx + s * dy) / r  # object-local coordinates, in radii
    v = (-s * dx + c * dy) / r
    dist = _shape_distance(shape, u, v)
    alpha = np.clip(0.5 - dist * r, 0.0, 1.0)[..., None]  # (T, H, W, 1) anti-aliased coverage
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * stripe_freq * u + stripe_phase)
    mix = (stripe_strength * stripes)[..., None]
    obj = col_a * (1 - mix) + col_b * mix  # (T, H, W, 3)

    frames = background[None] * (1 - alpha) + obj * alpha
    frames = (frames - 0.5) * contrast + 0.5 + brightness + noise
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, *, fps: int, crf: int = 18, preset: str = "veryfast"
) -> None:
    """Encode RGB frames as an H.264 (libx264, yuv420p) MP4, single-threaded and bit-exact for given frames.

    Args:
        path: output file (``.mp4``).
        frames: uint8 array (T, H, W, 3), H and W even.
        fps: frame rate.
        crf: x264 constant rate factor.
        preset: x264 preset.
    """
    import av  # local import: keeps `import video_gn.data.synthetic` cheap for spawned workers

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(int(fps), 1))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        # mbtree off: with it, x264's output varied from run to run on small frames (it read memory it had
        # not initialised); without it the files, hence the decoded frames, are bit-exact for a given seed.
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


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
