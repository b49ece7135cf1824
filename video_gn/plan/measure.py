"""One real training step, measured: bytes autograd saves for backward (CPU), allocator peak (CUDA), step time.

The counting rules are in the :mod:`video_gn.plan` docstring.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
OPTIMIZERS = ("sgd", "adamw")


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
