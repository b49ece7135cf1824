"""One synthetic motion video: the classes, their rendering with numpy, and the H.264 encoding.

Every class is defined by *motion only*: the appearance of a video (background colour and texture, object
shape/colour/size/stripes, brightness, contrast, sensor noise) and the object's initial state (position,
angle, scale) are drawn from the same distribution for every class, and at any single instant the object's
position, angle and scale are distributed identically across classes (motion wraps around the frame edges,
scaling is a log-periodic sawtooth). So no single frame tells the class; several frames do, and some classes
(reversals, slow vs fast oscillation) need many frames.

:mod:`video_gn.data.synthetic` builds datasets of these videos (spec, presets, per-video seeds, the folder
layout, atomic generation) and re-exports the names here.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

__all__ = ["CLASSES", "DESCRIPTIONS", "FLIP_SENSITIVE", "render_video", "write_mp4"]

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

_SHAPES = ("disc", "square", "triangle", "ellipse", "cross", "ring")
# The translation classes: (axis, direction along it, whether the path reverses at t_rev). Image y points down,
# so "up" is −y.
_TRANSLATIONS: dict[str, tuple[str, float, bool]] = {
    "move_right": ("x", 1.0, False),
    "move_left": ("x", -1.0, False),
    "move_up": ("y", -1.0, False),
    "move_down": ("y", 1.0, False),
    "right_then_left": ("x", 1.0, True),
    "left_then_right": ("x", -1.0, True),
    "up_then_down": ("y", -1.0, True),
    "down_then_up": ("y", 1.0, True),
}

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

    if class_name in _TRANSLATIONS:
        axis, sign, reverses = _TRANSLATIONS[class_name]
        shift = sign * speed * (folded if reverses else t)
        if axis == "x":
            cx = cx + shift
        else:
            cy = cy + shift
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
        seed: the video's seed (see :func:`video_gn.data.synthetic.video_seed`).
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
