"""CPU training steps with video_gn's conv backend routing off and on (batch-1 oneDNN, or slow3d backward).

For a float32 3D conv on one clip, torch's CPU backend heuristic (written for 2D: it looks at N·C·T·H and ignores
W) picks its im2col "slow3d" kernels whenever N·C·T·H ≤ 20480, so in a CPU-sized video ResNet a batch-1 step can
take longer than a batch-2 step. ``video_gn.nn.conv`` routes those convs to oneDNN (``video_gn/nn/conv.py``).
This script times full training steps (forward, cross-entropy, backward, SGD step) of a registry model at B = 1
and B = 2 with the routing off (torch's own choice) and on (video_gn's), interleaved round by round (orders from
``benchmarks/interleave.py``) so machine load hits every variant alike, and prints the median step time, per-clip
time, and the paired ratio off / on of each round. It also counts how many conv layers are routed.

With ``--routing backward-slow3d`` it measures the other routing instead: the backward kernels oneDNN is slow at
(weight gradients of convs whose temporal kernel overhangs the clip, 1×1×1 convs) computed on slow3d
(``video_gn.nn.conv.backward_on_slow3d``), off vs on, at the batch sizes given by ``--batches``. With
``--routing trim-kernel``: the kernel taps that only ever meet zero padding left out of the convs
(``video_gn.nn.conv.kernel_trim``: a 3×3×3 conv on T = 1 keeps its middle temporal slice), off vs on.

Usage::

    python benchmarks/batch1.py                                    # quick-start model: r3d_18 w16, 8x32x32
    python benchmarks/batch1.py --width 64 --crop 112 --rounds 10  # the layers.py model
    python benchmarks/batch1.py --routing backward-slow3d --width 64 --crop 112 --batches 2 --rounds 10
    python benchmarks/batch1.py --routing trim-kernel --width 64 --crop 112 --batches 2 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from conv_backends import conv3d_calls  # benchmarks/conv_backends.py, beside this file
from interleave import round_orders  # benchmarks/interleave.py, beside this file

import video_gn.nn.conv as conv
from video_gn.models import build

#: ``--routing`` choices: the ``video_gn.nn.conv`` flag each switches, and how the routed convs are described.
ROUTINGS = {
    "batch1-onednn": ("BATCH1_ONEDNN", "to oneDNN"),
    "backward-slow3d": ("BACKWARD_SLOW3D", "with part of their backward to slow3d"),
    "trim-kernel": ("TRIM_KERNEL", "with a trimmed kernel"),
}


def routed_convs(model: torch.nn.Module, x: torch.Tensor, routing: str) -> tuple[int, int]:
    """(convs video_gn routes, all 3D convs) for one forward of ``x``: to oneDNN at batch 1, or with part of
    their backward on slow3d."""
    hits = []
    for mod, inp, pad in conv3d_calls(model, x):
        geometry = (inp, mod.weight, mod.stride, pad, mod.dilation, mod.groups)
        if routing == "batch1-onednn":
            hits.append(conv.cpu_batch1_conv3d_slow(*geometry))
        elif routing == "trim-kernel":
            hits.append(conv.kernel_trim(inp, mod.weight, mod.stride, pad, mod.dilation) is not None)
        else:
            hits.append(any(conv.backward_on_slow3d(*geometry)))
    return sum(hits), len(hits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="r3d_18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--num_classes", type=int, default=6)
    p.add_argument("--norms", default="gn,gn+ws", help="comma-separated: bn, gn, gn+ws")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--routing",
        choices=list(ROUTINGS),
        default="batch1-onednn",
        help="which video_gn routing to switch off and on (module docstring)",
    )
    p.add_argument("--batches", default="1,2", help="comma-separated batch sizes")
    args = p.parse_args()
    flag, what = ROUTINGS[args.routing]
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"# {args.model} width {args.width}, T={args.frames}, {args.crop}x{args.crop}, SGD, fp32; routing "
        f"switched off/on: {args.routing} (video_gn.nn.conv.{flag})"
    )

    variants = {}
    for norm in args.norms.split(","):
        kind, ws = ("gn", True) if norm == "gn+ws" else (norm, False)
        torch.manual_seed(0)
        model = build(args.model, num_classes=args.num_classes, norm=kind, ws=ws, width=args.width).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for batch in batches:
            g = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, 3, args.frames, args.crop, args.crop, generator=g)  # (B, C, T, H, W)
            y = torch.randint(0, args.num_classes, (batch,), generator=g)
            for routing in (False, True):
                variants[(norm, batch, routing)] = (model, opt, x, y)
        for batch in batches:
            hit, total = routed_convs(
                model, torch.randn(batch, 3, args.frames, args.crop, args.crop), args.routing
            )
            print(f"# {norm}: at B={batch}, {hit} of {total} 3D convs routed {what}")

    def step(key) -> float:
        model, opt, x, y = variants[key]
        setattr(conv, flag, key[2])
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    keys = list(variants)
    times: dict = {k: [] for k in keys}
    for r, order in enumerate(round_orders(keys, args.warmup + args.rounds)):
        for k in order:
            t = step(k)
            if r >= args.warmup:
                times[k].append(t)
    setattr(conv, flag, True)

    print("\n| norm | B | routing | median step s | s per clip | off / on, paired median [quartiles] |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for norm, batch, routing in keys:
        med = statistics.median(times[(norm, batch, routing)])
        ratio = ""
        if routing:
            paired = sorted(a / b for a, b in zip(times[(norm, batch, False)], times[(norm, batch, True)]))
            q1, q3 = statistics.quantiles(paired, n=4)[::2] if len(paired) >= 4 else (paired[0], paired[-1])
            ratio = f"{statistics.median(paired):.2f} [{q1:.2f}, {q3:.2f}]"
        who = "on" if routing else "off"
        print(f"| {norm} | {batch} | {who} | {med:.4f} | {med / batch:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
