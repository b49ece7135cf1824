"""Where weight standardization's time goes: every conv of r3d_18 (width 64, 2×3×8×112×112) timed alone.

For each conv of the model, forward + backward of a plain ``F.conv3d`` and of ``video_gn.nn.ws_conv`` with each
of its two exact evaluation orders forced in turn ("std": build ŵ, "wdom": the weight-domain path, see
``video_gn/nn/ws.py``); medians over ``--reps`` calls. Single-conv timings are noisy at the few-percent level;
use ``benchmarks/layers.py`` for the whole train step.

    python benchmarks/ws_per_conv.py [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import video_gn.nn.ws as ws
from video_gn.models import build


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps + 2):  # two warm-up calls
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def conv_inputs(width: int, frames: int, size: int) -> list[tuple[str, torch.nn.Module, torch.Size]]:
    model = build("r3d_18", norm="gn", ws=True, width=width, num_classes=400)
    seen: list[tuple[str, torch.nn.Module, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, m, i[0].shape)))
        for n, m in model.named_modules()
        if isinstance(m, ws.WSConv3d)
    ]
    with torch.no_grad():
        model(torch.randn(2, 3, frames, size, size))
    for h in hooks:
        h.remove()
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    total = {"plain": 0.0, "std": 0.0, "wdom": 0.0}
    print("| conv | input | weights / input | plain ms | std ms | wdom ms | shipped path |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name, conv, shape in conv_inputs(args.width, args.frames, args.size):
        x = torch.randn(shape, requires_grad=True)
        w = conv.weight.detach().clone().requires_grad_(True)

        def plain(x=x, w=w, conv=conv):
            y = F.conv3d(x, w, None, conv.stride, conv.padding)
            y.backward(torch.ones_like(y))

        def forced(path, x=x, w=w, conv=conv):
            def run():
                ws._FORCE_PATH = path
                try:
                    y = ws.ws_conv(x, w, None, conv.stride, conv.padding, 1, 1, conv.eps)
                    y.backward(torch.ones_like(y))
                finally:
                    ws._FORCE_PATH = None

            return run

        t = {
            "plain": median_time(plain, args.reps),
            "std": median_time(forced("standardized"), args.reps),
            "wdom": median_time(forced("weight"), args.reps),
        }
        for k in total:
            total[k] += t[k]
        ratio = w.numel() / x.numel()
        shipped = "wdom" if ratio > ws._MIN_WEIGHT_OVER_INPUT else "std"
        print(
            f"| {name} | {tuple(shape)} | {ratio:.2f} | {t['plain'] * 1e3:.1f} | {t['std'] * 1e3:.1f} | "
            f"{t['wdom'] * 1e3:.1f} | {shipped} |"
        )
    print(
        f"| **sum** | | | {total['plain'] * 1e3:.0f} | {total['std'] * 1e3:.0f} | {total['wdom'] * 1e3:.0f} | |"
    )


if __name__ == "__main__":
    main()
