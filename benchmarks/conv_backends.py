"""Per-conv CPU timings of torch's two float32 3D conv backends: oneDNN against im2col "slow3d".

torch picks oneDNN for every float32 3D conv with a batch > 1 (and for some at batch 1). That choice is right for
the large-activation convs of the early stages but not everywhere: oneDNN's weight gradient is several times
slower when the temporal kernel overhangs the clip (a 3×3×3 conv on T = 1 or 2, the late stages of a video
ResNet on 8-frame clips), and its 1×1×1 kernels lose to a plain GEMM. ``video_gn.nn.conv`` routes those
gradients to slow3d (see its module docstring); this script is the evidence for where.

For every distinct 3D conv of a registry model at the given clip shape it times the forward, the input gradient
and the weight gradient (``aten.convolution_backward`` with one output) on each backend (``slow3d`` by turning
oneDNN off around the call), median of ``--reps`` after a warm-up, both backends interleaved, and prints the
milliseconds, the oneDNN / slow3d ratio, and which backend video_gn uses for each (for a conv whose kernel has taps
that only meet padding, ``video_gn.nn.conv.kernel_trim``, the backends of the trimmed conv, and its times). Totals
weight each conv by how often it occurs in the model.

    python benchmarks/conv_backends.py                                 # r3d_18 width 64, 2×3×8×112×112
    python benchmarks/conv_backends.py --model i3d_r50 --batch 2 --frames 8 --crop 112
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import platform
import statistics
import time

import omp_policy  # benchmarks/omp_policy.py, beside this file

omp_policy.apply()  # --omp-wait-policy, before torch starts OpenMP

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from video_gn.models import build  # noqa: E402
from video_gn.nn import conv  # noqa: E402


def conv3d_calls(
    model: torch.nn.Module, x: torch.Tensor
) -> list[tuple[torch.nn.Conv3d, torch.Tensor, tuple]]:
    """(module, its input, its numeric padding) for every 3D conv call in one no-grad forward of ``x``."""
    calls = []

    def hook(mod, args):
        calls.append((mod, args[0], mod.padding if not isinstance(mod.padding, str) else (0, 0, 0)))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return calls


def conv_shapes(model: torch.nn.Module, x: torch.Tensor) -> collections.Counter:
    """Counter of (weight shape, input shape, stride, padding, dilation) over the model's 3D convs."""
    return collections.Counter(
        (tuple(m.weight.shape), tuple(inp.shape), tuple(m.stride), tuple(pad), tuple(m.dilation))
        for m, inp, pad in conv3d_calls(model, x)
    )


#: ``aten.convolution_backward`` output masks of the input gradient and of the weight gradient alone.
MASKS = {"dx": [True, False, False], "dw": [False, True, False]}


def backward_call(grad, x, weight, geometry):
    """``aten.convolution_backward`` of one conv (``geometry``: stride, padding, dilation), as a function of the
    output mask."""
    return lambda mask: torch.ops.aten.convolution_backward(
        grad, x, weight, None, *geometry, False, [0, 0, 0], 1, mask
    )


def timed(fn, onednn: bool) -> float:
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        torch.backends.mkldnn.enabled = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="r3d_18")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    omp_policy.add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model, num_classes=400, norm="gn", ws=False, width=args.width)
    shapes = conv_shapes(model, torch.randn(args.batch, 3, args.frames, args.crop, args.crop))
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} threads, OpenMP wait policy {omp_policy.describe()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"# {args.model} width {args.width}, input {args.batch}×3×{args.frames}×{args.crop}×{args.crop}, fp32; "
        f"ms per call, median of {args.reps}; ratio = oneDNN / slow3d (> 1: slow3d faster)\n"
    )
    print(
        "| n | weight | input | stride | forward oneDNN / slow3d | ∂x oneDNN / slow3d | ∂w oneDNN / slow3d "
        "| video_gn ∂x, ∂w |"
    )
    print("| ---: | --- | --- | --- | ---: | ---: | ---: | --- |")
    totals: collections.Counter = collections.Counter()
    for (w_shape, x_shape, stride, padding, dilation), count in shapes.items():
        x, weight = torch.randn(x_shape), torch.randn(w_shape)
        geometry = (list(stride), list(padding), list(dilation))
        y = F.conv3d(x, weight, None, *geometry)
        grad = torch.randn_like(y)

        backward = backward_call(grad, x, weight, geometry)
        work = {
            "fwd": lambda x=x, weight=weight, geometry=geometry: F.conv3d(x, weight, None, *geometry),
            **{part: functools.partial(backward, mask) for part, mask in MASKS.items()},
        }
        ms: dict[tuple[str, bool], list[float]] = collections.defaultdict(list)
        for rep in range(args.reps + 1):
            for part, fn in work.items():
                for onednn in (True, False) if rep % 2 == 0 else (False, True):
                    t = timed(fn, onednn)
                    if rep:
                        ms[(part, onednn)].append(t * 1e3)
        med = {k: statistics.median(v) for k, v in ms.items()}
        # What video_gn's backward runs: the kernel taps that meet data (conv.kernel_trim), then the routing.
        trim = conv.kernel_trim(x, weight, stride, padding, dilation)
        vg_weight, vg_padding = (trim.cut(weight), trim.padding) if trim else (weight, padding)
        route_x, route_w = conv.backward_on_slow3d(x, vg_weight, stride, vg_padding, dilation, 1)
        vg = {"dx": med[("dx", not route_x)], "dw": med[("dw", not route_w)]}
        if trim:
            vg_backward = backward_call(grad, x, vg_weight, (list(stride), list(vg_padding), list(dilation)))
            for (part, mask), routed in zip(MASKS.items(), (route_x, route_w)):
                timed(functools.partial(vg_backward, mask), not routed)  # warm-up
                vg[part] = 1e3 * statistics.median(
                    timed(functools.partial(vg_backward, mask), not routed) for _ in range(args.reps)
                )
        choice = {False: "oneDNN", True: "slow3d"}
        cells = []
        for part in work:
            a, b = med[(part, True)], med[(part, False)]
            totals[(part, True)] += a * count
            totals[(part, False)] += b * count
            cells.append(f"{a:.2f} / {b:.2f} ({a / b:.2f})")
        totals[("dx", "video_gn")] += count * vg["dx"]
        totals[("dw", "video_gn")] += count * vg["dw"]
        taken = f"{choice[route_x]}, {choice[route_w]}"
        if trim:
            kept = tuple(vg_weight.shape[2:])
            taken = f"trimmed to {kept}: {taken} ({vg['dx']:.2f}, {vg['dw']:.2f})"
        print(f"| {count} | {w_shape} | {x_shape} | {stride} | {' | '.join(cells)} | {taken} |")
    print(
        f"\nper step (each conv × its count), ms: forward oneDNN {totals[('fwd', True)]:.1f}, slow3d "
        f"{totals[('fwd', False)]:.1f}; ∂x oneDNN {totals[('dx', True)]:.1f}, slow3d {totals[('dx', False)]:.1f}, "
        f"video_gn {totals[('dx', 'video_gn')]:.1f}; ∂w oneDNN {totals[('dw', True)]:.1f}, slow3d "
        f"{totals[('dw', False)]:.1f}, video_gn {totals[('dw', 'video_gn')]:.1f}"
    )


if __name__ == "__main__":
    main()
