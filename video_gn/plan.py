"""``video-gn plan``: what a training step costs for each clip length T and per-device batch B.

Measured, not guessed. For a few (T, B) points the planner runs a real training step (forward, loss,
backward, optimiser step) of the registry model:

* **CPU**: the bytes autograd keeps for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``
  (each storage once, however many tensors or views of it are saved; parameters and the input clip are
  not activations and are counted separately), plus parameters and buffers, gradients and the optimiser
  state (read from the optimiser after a real step: SGD momentum 1×, AdamW 2× the parameters).
* **CUDA**: the allocator's peak (``torch.cuda.max_memory_allocated``) over a steady-state step, i.e. a
  second step, when gradients and optimiser state already exist (Lightning zeroes gradients only after
  the forward, so they are alive during it).

Activation bytes are affine in B for a fixed T — every saved tensor either has a leading batch
dimension or none (BatchNorm's per-channel statistics, standardized weights...) — so two batch sizes
give every other B exactly. In T they are affine only when every layer's temporal size is proportional to
T (true for T multiples of the network's temporal stride); the planner fits that line on two clip
lengths and checks it on a third measured one before extrapolating to longer clips, and the output says
which cells were measured and which extrapolated. Step time is reported for measured cells only (median
of ``--steps`` timed steps after the measuring one).

Example::

    video-gn plan --model i3d_r50 --norm gn --ws --frames 8,16,32,64 --batch 1,2,4,8 --crop 224 \\
        --budget 80GiB --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from video_gn.nn import NORM_KINDS

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
OPTIMIZERS = ("sgd", "adamw")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}

#: Relative tolerance when checking that activation bytes are affine in T (they are integers, so an
#: exact architecture gives 0; anything above this means floor effects in temporal strides).
T_FIT_RTOL = 1e-6


# --------------------------------------------------------------------------------------------- units
def parse_bytes(text: str | int | float) -> int:
    """Parse a memory size such as ``"80GiB"``, ``"16 GB"``, ``"512M"`` or ``1e9`` into bytes.

    Args:
        text: a number with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB or the bare
            letters K/M/G/T (powers of 1024, as GPU memory is quoted).

    Returns:
        The size in bytes.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(
                f"Cannot parse memory size {text!r}; expected a number with an optional unit, "
                "e.g. 80GiB, 16GB, 512MiB, 24G."
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    if value <= 0:
        raise ValueError(f"Memory size must be positive, got {text!r}.")
    return int(value * _UNITS[unit])


def format_bytes(n: float | None) -> str:
    """Human-readable binary size (``"1.50 GiB"``); ``"-"`` for None."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def parse_int_list(text: str, what: str) -> list[int]:
    """Parse ``"8,16,32"`` into sorted unique positive ints; ``what`` names the option in errors."""
    try:
        values = sorted({int(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers like 8,16,32, got {text!r}.") from None
    if not values or values[0] < 1:
        raise ValueError(f"{what} must list positive integers like 8,16,32, got {text!r}.")
    return values


# ------------------------------------------------------------------------------------- measurement
def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    """(data pointer, bytes) of the storage behind ``t``; views of one storage share the key."""
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # opaque tensors (e.g. mkldnn layouts) have no storage
        return id(t), t.numel() * t.element_size()


class SavedTensorCounter:
    """Count the distinct storages autograd saves for backward while the context is active.

    Tensors whose storage is in ``exclude`` (parameters, buffers, the input clip) are skipped, and a storage
    saved several times (or through several views) counts once.

    Args:
        exclude: tensors whose storages are not activations.
    """

    def __init__(self, exclude: Sequence[torch.Tensor] = ()) -> None:
        self._exclude = {_storage_key(t)[0] for t in exclude}
        self.storages: dict[int, int] = {}
        self.saved_tensors = 0
        self._ctx: contextlib.AbstractContextManager | None = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.saved_tensors += 1
        ptr, nbytes = _storage_key(t)
        if ptr not in self._exclude:
            self.storages[ptr] = max(nbytes, self.storages.get(ptr, 0))
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def nbytes(self) -> int:
        """Bytes of the distinct non-excluded storages saved so far."""
        return sum(self.storages.values())

    def __enter__(self) -> SavedTensorCounter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


def _autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    if precision == "32-true":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    """The optimiser :class:`~video_gn.module.VideoClassifier` would use, for memory accounting.

    Args:
        model: the network.
        name: ``"sgd"`` (momentum 0.9, Nesterov) or ``"adamw"``.

    Returns:
        A torch optimiser over the trainable parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4)
    raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")


def tensor_bytes(tensors: Iterator[torch.Tensor] | Sequence[torch.Tensor]) -> int:
    """Total bytes of ``tensors``, each storage counted once."""
    seen: dict[int, int] = {}
    for t in tensors:
        ptr, nbytes = _storage_key(t)
        seen[ptr] = nbytes
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state`` (momentum buffers, Adam moments; step counters included)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


@dataclass
class StepMeasurement:
    """One real training step at (frames, batch).

    Attributes:
        frames: clip length T.
        batch: clips per step B.
        saved_bytes: distinct activation bytes saved for backward (params and input excluded).
        input_bytes: bytes of the input clip batch (B, 3, T, H, W).
        peak_bytes: CUDA allocator peak of a steady-state step (None on CPU).
        step_times_s: wall time of each timed step.
        oom: the step ran out of device memory.
    """

    frames: int
    batch: int
    saved_bytes: int = 0
    input_bytes: int = 0
    peak_bytes: int | None = None
    step_times_s: list[float] = field(default_factory=list)
    oom: bool = False


def measure_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    frames: int,
    batch: int,
    crop: int,
    num_classes: int,
    device: str,
    precision: str,
    steps: int,
) -> StepMeasurement:
    """Run 1 + ``steps`` real training steps on random clips and measure memory and time.

    The first step counts saved-for-backward bytes (and warms up kernels); the next ``steps`` are timed.
    On CUDA the peak of the second step is read from the allocator (gradients and optimiser state alive).

    Args:
        model: network in train mode on ``device``.
        optimizer: its optimiser.
        frames: clip length T.
        batch: batch size B.
        crop: spatial size H = W.
        num_classes: logits per clip.
        device: ``"cpu"`` or ``"cuda"``.
        precision: one of :data:`PRECISIONS`.
        steps: timed steps after the measuring one.

    Returns:
        The measurement.
    """
    gen = torch.Generator().manual_seed(frames * 1000 + batch)
    video = torch.randn(batch, 3, frames, crop, crop, generator=gen).to(device)  # (B, 3, T, H, W)
    labels = torch.randint(0, num_classes, (batch,), generator=gen).to(device)
    out = StepMeasurement(frames=frames, batch=batch, input_bytes=tensor_bytes([video]))
    static = [*model.parameters(), *model.buffers(), video]

    def step(counter: SavedTensorCounter | None) -> None:
        with counter if counter is not None else contextlib.nullcontext(), _autocast(device, precision):
            loss = F.cross_entropy(model(video).float(), labels)
        optimizer.zero_grad(set_to_none=False)  # as Lightning: after the forward, grads stay allocated
        loss.backward()
        optimizer.step()

    try:
        counter = SavedTensorCounter(exclude=static)
        if device == "cuda":
            step(None)  # gradients and optimiser state now exist: the steady state
            _sync(device)
            torch.cuda.reset_peak_memory_stats()
            step(counter)
            _sync(device)
            out.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            step(counter)
        out.saved_bytes = counter.nbytes
        for _ in range(steps):
            _sync(device)
            start = time.perf_counter()
            step(None)
            _sync(device)
            out.step_times_s.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError:
        out.oom = True
        optimizer.zero_grad(set_to_none=False)
        del video
        torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------- the plan
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
    batch_constant_bytes: int | None = None
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
        """Largest grid B that fits the budget at clip length ``frames`` (None if none fits)."""
        ok = [c.batch for c in self.cells if c.frames == frames and c.fits]
        return max(ok) if ok else None

    def largest_frames(self, batch: int) -> int | None:
        """Largest grid T that fits the budget at batch ``batch`` (None if none fits)."""
        ok = [c.frames for c in self.cells if c.batch == batch and c.fits]
        return max(ok) if ok else None

    def max_batch_linear(self, frames: int) -> int | None:
        """Largest B within the budget from the affine-in-B model (beyond the grid); None if unknown."""
        if (
            self.budget_bytes is None
            or self.batch_constant_bytes is None
            or frames not in self.per_clip_bytes
        ):
            return None
        per = self.per_clip_bytes[frames]
        room = self.budget_bytes - self.static_bytes - self.batch_constant_bytes
        return max(0, math.floor(room / per)) if per > 0 else None

    def to_dict(self) -> dict:
        """JSON-ready dict (the ``--json`` output)."""
        d = asdict(self)
        d["static_bytes"] = self.static_bytes
        d["per_clip_bytes"] = {str(k): v for k, v in self.per_clip_bytes.items()}
        d["largest_batch_per_frames"] = {str(t): self.largest_batch(t) for t in self.frames}
        d["largest_frames_per_batch"] = {str(b): self.largest_frames(b) for b in self.batches}
        d["max_batch_linear_per_frames"] = {str(t): self.max_batch_linear(t) for t in self.frames}
        return d


def _measurement_points(frames: list[int], batches: list[int], device: str, measure: str) -> list[tuple]:
    if measure == "all" or (measure == "auto" and device == "cuda") or len(batches) == 1:
        # (With one batch size the batch-independent bytes cannot be separated: measure each T instead.)
        return [(t, b) for t in frames for b in batches]
    b_lo = batches[:2]
    points = [(frames[0], b) for b in b_lo]
    # One B per further T: the batch-independent bytes come from frames[0]. The third T checks the line.
    points += [(t, batches[0]) for t in frames[1:3]]
    return points


def _fit_affine(xs: Sequence[int], ys: Sequence[int]) -> tuple[float, float]:
    (x0, x1), (y0, y1) = xs[:2], ys[:2]
    slope = (y1 - y0) / (x1 - x0)
    return slope, y0 - slope * x0


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
        measure: ``"auto"`` (CPU: the two smallest B at the smallest T and the smallest B at the next two
            T; CUDA: every cell) or ``"all"``.
        steps: timed steps per measured point (0: no step time).
        seed: seed for the model initialisation.
        log: print progress to stderr.

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
    if norm == "syncbn":
        norm = "bn"  # one process: SyncBatchNorm is BatchNorm; its memory per device is the same
    torch.manual_seed(seed)
    net = build(model, num_classes=num_classes, norm=norm, ws=ws, width=width).to(device).train()
    opt = make_optimizer(net, optimizer)
    notes: list[str] = []

    measured: dict[tuple[int, int], StepMeasurement] = {}
    with _ws_standardized_path(ws and device == "cpu", notes):
        for t, b in _measurement_points(frames, batches, device, measure):
            if log:
                print(f"[plan] measuring T={t} B={b} on {device} ...", file=sys.stderr, flush=True)
            measured[(t, b)] = measure_step(
                net, opt, frames=t, batch=b, crop=crop, num_classes=num_classes, device=device,
                precision=precision, steps=steps,
            )  # fmt: skip
    trainable = [p for p in net.parameters() if p.requires_grad]
    param_bytes = tensor_bytes(list(net.parameters()))
    buffer_bytes = tensor_bytes(list(net.buffers())) if list(net.buffers()) else 0
    grad_bytes = tensor_bytes([p.grad for p in trainable if p.grad is not None])
    opt_bytes = optimizer_state_bytes(opt)
    static = param_bytes + buffer_bytes + grad_bytes + opt_bytes
    input_per_clip = 3 * crop * crop * 4  # float32 clip bytes per frame

    # Affine model of saved bytes: A(T, B) = B * a(T) + c, with a(T) = alpha * T + beta.
    ok = {k: m for k, m in measured.items() if not m.oom}
    c: int | None = None
    per_clip: dict[int, float] = {}
    by_t: dict[int, list[StepMeasurement]] = {}
    for m in ok.values():
        by_t.setdefault(m.frames, []).append(m)
    for t in sorted(by_t):
        ms = sorted(by_t[t], key=lambda m: m.batch)
        if len(ms) >= 2:
            a, c_t = _fit_affine([m.batch for m in ms], [m.saved_bytes for m in ms])
            per_clip[t] = a
            if c is None:
                c = round(c_t)
            elif abs(c_t - c) > max(1.0, T_FIT_RTOL * c):
                notes.append(f"batch-independent saved bytes differ between clip lengths ({c} vs {c_t:.0f}).")
    if c is not None:
        for t, ms in by_t.items():
            if t not in per_clip:
                per_clip[t] = (ms[0].saved_bytes - c) / ms[0].batch
    t_line: tuple[float, float] | None = None
    t_status = "none"
    fit_ts = sorted(per_clip)
    if len(fit_ts) >= 2:
        t_line = _fit_affine(fit_ts[:2], [per_clip[t] for t in fit_ts[:2]])
        if len(fit_ts) >= 3:
            errs = [abs(t_line[0] * t + t_line[1] - per_clip[t]) / per_clip[t] for t in fit_ts[2:]]
            t_status = "verified" if max(errs) <= T_FIT_RTOL else "failed"
            if t_status == "failed":
                notes.append(
                    f"Activation bytes are not affine in T (error {max(errs):.2%} at T={fit_ts[2:]}; temporal "
                    "strides round sizes); unmeasured clip lengths are left unknown: use --measure all."
                )
        else:
            t_status = "unverified"
    # Extrapolate in T only to clip lengths whose every temporal size is on the fitted line (exact); others
    # (e.g. T = 36 for a model that halves T three times) stay unknown.
    t_exact: dict[int, bool] = {}
    if t_line is not None and t_status != "failed":
        probes = {t: temporal_sizes(net, t, device) for t in {*fit_ts[:2], *frames}}
        t_exact = {t: _affine_in_t(probes, fit_ts[0], fit_ts[1], t) for t in frames}
        rounded = [t for t in frames if t not in per_clip and not t_exact[t]]
        if rounded:
            notes.append(
                f"T={rounded}: some temporal sizes round differently from the fitted T={fit_ts[:2]} (T is not a "
                "multiple of the model's temporal downsampling), so the line is not exact there; left unknown: "
                "use --measure all or a multiple of the fitted clip lengths."
            )

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
            if device == "cuda" or c is None:
                cells.append(PlanCell(t, b, None, None, inp, None, "unknown"))
                continue
            if t in per_clip:
                a, source = per_clip[t], "extrapolated-B"
            elif t_exact.get(t):
                a = t_line[0] * t + t_line[1]
                source = "extrapolated-T" if t_status == "verified" else "extrapolated-T-unverified"
            else:
                cells.append(PlanCell(t, b, None, None, inp, None, "unknown"))
                continue
            act = round(b * a + c)
            cells.append(PlanCell(t, b, static + inp + act, act, inp, None, source))
    for cell in cells:
        if budget_bytes is not None and cell.total_bytes is not None:
            cell.fits = cell.total_bytes <= budget_bytes
    time_line = _fit_step_time(
        [(c.frames * c.batch, c.step_time_s) for c in cells if c.step_time_s is not None]
    )
    if time_line is not None:
        for cell in cells:
            if cell.step_time_s is None and cell.source != "oom":
                cell.step_time_s = max(0.0, time_line[0] * cell.frames * cell.batch + time_line[1])
                cell.step_time_estimated = True
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
    if device == "cpu" and c is not None:
        plan.batch_constant_bytes = c
        for t in frames:
            if t in per_clip:
                a = per_clip[t]
            elif t_exact.get(t):
                a = t_line[0] * t + t_line[1]
            else:
                continue
            plan.per_clip_bytes[t] = round(a + t * input_per_clip)
    if device == "cpu":
        notes.insert(
            0,
            "CPU: memory = params + buffers + grads + optimiser state + input + distinct activation storages "
            "saved for backward; allocator workspace and transient buffers are not included.",
        )
        if t_status in ("verified", "unverified"):
            notes.append(
                f"Activations per clip fitted as a line in T on T={fit_ts[:2]}"
                + (f", checked exactly at T={fit_ts[2:]}." if t_status == "verified" else " (not checked).")
            )
    else:
        notes.insert(0, "CUDA: memory = allocator peak of a steady-state training step (workspace included).")
    return plan


# ------------------------------------------------------------------------------------- output
_SOURCE_MARK = {
    "measured": "",
    "extrapolated-B": "*",
    "extrapolated-T": "**",
    "extrapolated-T-unverified": "?",
    "oom": "",
    "unknown": "",
}


def _cell_text(cell: PlanCell) -> str:
    if cell.source == "oom":
        return "OOM"
    text = "?" if cell.total_bytes is None else format_bytes(cell.total_bytes) + _SOURCE_MARK[cell.source]
    if cell.step_time_s is not None:
        text += f" · {'~' if cell.step_time_estimated else ''}{cell.step_time_s:.2f}s"
    return text


def render_table(plan: Plan) -> str:
    """The plan as a rich table (T rows × B columns) with budget marks, summaries and notes, as text."""
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{plan.model} width {plan.width}, norm {plan.norm}{' + WS' if plan.ws else ''}, crop {plan.crop}, "
        f"{plan.precision}, {plan.optimizer}, {plan.device}"
    )
    table = Table(title=title, caption="peak training memory per device · median step time")
    table.add_column("T \\ B", justify="right", style="bold")
    for b in plan.batches:
        table.add_column(f"B={b}", justify="right")
    if plan.budget_bytes is not None:
        table.add_column("largest B", justify="right")
        table.add_column("max B (linear)", justify="right")
    for t in plan.frames:
        row = [f"T={t}"]
        for b in plan.batches:
            cell = plan.cell(t, b)
            style = "" if cell.fits is None else ("green" if cell.fits else "red")
            mark = "" if cell.fits is None else (" ✓" if cell.fits else " ✗")
            text = _cell_text(cell) + mark
            row.append(f"[{style}]{text}[/{style}]" if style else text)
        if plan.budget_bytes is not None:
            lb = plan.largest_batch(t)
            mb = plan.max_batch_linear(t)
            row += ["none" if lb is None else str(lb), "-" if mb is None else str(mb)]
        table.add_row(*row)
    if plan.budget_bytes is not None:
        row = ["largest T"] + [str(plan.largest_frames(b) or "none") for b in plan.batches] + ["", ""]
        table.add_row(*row, style="italic")
    buf = io.StringIO()
    console = Console(file=buf, width=max(100, 24 + 32 * len(plan.batches)), force_terminal=False)
    console.print(table)
    console.print(
        f"static (T, B independent): params {format_bytes(plan.param_bytes)} + buffers "
        f"{format_bytes(plan.buffer_bytes)} + grads {format_bytes(plan.grad_bytes)} + {plan.optimizer} state "
        f"{format_bytes(plan.optimizer_bytes)} = {format_bytes(plan.static_bytes)}"
        + (f"; budget {format_bytes(plan.budget_bytes)}" if plan.budget_bytes else "")
    )
    console.print(
        "no mark = measured; * = extrapolated in B (exact: saved tensors are affine in B); "
        "** = extrapolated in T (line checked exactly on a third T); ? = extrapolated in T, unchecked; "
        "~ = estimated step time."
    )
    for note in plan.notes:
        console.print(f"note: {note}")
    return buf.getvalue()


CSV_FIELDS = [
    "frames", "batch", "total_bytes", "activation_bytes", "input_bytes", "static_bytes", "step_time_s",
    "step_time_estimated", "source", "fits",
]  # fmt: skip


def to_csv(plan: Plan) -> str:
    """One row per cell: frames, batch, bytes, step time, source, fits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in plan.cells:
        row = asdict(c)
        row["static_bytes"] = plan.static_bytes
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return buf.getvalue()


def plot(plan: Plan, path: str) -> None:
    """Save a PNG of predicted memory vs T, one line per B, with the budget as a dashed line.

    Args:
        plan: the plan.
        path: output PNG path.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'video_gn[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for b in plan.batches:
        pts = [(c.frames, c.total_bytes / 1024**3) for c in plan.cells if c.batch == b and c.total_bytes]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"B={b}")
    if plan.budget_bytes:
        ax.axhline(plan.budget_bytes / 1024**3, color="k", linestyle="--", label="budget")
    ax.set_xscale("log", base=2)
    ax.set_xticks(plan.frames, [str(t) for t in plan.frames])
    ax.set_xlabel("frames per clip (T)")
    ax.set_ylabel("peak training memory (GiB)")
    ax.set_title(f"{plan.model} w{plan.width} {plan.norm}{'+WS' if plan.ws else ''} crop {plan.crop}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``video-gn plan`` argument parser."""
    p = argparse.ArgumentParser(
        prog="video-gn plan",
        description="Peak training memory and step time per (clip length T, per-device batch B), measured "
        "with real training steps (CPU: bytes saved for backward + params/grads/optimiser; CUDA: allocator "
        "peak) and extrapolated exactly where the model allows. On CPU, i3d_r50 at crop 224 needs about "
        "a minute on 2 cores with the default grid.",
    )
    p.add_argument("--model", default="i3d_r50", help="registry model name (default i3d_r50)")
    p.add_argument("--norm", default="gn", choices=NORM_KINDS, help="normalisation (default gn)")
    p.add_argument("--ws", action=argparse.BooleanOptionalAction, default=True, help="weight standardization")
    p.add_argument("--width", type=int, default=64, help="base width (64 = published)")
    p.add_argument("--frames", default="8,16,32,64", help="clip lengths T (default 8,16,32,64)")
    p.add_argument("--batch", default="1,2,4,8", help="per-device batch sizes B (default 1,2,4,8)")
    p.add_argument("--crop", type=int, default=224, help="spatial crop (default 224)")
    p.add_argument("--num_classes", "--num-classes", type=int, default=400, help="classes (default 400)")
    p.add_argument("--budget", default=None, help="memory budget per device, e.g. 80GiB, 24G, 16GB")
    p.add_argument("--precision", default="32-true", choices=PRECISIONS)
    p.add_argument(
        "--optimizer", default="sgd", choices=OPTIMIZERS, help="sgd: momentum 1x, adamw: 2x params"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--measure", default="auto", choices=("auto", "all"),
        help="auto: few points + exact extrapolation on CPU, every cell on CUDA; all: measure every cell",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=int, default=None, help="timed steps per measured point (default CPU 2, CUDA 5)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--csv", action="store_true", help="print CSV instead of the table")
    p.add_argument("--plot", default=None, metavar="PNG", help="also save memory vs T per B as a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``video-gn plan``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        frames = parse_int_list(args.frames, "--frames")
        batches = parse_int_list(args.batch, "--batch")
        budget = parse_bytes(args.budget) if args.budget is not None else None
        if args.json and args.csv:
            raise ValueError("--json and --csv are exclusive; pick one.")
        if args.threads:
            torch.set_num_threads(args.threads)
        steps = args.steps if args.steps is not None else (5 if args.device == "cuda" else 2)
        plan = build_plan(
            model=args.model, norm=args.norm, ws=args.ws, width=args.width, frames=frames, batches=batches,
            crop=args.crop, num_classes=args.num_classes, budget_bytes=budget, precision=args.precision,
            optimizer=args.optimizer, device=args.device, measure=args.measure, steps=steps, log=not args.quiet,
        )  # fmt: skip
    except (ValueError, TypeError, ImportError) as err:
        print(f"video-gn plan: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    elif args.csv:
        print(to_csv(plan), end="")
    else:
        print(render_table(plan), end="")
    if args.plot:
        try:
            plot(plan, args.plot)
        except ImportError as err:
            print(f"video-gn plan: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
