"""Batch-1 training steps on CPU: torch's own conv backend choice vs video_gn's oneDNN routing.

For a float32 3D conv on one clip, torch's CPU backend heuristic (written for 2D: it looks at N·C·T·H and ignores
W) picks its im2col "slow3d" kernels whenever N·C·T·H ≤ 20480, so in a CPU-sized video ResNet a batch-1 step can
take longer than a batch-2 step. ``video_gn.nn.conv`` routes those convs to oneDNN (``video_gn/nn/conv.py``).
This script times full training steps (forward, cross-entropy, backward, SGD step) of a registry model at B = 1
and B = 2 with the routing off (``torch``) and on (``video_gn``), interleaved round by round (odd rounds in
reverse order) so machine load hits every variant alike, and prints the median step time, per-clip time, and the
paired ratio torch / video_gn of each round. It also counts how many conv layers are routed.

Usage::

    python benchmarks/batch1.py                                    # quick-start model: r3d_18 w16, 8x32x32
    python benchmarks/batch1.py --width 64 --crop 112 --rounds 10  # the layers.py model
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import video_gn.nn.conv as conv
from video_gn.models import build


def slow3d_convs(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(convs video_gn routes to oneDNN, all 3D convs) for one forward of ``x`` (batch 1)."""
    hits, total = [], []

    def hook(mod, args):
        if args[0].dim() == 5:
            total.append(1)
            pad = mod.padding if not isinstance(mod.padding, str) else (0, 0, 0)
            hits.append(
                conv.cpu_batch1_conv3d_slow(args[0], mod.weight, mod.stride, pad, mod.dilation, mod.groups)
            )

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return sum(hits), len(total)


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(f"# {args.model} width {args.width}, T={args.frames}, {args.crop}x{args.crop}, SGD, fp32")

    variants = {}
    for norm in args.norms.split(","):
        kind, ws = ("gn", True) if norm == "gn+ws" else (norm, False)
        torch.manual_seed(0)
        model = build(args.model, num_classes=args.num_classes, norm=kind, ws=ws, width=args.width).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for batch in (1, 2):
            g = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, 3, args.frames, args.crop, args.crop, generator=g)  # (B, C, T, H, W)
            y = torch.randint(0, args.num_classes, (batch,), generator=g)
            for routing in (False, True):
                variants[(norm, batch, routing)] = (model, opt, x, y)
        hit, total = slow3d_convs(model, torch.randn(1, 3, args.frames, args.crop, args.crop))
        print(
            f"# {norm}: at B=1, {hit} of {total} 3D convs routed to oneDNN (full 3D kernels torch sends to slow3d)"
        )

    def step(key) -> float:
        model, opt, x, y = variants[key]
        conv.BATCH1_ONEDNN = key[2]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    keys = list(variants)
    times: dict = {k: [] for k in keys}
    for r in range(args.warmup + args.rounds):
        for k in keys if r % 2 == 0 else reversed(keys):
            t = step(k)
            if r >= args.warmup:
                times[k].append(t)
    conv.BATCH1_ONEDNN = True

    print(
        "\n| norm | B | convs routed | median step s | s per clip | torch / video_gn, paired median [quartiles] |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for norm, batch, routing in keys:
        med = statistics.median(times[(norm, batch, routing)])
        ratio = ""
        if routing:
            paired = sorted(a / b for a, b in zip(times[(norm, batch, False)], times[(norm, batch, True)]))
            q1, q3 = statistics.quantiles(paired, n=4)[::2] if len(paired) >= 4 else (paired[0], paired[-1])
            ratio = f"{statistics.median(paired):.2f} [{q1:.2f}, {q3:.2f}]"
        who = "video_gn" if routing else "torch"
        print(f"| {norm} | {batch} | {who} | {med:.4f} | {med / batch:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
