"""Training throughput and memory of the quick-start model for BN, GN and GN+WS at the same (T, B), CPU.

For the quick-start network (r3d_18, width 16, 6 classes) at the quick-start clip (T=8, 32×32, B=8):

* ``clips/s``: B / median train-step time (forward + cross-entropy + backward + SGD Nesterov step). The
  variants run interleaved, one step each per round (orders from ``benchmarks/interleave.py``), so load from
  other processes hits all alike: compare the ratios of one run;
* ``saved MB``: activation bytes autograd keeps for backward (distinct storages, parameters and input
  excluded; :class:`video_gn.plan.SavedTensorCounter`), exact and noise-free;
* ``peak RSS Δ MB``: in a fresh subprocess per variant, peak resident memory during 3 train steps minus the
  resident memory before the first step (model, optimiser and input built), with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks return to the OS and RSS follows the live heap.

With ``--precision bf16-mixed`` the forward runs under CPU bf16 autocast; ``--unguarded`` then also times each
variant with video_gn's guard against torch's wrong bf16 Conv3d weight gradients switched off
(``video_gn/nn/conv.py``), which shows what the guard costs (the unguarded gradients are wrong, so those rows
are a cost reference only).

Usage::

    python benchmarks/train.py                       # quick-start shapes, 20 rounds
    python benchmarks/train.py --frames 16 --batch 4 --rounds 10
    python benchmarks/train.py --precision bf16-mixed --unguarded
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from interleave import round_orders  # benchmarks/interleave.py, beside this file

import video_gn.nn.conv
import video_gn.nn.ws
from video_gn.models import build
from video_gn.plan import SavedTensorCounter

VARIANTS = {"BN": ("bn", False), "GN": ("gn", False), "GN+WS": ("gn", True)}


def make(variant: str, args: argparse.Namespace):
    """Model, SGD optimiser and a fixed batch for ``variant``."""
    norm, ws = VARIANTS[variant]
    torch.manual_seed(0)
    model = build(args.model, num_classes=args.num_classes, norm=norm, ws=ws, width=args.width).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.frames, args.crop, args.crop, generator=g)  # (B, C, T, H, W)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=g)
    return model, opt, x, y


BF16 = False  # set from --precision
GUARD = video_gn.nn.conv.cpu_bf16_conv3d_unsafe


def set_guard(on: bool) -> None:
    """Switch video_gn's CPU bf16 Conv3d guard on or off (both modules that call it)."""
    fn = GUARD if on else (lambda *a, **k: False)
    video_gn.nn.conv.cpu_bf16_conv3d_unsafe = fn
    video_gn.nn.ws.cpu_bf16_conv3d_unsafe = fn


def forward_loss(model, x, y):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        return F.cross_entropy(model(x), y)


def train_step(model, opt, x, y, guard: bool = True) -> float:
    """One optimiser step; returns its wall time in seconds."""
    set_guard(guard)
    start = time.perf_counter()
    loss = forward_loss(model, x, y)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    opt.step()
    elapsed = time.perf_counter() - start
    set_guard(True)
    return elapsed


def saved_mb(model, x, y) -> float:
    with SavedTensorCounter(exclude=[*model.parameters(), *model.buffers(), x]) as counter:
        loss = forward_loss(model, x, y)
    loss.backward()
    return counter.nbytes / 2**20


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _child(variant: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, opt, x, y = make(variant, args)
    base = _rss_mb()
    for _ in range(3):
        train_step(model, opt, x, y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_delta_mb": peak - base}))


def peak_rss_delta_mb(variant: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--child", variant, *_shape_args(args)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_delta_mb"]


def _shape_args(args: argparse.Namespace) -> list[str]:
    keys = ("model", "width", "num_classes", "frames", "batch", "crop", "threads", "precision")
    return [x for k in keys for x in (f"--{k}", str(getattr(args, k)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="r3d_18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--num_classes", type=int, default=6)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--unguarded", action="store_true", help="bf16: also time with the conv3d guard off")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    global BF16
    BF16 = args.precision == "bf16-mixed"
    if args.child:
        _child(args.child, args)
        return
    torch.set_num_threads(args.threads)
    built = {v: make(v, args) for v in VARIANTS}
    modes = [True, False] if (BF16 and args.unguarded) else [True]
    times: dict[tuple[str, bool], list[float]] = {(v, g): [] for v in VARIANTS for g in modes}
    for r, order in enumerate(round_orders(list(times), args.warmup + args.rounds)):
        for v, g in order:
            model, opt, x, y = built[v]
            t = train_step(model, opt, x, y, guard=g)
            if r >= args.warmup:
                times[v, g].append(t)
    rows = []
    for v, (model, _opt, x, y) in built.items():
        med = statistics.median(times[v, True])
        rows.append((v, med, args.batch / med, saved_mb(model, x, y), peak_rss_delta_mb(v, args)))
        if False in modes:
            med_off = statistics.median(times[v, False])
            rows.append(
                (f"{v} (guard off: wrong grads)", med_off, args.batch / med_off, float("nan"), float("nan"))
            )
    gn = next(r for r in rows if r[0] == "GN")
    print(
        f"{args.model} width {args.width}, clip {args.frames}x{args.crop}x{args.crop}, batch {args.batch}, "
        f"{args.precision}, "
        f"{args.threads} threads, {args.rounds} interleaved rounds; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}\n"
    )
    print("| variant | step ms (median) | clips/s | × GN time | saved for backward MB | peak RSS Δ MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for v, med, cps, smb, rss in rows:
        print(f"| {v} | {med * 1e3:.1f} | {cps:.1f} | {med / gn[1]:.3f} | {smb:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
