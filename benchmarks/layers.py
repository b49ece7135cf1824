"""Cost of the normalisation layers on r3d_18: train-step time and memory, and folded-WS inference.

Prints markdown tables for r3d_18 (width 64, clip 8×112×112, batch 2, CPU, 2 threads):

* train step (forward + backward + SGD-with-momentum step): median and minimum wall time and median process
  CPU time over interleaved rounds, for
  BN; GN; GN+WS written as explicit mean/std ("naive"); GN+WS via ``F.batch_norm`` on the weight (timm's
  ``StdConv`` formulation); GN+WS via our ``standardize_weight`` autograd function followed by a plain conv
  ("weight fn"); GN+WS via our fused ``WSConv3d`` (what ``video_gn.nn`` ships). Every variant convolves through
  ``video_gn.nn.conv`` (its kernels and CPU backend routing, as the registry's ``SafeConv3d`` does), so they
  differ only in how they standardize;
* memory per variant, two ways:
  - ``saved MB``: bytes autograd keeps for backward (unique storages seen by
    ``torch.autograd.graph.saved_tensors_hooks`` during one forward, parameters excluded). Exact and noise-free.
  - ``peak RSS Δ MB``: in a fresh subprocess per variant, peak resident memory (``VmHWM``, reset through
    ``/proc/self/clear_refs`` just before the first step; ``ru_maxrss`` would carry the parent's peak across
    ``exec``) during 3 train steps minus the resident memory at that point (model, optimiser, input built).
    It therefore includes gradients, momentum buffers, activations and kernel workspaces. The child runs with
    ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc returns every large block to the OS on free and RSS follows
    the live heap (torch's CPU allocator is plain malloc and is invisible to ``tracemalloc``).
* inference forward (eval, ``torch.inference_mode``): plain-conv GN model vs GN+WS unfolded vs GN+WS folded
  with ``fold_weight_standardization`` (same weights as the unfolded one).

Variants run interleaved (one step of each per round) in one process, so load from other processes on a shared
machine hits all of them alike; compare ratios from one run. OpenMP runs as in training unless
``--omp-wait-policy passive`` is given (``benchmarks/omp_policy.py``). On an oversubscribed machine wall times
swing widely (a descheduled OpenMP thread stalls every parallel region); the minimum wall time and the CPU time
under the passive policy (waiting threads then sleep instead of burning CPU) are the steadier figures there, but
that policy adds a thread wake-up to every parallel region, which training does not pay.

Usage::

    python benchmarks/layers.py                 # full table (~5 min on 2 cores)
    python benchmarks/layers.py --rounds 3      # quick look
    python benchmarks/layers.py --variants gn gn_ws gn_ws_stdpath --skip-memory --skip-inference  # WS paths
    python benchmarks/layers.py --omp-wait-policy passive   # CPU time that counts work only (loaded machine)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import omp_policy  # benchmarks/omp_policy.py, beside this file
from interleave import paired_ratios, round_orders  # benchmarks/interleave.py, beside this file

omp_policy.apply()  # --omp-wait-policy, before torch starts OpenMP

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from video_gn import nn as vnn  # noqa: E402
from video_gn.nn.conv import _Conv  # noqa: E402  (the plain conv through video_gn's kernels and routing)

# ----------------------------------------------------------------------------- WS formulations compared


def _plain_conv(module: nn.Conv3d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The conv every variant shares: ``video_gn.nn.conv``'s kernels and CPU backend routing, as in SafeConv3d
    (GN, BN) and WSConv3d, so that the formulations differ only in how they standardize."""
    args = (list(module.stride), list(module.padding), list(module.dilation), module.groups)
    return _Conv.apply(x, weight, module.bias, *args)


class NaiveWSConv3d(vnn.WSConv3d):
    """WS written with explicit mean / var / sqrt tensor ops: autograd keeps several weight-sized tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3, 4), keepdim=True)
        var = ((w - mean) ** 2).mean(dim=(1, 2, 3, 4), keepdim=True)
        w = (w - mean) / torch.sqrt(var + self.eps)
        return _plain_conv(self, x, w)


class BatchNormWSConv3d(vnn.WSConv3d):
    """WS via ``F.batch_norm`` over the flattened filters (timm's StdConv formulation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1),
            None,
            None,
            training=True,
            momentum=0.0,
            eps=self.eps,
        ).reshape_as(self.weight)
        return _plain_conv(self, x, w)


class WeightFnWSConv3d(vnn.WSConv3d):
    """Our ``standardize_weight`` autograd function, then a plain conv (which itself saves ŵ)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _plain_conv(self, x, vnn.standardize_weight(self.weight, self.eps))


class StandardizedPathWSConv3d(vnn.WSConv3d):
    """The shipped fused WSConv3d held on its standardized-weight path (ŵ rebuilt in every layer, as on GPUs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from video_gn.nn import ws

        previous, ws._FORCE_PATH = ws._FORCE_PATH, "standardized"
        try:
            return super().forward(x)  # backward follows the path chosen here (saved in the autograd context)
        finally:
            ws._FORCE_PATH = previous


def _with_ws_class(model: nn.Module, cls: type[vnn.WSConv3d]) -> nn.Module:
    # The alternatives differ from WSConv3d only in forward(), so re-classing the modules in place is enough.
    for m in model.modules():
        if type(m) is vnn.WSConv3d:
            m.__class__ = cls
    return model


# ----------------------------------------------------------------------------- models

TRAIN_VARIANTS = ("bn", "gn", "gn_ws_naive", "gn_ws_batchnorm", "gn_ws_weightfn", "gn_ws", "gn_ws_stdpath")
#: Run by default; gn_ws_stdpath (what the weight-domain path saves) only on request, with --variants.
DEFAULT_VARIANTS = TRAIN_VARIANTS[:-1]
LABELS = {
    "bn": "BN",
    "gn": "GN",
    "gn_ws_naive": "GN+WS, naive mean/std (before)",
    "gn_ws_batchnorm": "GN+WS, F.batch_norm / timm (before)",
    "gn_ws_weightfn": "GN+WS, ours: weight-only autograd fn",
    "gn_ws": "GN+WS, ours: fused WSConv3d (shipped)",
    "gn_ws_stdpath": "GN+WS, fused WSConv3d, standardized-weight path only",
}


def _base_model(norm: str, ws: bool, source: str) -> nn.Module:
    if source in ("auto", "video_gn"):
        try:
            from video_gn.models import build
        except ImportError:
            if source == "video_gn":
                raise
        else:
            # γ = 1 everywhere (as in a trained model): with the default γ = 0 on the block-final norms the residual
            # branches would not reach the logits, and the folded-vs-unfolded check would not see them.
            return build("r3d_18", num_classes=400, norm=norm, ws=ws, width=64, zero_init_residual=False)
    # Stand-in: torchvision's r3d_18 (width 64) converted with our converters.
    from torchvision.models.video import r3d_18

    model = vnn.convert_norm(r3d_18(), norm)
    return vnn.use_weight_standardization(model) if ws else model


def build_variant(name: str, source: str) -> nn.Module:
    """Build one benchmark variant of r3d_18 (width 64, 400 classes)."""
    torch.manual_seed(0)
    if name == "bn":
        return _base_model("bn", False, source)
    if name == "gn":
        return _base_model("gn", False, source)
    model = _base_model("gn", True, source)
    cls = {
        "gn_ws_naive": NaiveWSConv3d,
        "gn_ws_batchnorm": BatchNormWSConv3d,
        "gn_ws_weightfn": WeightFnWSConv3d,
        "gn_ws": vnn.WSConv3d,
        "gn_ws_stdpath": StandardizedPathWSConv3d,
    }[name]
    return _with_ws_class(model, cls)


def model_source(source: str) -> str:
    if source == "torchvision":
        return "torchvision r3d_18 + video_gn.nn converters (stand-in)"
    try:
        import video_gn.models  # noqa: F401

        return 'video_gn.models.build("r3d_18", width=64)'
    except ImportError:
        if source == "video_gn":
            raise
        return "torchvision r3d_18 + video_gn.nn converters (stand-in)"


# ----------------------------------------------------------------------------- measurement


class Trainer:
    """One model + SGD optimiser + fixed input; ``step()`` runs forward, backward and the update."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model = model.train()
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        self.x, self.y = x, y

    def step(self) -> tuple[float, float]:
        """Run one step; return (wall seconds, process CPU seconds)."""
        t0, c0 = time.perf_counter(), time.process_time()
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, time.process_time() - c0


def saved_tensor_mb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """MB of unique non-parameter storages autograd saves for backward during one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    del loss
    return sum(seen.values()) / 2**20


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _memory_child(variant: str, source: str, batch: int, frames: int, size: int, steps: int) -> None:
    # ru_maxrss survives execve (it would report the parent's peak); VmHWM belongs to this process image.
    torch.set_num_threads(2)
    model = build_variant(variant, source)
    x = torch.randn(batch, 3, frames, size, size)
    y = torch.arange(batch) % 400
    trainer = Trainer(model, x, y)
    base = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS, so the peak below is the peak of the steps
    for _ in range(steps):
        trainer.step()
    print(json.dumps({"base_mb": base, "peak_mb": _status_mb("VmHWM")}))


def peak_rss_delta(variant: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--_memory-child", variant, "--source", args.source]
    cmd += ["--batch", str(args.batch), "--frames", str(args.frames), "--size", str(args.size)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def interleaved(
    fns: dict[str, Callable[[], tuple[float, float]]], warmup: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every fn once per round, in turn; return (wall times, CPU times) per fn, warm-up rounds dropped.

    Each round's order comes from :func:`interleave.round_orders`, so that the position in a round and the step
    run just before (cache and frequency state it leaves) favour no fn.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for order in round_orders(list(fns), rounds):
        for k in order:
            w, c = fns[k]()
            wall[k].append(w)
            cpu[k].append(c)
    return wall, cpu


def _table_row(label: str, cells: list[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=("auto", "video_gn", "torchvision"), default="auto")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--variants", nargs="+", choices=TRAIN_VARIANTS, default=list(DEFAULT_VARIANTS))
    omp_policy.add_option(p)
    p.add_argument("--skip-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--skip-inference", action="store_true", help="skip the folded-WS inference table")
    p.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child, args.source, args.batch, args.frames, args.size, steps=3)
        return
    variants = [v for v in TRAIN_VARIANTS if v in set(args.variants) | {"gn"}]

    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    y = torch.arange(args.batch) % 400
    print(
        f"model: {model_source(args.source)}; input {args.batch}×3×{args.frames}×{args.size}×{args.size}; "
        f"torch {torch.__version__}; {args.threads} threads, OpenMP wait policy {omp_policy.describe()}; "
        f"{os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start; {args.rounds} interleaved rounds after {args.warmup} warm-up"
    )

    # --- memory: one fresh process per variant (run first, while this process is still small)
    mem = {} if args.skip_memory else {v: peak_rss_delta(v, args) for v in variants}

    # --- training step time
    trainers = {v: Trainer(build_variant(v, args.source), x, y) for v in variants}
    saved = {v: saved_tensor_mb(t.model, x, y) for v, t in trainers.items()}
    wall, cpu = interleaved({v: t.step for v, t in trainers.items()}, args.warmup, args.rounds)
    del trainers

    med = {v: statistics.median(ts) for v, ts in wall.items()}
    low = {v: min(ts) for v, ts in wall.items()}
    cmed = {v: statistics.median(ts) for v, ts in cpu.items()}
    peak = {v: m["peak_mb"] - m["base_mb"] for v, m in mem.items()}
    print("\n### Train step (forward + backward + SGD step)\n")
    print(
        _table_row(
            "variant",
            [
                "median wall s",
                "× GN",
                "min wall s",
                "× GN",
                "median CPU s",
                "× GN",
                "saved for bwd MB",
                "Δ vs GN",
                "peak RSS Δ MB",
                "× GN",
            ],
        )
    )
    print("| --- |" + " ---: |" * 10)
    for v in variants:
        mem_cells = [f"{peak[v]:.0f}", f"{peak[v] / peak['gn']:.3f}"] if mem else ["–", "–"]
        print(
            _table_row(
                LABELS[v],
                [
                    f"{med[v]:.3f}",
                    f"{med[v] / med['gn']:.3f}",
                    f"{low[v]:.3f}",
                    f"{low[v] / low['gn']:.3f}",
                    f"{cmed[v]:.3f}",
                    f"{cmed[v] / cmed['gn']:.3f}",
                    f"{saved[v]:.0f}",
                    f"{saved[v] - saved['gn']:+.0f}",
                    *mem_cells,
                ],
            )
        )
    print("\nPaired: each round's time / GN's time in the same round, median [quartiles] over the rounds\n")
    print(_table_row("variant", ["wall × GN", "CPU × GN"]))
    print("| --- | ---: | ---: |")
    pw, pc = paired_ratios(wall, "gn"), paired_ratios(cpu, "gn")
    for v in variants:
        cells = [f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]" for r in (pw[v], pc[v])]
        print(_table_row(LABELS[v], cells))
    print("\nraw wall s: " + json.dumps({v: [round(t, 3) for t in ts] for v, ts in wall.items()}))
    print("raw CPU s: " + json.dumps({v: [round(t, 3) for t in ts] for v, ts in cpu.items()}))
    if mem:
        print(
            "raw memory MB: "
            + json.dumps({v: {k: round(m, 1) for k, m in d.items()} for v, d in mem.items()})
        )
    if args.skip_inference:
        return

    # --- inference: plain-conv GN vs GN+WS unfolded vs the same GN+WS weights folded
    plain = build_variant("gn", args.source).eval()
    ws = build_variant("gn_ws", args.source).eval()
    folded = build_variant("gn_ws", args.source).eval()
    folded.load_state_dict(ws.state_dict())
    folded = vnn.fold_weight_standardization(folded)
    with torch.inference_mode():
        reference = ws(x)
        diff = (folded(x) - reference).abs().max().item()
        scale = reference.abs().max().item()

    def fwd(model: nn.Module) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            with torch.inference_mode():
                t0, c0 = time.perf_counter(), time.process_time()
                model(x)
                return time.perf_counter() - t0, time.process_time() - c0

        return run

    iwall, icpu = interleaved(
        {"plain": fwd(plain), "ws": fwd(ws), "folded": fwd(folded)}, args.warmup, args.rounds
    )
    print("\n### Inference forward (eval, inference_mode)\n")
    print(
        _table_row(
            "variant", ["median wall s", "× plain", "min wall s", "× plain", "median CPU s", "× plain"]
        )
    )
    print("| --- |" + " ---: |" * 6)
    for k, label in (("plain", "GN, plain conv"), ("ws", "GN+WS, unfolded"), ("folded", "GN+WS, folded")):
        m, lo, c = (statistics.median(iwall[k]), min(iwall[k]), statistics.median(icpu[k]))
        pm, plo, pc = (
            statistics.median(iwall["plain"]),
            min(iwall["plain"]),
            statistics.median(icpu["plain"]),
        )
        print(
            _table_row(
                label,
                [f"{m:.3f}", f"{m / pm:.3f}", f"{lo:.3f}", f"{lo / plo:.3f}", f"{c:.3f}", f"{c / pc:.3f}"],
            )
        )
    print(f"\nfolded vs unfolded max |Δ logit| = {diff:.2e} (max |logit| {scale:.2e})")
    print("raw wall s: " + json.dumps({k: [round(t, 3) for t in v] for k, v in iwall.items()}))


if __name__ == "__main__":
    main()
