"""The plan: a few measured (T, B) points, an exact affine model of the saved bytes, and every grid cell predicted.

Activation bytes are affine in B for a fixed T and, where every temporal size is proportional to T, affine
in T; see the :mod:`video_gn.plan` docstring.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from video_gn.plan.measure import (
    OPTIMIZERS,
    PRECISIONS,
    StepMeasurement,
    make_optimizer,
    measure_step,
    optimizer_state_bytes,
    tensor_bytes,
)

#: Relative tolerance when checking that activation bytes are affine in T (they are integers, so an
#: exact architecture gives 0; anything above this means floor effects in temporal strides).
T_FIT_RTOL = 1e-6


@dataclass
class PlanCell:
    """Predicted cost of one (frames, batch) cell.

    Attributes:
        frames: clip length T.
        batch: per-device batch B.
        total_bytes: predicted peak training memory (None when unknown).
        activation_bytes: activations saved for backward (CPU) or peak minus static and input (CUDA).
        input_bytes: the input clip batch.
        step_time_s: median measured step time, or an estimate (see ``step_time_estimated``); None if unknown.
        source: ``"measured"``, ``"extrapolated-B"`` (exact), ``"extrapolated-T"`` (line checked on a third
            T), ``"extrapolated-T-unverified"``, ``"oom"`` or ``"unknown"``.
        fits: total within the budget (None without a budget or without a prediction).
        step_time_estimated: ``step_time_s`` comes from the line in B×T through the measured cells.
    """

    frames: int
    batch: int
    total_bytes: int | None
    activation_bytes: int | None
    input_bytes: int
    step_time_s: float | None
    source: str
    fits: bool | None = None
    step_time_estimated: bool = False


@dataclass
class Plan:
    """The planner's result: static memory, one :class:`PlanCell` per (T, B), and notes on the fit."""

    model: str
    norm: str
    ws: bool
    width: int
    crop: int
    num_classes: int
    precision: str
    optimizer: str
    device: str
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    budget_bytes: int | None
    frames: list[int]
    batches: list[int]
    cells: list[PlanCell]
    notes: list[str]
    batch_constant_bytes: dict[int, int] = field(default_factory=dict)
    per_clip_bytes: dict[int, int] = field(default_factory=dict)

    @property
    def static_bytes(self) -> int:
        """Parameters, buffers, gradients and optimiser state: independent of T and B."""
        return self.param_bytes + self.buffer_bytes + self.grad_bytes + self.optimizer_bytes

    def cell(self, frames: int, batch: int) -> PlanCell:
        """The cell at (frames, batch)."""
        for c in self.cells:
            if c.frames == frames and c.batch == batch:
                return c
        raise KeyError(f"No cell for T={frames}, B={batch}; the plan has T={self.frames}, B={self.batches}.")

    def largest_batch(self, frames: int) -> int | None:
        """Largest grid B that fits the budget at clip length ``frames``: 0 if none fits, None if unknown.

        Unknown without a budget, or when a cell that decides it has no prediction (memory grows with B, so
        cells beyond the first one that does not fit do not matter).
        """
        return self._largest([(c.batch, c.fits) for c in self.cells if c.frames == frames])

    def largest_frames(self, batch: int) -> int | None:
        """Largest grid T that fits the budget at batch ``batch``: 0 if none fits, None if unknown (as above)."""
        return self._largest([(c.frames, c.fits) for c in self.cells if c.batch == batch])

    def _largest(self, sizes_fits: list[tuple[int, bool | None]]) -> int | None:
        if self.budget_bytes is None:
            return None
        best = 0
        for size, fits in sorted(sizes_fits):
            if fits is None:
                return None
            if not fits:
                break
            best = size
        return best

    def max_batch_linear(self, frames: int) -> int | None:
        """Largest B within the budget from the affine-in-B model (beyond the grid); None if unknown."""
        if self.budget_bytes is None or frames not in self.per_clip_bytes:
            return None
        per = self.per_clip_bytes[frames]
        room = self.budget_bytes - self.static_bytes - self.batch_constant_bytes[frames]
        return max(0, math.floor(room / per)) if per > 0 else None

    def to_dict(self) -> dict:
        """JSON-ready dict (the ``--json`` output)."""
        d = asdict(self)
        d["static_bytes"] = self.static_bytes
        d["per_clip_bytes"] = {str(k): v for k, v in self.per_clip_bytes.items()}
        d["batch_constant_bytes"] = {str(k): v for k, v in self.batch_constant_bytes.items()}
        d["largest_batch_per_frames"] = {str(t): self.largest_batch(t) for t in self.frames}
        d["largest_frames_per_batch"] = {str(b): self.largest_frames(b) for b in self.batches}
        d["max_batch_linear_per_frames"] = {str(t): self.max_batch_linear(t) for t in self.frames}
        return d


def _measurement_points(frames: list[int], batches: list[int], device: str, measure: str) -> list[tuple]:
    if measure == "all" or (measure == "auto" and device == "cuda") or len(batches) == 1:
        # (With one batch size the batch-independent bytes cannot be separated: measure each T instead.)
        return [(t, b) for t in frames for b in batches]
    # Two B at the first two T give a(T) and c(T) there exactly (c may change with T); the third T, at the
    # smallest B, checks the lines in T through them.
    points = [(t, b) for t in frames[:2] for b in batches[:2]]
    points += [(t, batches[0]) for t in frames[2:3]]
    return points


def _fit_affine(xs: Sequence[int], ys: Sequence[int]) -> tuple[float, float]:
    (x0, x1), (y0, y1) = xs[:2], ys[:2]
    slope = (y1 - y0) / (x1 - x0)
    return slope, y0 - slope * x0


def _lines_at(t_line: tuple[tuple[float, float], tuple[float, float]], frames: int) -> tuple[float, float]:
    """(a(T), c(T)): per-clip and batch-independent saved bytes at ``frames`` from their lines in T."""
    (a_slope, a_icpt), (c_slope, c_icpt) = t_line
    return a_slope * frames + a_icpt, c_slope * frames + c_icpt


def _on_line(t_line: tuple[tuple[float, float], tuple[float, float]], frames: int, batch: int) -> float:
    """Saved bytes B * a(T) + c(T) from the lines in T of the per-clip and batch-independent bytes."""
    a, c = _lines_at(t_line, frames)
    return batch * a + c


@torch.no_grad()
def temporal_sizes(model: nn.Module, frames: int, device: str = "cpu") -> list[int]:
    """Temporal length of every 5-D module output, in call order, for a clip of ``frames`` frames.

    Saved activations are affine in T exactly when every one of these sizes is: a strided conv or pool
    rounds ``T / stride`` whenever T is not a multiple of the model's temporal downsampling. Spatial sizes do
    not change the temporal arithmetic, so the probe runs one 32×32 clip in eval mode.
    """
    sizes: list[int] = []

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 5:
            sizes.append(output.shape[2])

    was_training = model.training
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model.eval()
        model(torch.zeros(1, 3, frames, 32, 32, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sizes


def _affine_in_t(probes: dict[int, list[int]], t0: int, t1: int, t: int) -> bool:
    """Whether every probed temporal size at ``t`` lies on the line through its sizes at ``t0`` and ``t1``."""
    a, b, c = probes[t0], probes[t1], probes[t]
    return len(a) == len(b) == len(c) and all(
        (sc - sa) * (t1 - t0) == (sb - sa) * (t - t0) for sa, sb, sc in zip(a, b, c)
    )


def _fit_step_time(cells: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares line ``time = slope * (B*T) + intercept`` through (B*T, time) points; None if < 2 sizes."""
    xs = [x for x, _ in cells]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in cells)
    slope = sum((x - mx) * (y - my) for x, y in cells) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


@contextlib.contextmanager
def _ws_standardized_path(active: bool, notes: list[str]):
    """Measure WS convs on their standardized-weight path, the one accelerators always take.

    On CPU, ``WSConv3d`` switches weight-heavy layers to a weight-domain path (video_gn.nn.ws) by the
    weight/input size ratio, which depends on B and T; the saved bytes would then not be exactly linear in
    B×T and extrapolation would not be exact. The weight-domain path keeps two small output-sized tensors
    more per such layer (about 1.5 % of the activations on r3d_18 at width 8).
    """
    if not active:
        yield
        return
    from video_gn.nn import ws as ws_module

    previous, ws_module._FORCE_PATH = ws_module._FORCE_PATH, "standardized"
    notes.append(
        "WS convs measured on their standardized-weight path (as on GPUs); CPU training at small batches "
        "can keep ~1-2 % more for weight-heavy layers."
    )
    try:
        yield
    finally:
        ws_module._FORCE_PATH = previous


def build_plan(
    *,
    model: str = "i3d_r50",
    norm: str = "gn",
    ws: bool = True,
    width: int = 64,
    frames: Sequence[int] = (8, 16, 32, 64),
    batches: Sequence[int] = (1, 2, 4, 8),
    crop: int = 224,
    num_classes: int = 400,
    budget_bytes: int | None = None,
    precision: str = "32-true",
    optimizer: str = "sgd",
    device: str = "cpu",
    measure: str = "auto",
    steps: int = 2,
    seed: int = 0,
    log: bool = False,
    gn_groups: int | str | None = None,
) -> Plan:
    """Measure a few (T, B) points of a real training step and predict every cell of the grid.

    Args:
        model: registry name (``video_gn.models.names()``).
        norm: norm kind.
        ws: weight-standardized convolutions.
        width: base width.
        frames: clip lengths T of the grid.
        batches: per-device batch sizes B of the grid.
        crop: spatial crop H = W.
        num_classes: classifier outputs.
        budget_bytes: memory budget per device (None: no marks).
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"`` (CUDA only).
        optimizer: ``"sgd"`` or ``"adamw"``.
        device: ``"cpu"`` or ``"cuda"``.
        measure: ``"auto"`` (CPU: the two smallest B at the two smallest T and the smallest B at the third
            T; CUDA: every cell) or ``"all"``.
        steps: timed steps per measured point (0: no step time).
        seed: seed for the model initialisation.
        log: print progress to stderr.
        gn_groups: GroupNorm group count (None: the library default, as ``--model.gn_groups``).

    Returns:
        The :class:`Plan`.
    """
    from video_gn.models import build

    frames, batches = sorted(set(frames)), sorted(set(batches))
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda was requested but torch.cuda.is_available() is False; use --device cpu."
        )
    if device == "cpu" and precision == "16-mixed":
        raise ValueError("precision 16-mixed needs CUDA; on CPU use 32-true or bf16-mixed.")
    if measure not in ("auto", "all"):
        raise ValueError(f"measure must be 'auto' or 'all', got {measure!r}.")
    if crop < 1:
        raise ValueError(f"crop (--crop) must be a positive number of pixels, got {crop}.")
    if steps < 0:
        raise ValueError(f"steps (--steps) must be >= 0, got {steps}.")
    if gn_groups is not None and norm != "gn":
        raise ValueError(f"gn_groups (--gn_groups) only applies to norm 'gn', got norm {norm!r}; drop it.")
    notes: list[str] = []
    if norm == "syncbn":
        notes.append(
            "syncbn measured as BatchNorm: in one process SyncBatchNorm keeps the same bytes per device."
        )
    torch.manual_seed(seed)
    net_norm = "bn" if norm == "syncbn" else norm
    norm_kwargs = {"norm_kwargs": {"num_groups": gn_groups}} if gn_groups is not None and norm == "gn" else {}
    net = (
        build(model, num_classes=num_classes, norm=net_norm, ws=ws, width=width, **norm_kwargs)
        .to(device)
        .train()
    )
    opt = make_optimizer(net, optimizer)

    measured: dict[tuple[int, int], StepMeasurement] = {}
    with _ws_standardized_path(ws and device == "cpu", notes):
        points = _measurement_points(frames, batches, device, measure)
        start = time.perf_counter()
        for i, (t, b) in enumerate(points, 1):
            if log:
                print(
                    f"[plan] {i}/{len(points)}: measuring T={t} B={b} on {device} "
                    f"({time.perf_counter() - start:.0f} s so far) ...",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                measured[(t, b)] = measure_step(
                    net, opt, frames=t, batch=b, crop=crop, num_classes=num_classes, device=device,
                    precision=precision, steps=steps,
                )  # fmt: skip
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"A training step of {model} at T={t}, B={b}, crop {crop} failed: {err}. If the clip is too "
                    "small for the model (e.g. a norm left with one value per channel), use a larger --crop or "
                    "--frames."
                ) from err
    trainable = [p for p in net.parameters() if p.requires_grad]
    param_bytes = tensor_bytes(list(net.parameters()))
    buffer_bytes = tensor_bytes(list(net.buffers())) if list(net.buffers()) else 0
    grad_bytes = tensor_bytes([p.grad for p in trainable if p.grad is not None])
    opt_bytes = optimizer_state_bytes(opt)
    static = param_bytes + buffer_bytes + grad_bytes + opt_bytes
    input_per_clip = 3 * crop * crop * 4  # float32 clip bytes per frame

    # Affine model of saved bytes: A(T, B) = B * a(T) + c(T), exact in B at each T measured at two batch sizes.
    # c(T) (batch-independent: weight copies, norm statistics...) is usually constant, but need not be: on CPU
    # under bf16-mixed some convs run in float32 at small temporal sizes (video_gn.nn.conv).
    by_t: dict[int, list[StepMeasurement]] = {}
    for m in measured.values():
        if not m.oom:
            by_t.setdefault(m.frames, []).append(m)
    fits: dict[int, tuple[float, float]] = {}  # T -> (a, c)
    for t, ms in by_t.items():
        ms.sort(key=lambda m: m.batch)
        if len(ms) >= 2:
            fits[t] = _fit_affine([m.batch for m in ms], [m.saved_bytes for m in ms])
    fit_ts = sorted(fits)
    c_values = [fits[t][1] for t in fit_ts]
    c_constant = bool(c_values) and max(c_values) - min(c_values) <= max(1.0, T_FIT_RTOL * max(c_values))
    if not c_constant and c_values:
        notes.append(
            "Batch-independent saved bytes change with T ("
            + ", ".join(f"T={t}: {round(fits[t][1])}" for t in fit_ts)
            + "); each clip length uses its own, measured at two batch sizes."
        )
    # Lines in T through the first two fitted clip lengths, for a(T) and c(T); every other measured T checks them.
    t_line: tuple[tuple[float, float], tuple[float, float]] | None = None
    t_status = "none"
    checked_ts: list[int] = []
    if len(fit_ts) >= 2:
        t_line = (
            _fit_affine(fit_ts[:2], [fits[t][0] for t in fit_ts[:2]]),
            _fit_affine(fit_ts[:2], [fits[t][1] for t in fit_ts[:2]]),
        )
        checks = [m for t in sorted(by_t) if t not in fit_ts[:2] for m in by_t[t]]
        checked_ts = sorted({m.frames for m in checks})
        if checks:
            errs = [abs(_on_line(t_line, m.frames, m.batch) - m.saved_bytes) / m.saved_bytes for m in checks]
            t_status = "verified" if max(errs) <= T_FIT_RTOL else "failed"
            if t_status == "failed":
                notes.append(
                    f"Activation bytes are not affine in T (error {max(errs):.2%} at T={checked_ts}; "
                    "temporal strides round sizes, or layers change dtype with T); unmeasured clip lengths are "
                    "left unknown: use --measure all."
                )
        else:
            t_status = "unverified"
    # A clip length measured at one batch size only: its a(T), c(T) from the lines where they were checked there,
    # else with the batch-independent bytes of the fitted clip lengths when those agree.
    for t, ms in by_t.items():
        if t in fits:
            continue
        if t_status == "verified":
            fits[t] = _lines_at(t_line, t)
        elif c_constant and len(fit_ts) >= 2:
            fits[t] = ((ms[0].saved_bytes - c_values[0]) / ms[0].batch, c_values[0])
    # Extrapolate in T only to clip lengths whose every temporal size is on the fitted line (exact); others
    # (e.g. T = 36 for a model that halves T three times) stay unknown.
    t_exact: dict[int, bool] = {}
    unmeasured = [t for t in frames if t not in by_t]  # the only clip lengths the line is used for
    if t_line is not None and t_status != "failed" and unmeasured:
        probes = {t: temporal_sizes(net, t, device) for t in {*fit_ts[:2], *unmeasured}}
        t_exact = {t: _affine_in_t(probes, fit_ts[0], fit_ts[1], t) for t in unmeasured}
        rounded = [t for t in unmeasured if not t_exact[t]]
        if rounded:
            notes.append(
                f"T={rounded}: some temporal sizes round differently from the fitted T={fit_ts[:2]} (T is not a "
                "multiple of the model's temporal downsampling), so the line is not exact there; left unknown: "
                "use --measure all or a multiple of the fitted clip lengths."
            )
    for t in unmeasured:
        if t_exact.get(t):
            fits[t] = _lines_at(t_line, t)

    cells: list[PlanCell] = []
    for t in frames:
        for b in batches:
            m = measured.get((t, b))
            inp = b * t * input_per_clip
            step_time = statistics.median(m.step_times_s) if m and m.step_times_s else None
            if m is not None and m.oom:
                cells.append(PlanCell(t, b, None, None, inp, None, "oom", False if budget_bytes else None))
                continue
            if m is not None:
                if m.peak_bytes is not None:
                    total, act = m.peak_bytes, m.peak_bytes - static - m.input_bytes
                else:
                    total, act = static + m.input_bytes + m.saved_bytes, m.saved_bytes
                cells.append(PlanCell(t, b, total, act, m.input_bytes, step_time, "measured"))
                continue
            if device == "cuda" or t not in fits:
                cells.append(PlanCell(t, b, None, None, inp, None, "unknown"))
                continue
            a, c = fits[t]
            if t in by_t:
                source = "extrapolated-B"
            else:
                source = "extrapolated-T" if t_status == "verified" else "extrapolated-T-unverified"
            act = round(b * a + c)
            cells.append(PlanCell(t, b, static + inp + act, act, inp, None, source))
    for cell in cells:
        if budget_bytes is not None and cell.total_bytes is not None:
            cell.fits = cell.total_bytes <= budget_bytes
    time_line = _fit_step_time(
        [(c.frames * c.batch, c.step_time_s) for c in cells if c.step_time_s is not None]
    )
    if time_line is not None and time_line[0] <= 0:
        notes.append(
            "Measured step times do not grow with B×T (e.g. a small batch slower per step than a larger one on "
            "this machine), so no step time is estimated for the other cells; use --measure all to time them."
        )
    elif time_line is not None:
        for cell in cells:
            if cell.step_time_s is None and cell.source != "oom":
                estimate = time_line[0] * cell.frames * cell.batch + time_line[1]
                if estimate > 0:  # a line through noisy points can cross zero below the measured sizes
                    cell.step_time_s, cell.step_time_estimated = estimate, True
    if any(cell.step_time_estimated for cell in cells):
        notes.append(
            "~ step times are estimates: a least-squares line in B×T through the measured cells (compute is "
            "close to, not exactly, linear in B×T); measured times carry no ~."
        )

    plan = Plan(
        model=model, norm=norm, ws=ws, width=width, crop=crop, num_classes=num_classes, precision=precision,
        optimizer=optimizer, device=device, param_bytes=param_bytes, buffer_bytes=buffer_bytes,
        grad_bytes=grad_bytes, optimizer_bytes=opt_bytes, budget_bytes=budget_bytes, frames=frames,
        batches=batches, cells=cells, notes=notes,
    )  # fmt: skip
    if device == "cpu":
        for t in frames:
            if t in fits:
                plan.batch_constant_bytes[t] = round(fits[t][1])
                plan.per_clip_bytes[t] = round(fits[t][0] + t * input_per_clip)
        notes.insert(
            0,
            "CPU: memory = params + buffers + grads + optimiser state + input + distinct activation storages "
            "saved for backward; allocator workspace and transient buffers are not included. A CPU process's "
            "peak RSS can be well above it: glibc's malloc keeps freed activations in its heap (2.35x these "
            "bytes in a measured step); run with MALLOC_MMAP_THRESHOLD_=65536 to stay close (+8.7 % there).",
        )
        if t_status in ("verified", "unverified") and any(
            c.source.startswith("extrapolated-T") for c in cells
        ):
            notes.append(
                f"Activations fitted as lines in T on T={fit_ts[:2]}"
                + (f", checked exactly at T={checked_ts}." if t_status == "verified" else " (not checked).")
            )
    else:
        notes.insert(0, "CUDA: memory = allocator peak of a steady-state training step (workspace included).")
    return plan
