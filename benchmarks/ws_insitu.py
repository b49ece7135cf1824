"""Where WS's extra time goes inside the whole train step: every conv's forward and backward timed in place.

Timing a conv alone (``benchmarks/ws_per_conv.py``) misses what the rest of the step does to caches; timing
whole steps (``benchmarks/layers.py``) does not say where the difference is. This script runs the step of
``layers.py`` (r3d_18 width 64, 2×3×8×112×112, SGD with momentum) for two copies of the same GN+WS model, one
step each per round (orders from ``benchmarks/interleave.py``):

* ``plain``: every WS conv replaced by an autograd function that runs the plain conv on the raw weights through
  the same ``convolution`` / ``convolution_backward`` calls ``video_gn.nn.ws`` uses;
* ``ws``: ``video_gn.nn.WSConv3d`` as shipped.

It clocks each conv's autograd forward and backward (``time.perf_counter`` around the function; CPU ops are
synchronous) and prints, per conv shape, the milliseconds per step of both and their difference, then the whole
step and the time spent outside the convs. If the WS cost is all inside the convs, the "outside" times agree.

    python benchmarks/ws_insitu.py [--model r3d_18] [--rounds 12] [--threads 2] [--omp-wait-policy default]
"""

from __future__ import annotations

import argparse
import collections
import time

import omp_policy  # benchmarks/omp_policy.py, beside this file
from interleave import round_orders  # benchmarks/interleave.py, beside this file

omp_policy.apply()  # --omp-wait-policy, before torch starts OpenMP

import torch  # noqa: E402
from layers import Trainer  # noqa: E402  (benchmarks/layers.py, beside this file)

from video_gn import nn as vnn  # noqa: E402
from video_gn.models import build  # noqa: E402
from video_gn.nn import ws  # noqa: E402
from video_gn.nn.conv import _Conv  # noqa: E402  (the plain conv through the kernels ws.py calls)

_WS_FUNCTION = ws._WSConvFunction  # the shipped function, swapped for the clocked one while timing
#: (variant, "forward" | "backward", weight shape, input shape) -> seconds, summed over the timed steps
CLOCK: collections.defaultdict[tuple, float] = collections.defaultdict(float)


def clocked(name: str, function: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """``function`` with its forward and backward time added to :data:`CLOCK` under ``name`` and the conv shape."""

    class Clocked(function):
        @staticmethod
        def forward(ctx, x, weight, *args):
            start = time.perf_counter()
            out = function.forward(ctx, x, weight, *args)
            ctx.key = (tuple(weight.shape), tuple(x.shape))
            CLOCK[(name, "forward", *ctx.key)] += time.perf_counter() - start
            return out

        @staticmethod
        def backward(ctx, grad_out):
            start = time.perf_counter()
            grads = function.backward(ctx, grad_out)
            CLOCK[(name, "backward", *ctx.key)] += time.perf_counter() - start
            return grads

    return Clocked


_CLOCKED_PLAIN = clocked("plain", _Conv)
_CLOCKED_WS = clocked("ws", _WS_FUNCTION)


class PlainClockedConv3d(vnn.WSConv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (list(self.stride), list(self.padding), list(self.dilation), self.groups)
        return _CLOCKED_PLAIN.apply(x, self.weight, self.bias, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="r3d_18", help="registry model (width 64, 400 classes)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    omp_policy.add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = build(args.model, num_classes=400, norm="gn", ws=True, width=64)
    models = {}
    for variant in ("plain", "ws"):
        model = build(args.model, num_classes=400, norm="gn", ws=True, width=64)
        model.load_state_dict(reference.state_dict())
        if variant == "plain":
            for module in model.modules():
                if type(module) is vnn.WSConv3d:
                    module.__class__ = PlainClockedConv3d
        models[variant] = model
    x, y = torch.randn(2, 3, 8, 112, 112), torch.randint(0, 400, (2,))
    trainers = {k: Trainer(m, x, y) for k, m in models.items()}
    steps: dict[str, float] = collections.defaultdict(float)
    ws._WSConvFunction = _CLOCKED_WS  # ws_conv looks the function up at call time
    try:
        for r, order in enumerate(round_orders(["plain", "ws"], args.rounds + 2)):  # two warm-up rounds
            if r == 2:
                CLOCK.clear()
                steps.clear()
            for k in order:
                steps[k] += trainers[k].step()[0]
    finally:
        ws._WSConvFunction = _WS_FUNCTION
    n = args.rounds
    print(
        f"{args.model} w64, 2×3×8×112×112, {args.threads} threads, OpenMP wait policy {omp_policy.describe()}, "
        f"{n} rounds\n"
    )
    print(
        "| conv weight | input | pass | plain ms | WS ms | WS − plain ms |\n| --- | --- | --- | ---: | ---: | ---: |"
    )
    keys = sorted({k[1:] for k in CLOCK}, key=lambda k: (-torch.Size(k[2]).numel(), k[1], k[0]))
    inside = collections.Counter()
    for key in keys:
        plain, wst = CLOCK[("plain", *key)] / n * 1e3, CLOCK[("ws", *key)] / n * 1e3
        inside["plain"] += plain
        inside["ws"] += wst
        print(f"| {key[1]} | {key[2]} | {key[0]} | {plain:.2f} | {wst:.2f} | {wst - plain:+.2f} |")
    step = {k: v / n * 1e3 for k, v in steps.items()}
    print(
        f"\nper step: plain {step['plain']:.1f} ms, WS {step['ws']:.1f} ms ({step['ws'] / step['plain']:.3f}×); "
        f"inside the convs {inside['plain']:.1f} vs {inside['ws']:.1f} ms "
        f"({inside['ws'] - inside['plain']:+.1f}); outside {step['plain'] - inside['plain']:.1f} vs "
        f"{step['ws'] - inside['ws']:.1f} ms"
    )


if __name__ == "__main__":
    main()
