"""Where weight standardization's time goes in the whole train step: WS switched off one group of stages at a time.

The model and step of ``benchmarks/layers.py`` (r3d_18 width 64, 2×3×8×112×112, SGD with momentum, 2 threads).
Variants, all from the same GN+WS model:

* ``gn``: the plain GN model (reference);
* ``gn_ws``: GN+WS as shipped;
* ``gn_ws minus <stages>``: GN+WS with the WS convs of those stages replaced by plain convs holding their
  standardized weights (so the rest of the step is unchanged).

What a group of stages costs = the extra time of ``gn_ws`` minus the extra time left when its WS convs are
plain. Variants run interleaved (orders from ``benchmarks/interleave.py``); each round's times are compared with
GN's in the same round (paired), and medians over rounds are printed. In r3d_18 at this input, stages 0-2 (stem, layer1,
layer2) take ``ws.py``'s standardized-weight path and layer3/layer4's 3×3×3 convs its weight-domain path.

    python benchmarks/ws_stages.py [--rounds 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import omp_policy  # benchmarks/omp_policy.py, beside this file
from interleave import round_orders  # benchmarks/interleave.py, beside this file

omp_policy.apply()  # --omp-wait-policy, before torch starts OpenMP

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from video_gn import nn as vnn  # noqa: E402
from video_gn.models import build  # noqa: E402

GROUPS = {"stages 0-2": ("blocks.0", "blocks.1", "blocks.2"), "stages 3-4": ("blocks.3", "blocks.4")}


def model(ws: bool, plain_prefixes: tuple[str, ...] = ()) -> nn.Module:
    torch.manual_seed(0)
    m = build("r3d_18", num_classes=400, norm="gn", ws=ws, width=64, zero_init_residual=False)
    convs = [(name, module) for name, module in m.named_modules() if isinstance(module, vnn.WSConv3d)]
    for full, child in convs:
        if not full.startswith(plain_prefixes):
            continue
        plain = vnn.SafeConv3d(
            child.in_channels,
            child.out_channels,
            child.kernel_size,
            child.stride,
            child.padding,
            child.dilation,
            child.groups,
            child.bias is not None,
        )
        with torch.no_grad():
            plain.weight.copy_(vnn.standardize_weight(child.weight, child.eps))
            if child.bias is not None:
                plain.bias.copy_(child.bias)
        parent_name, _, attr = full.rpartition(".")
        setattr(m.get_submodule(parent_name), attr, plain)
    return m.train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    omp_policy.add_option(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 112, 112), torch.randint(0, 400, (2,))
    variants = {"gn": model(False), "gn_ws": model(True)}
    for label, prefixes in GROUPS.items():
        variants[f"gn_ws minus {label}"] = model(True, prefixes)
    opts = {
        k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        for k, m in variants.items()
    }

    def step(k: str) -> float:
        t0 = time.perf_counter()
        F.cross_entropy(variants[k](x), y).backward()
        opts[k].step()
        opts[k].zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    for _ in range(2):
        for k in variants:
            step(k)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for order in round_orders(list(variants), args.rounds):
        for k in order:
            times[k].append(step(k))
    print(
        f"r3d_18 w64, 2×3×8×112×112, {args.threads} threads, OpenMP wait policy {omp_policy.describe()}, "
        f"{args.rounds} rounds, load {os.getloadavg()[0]:.1f}"
    )
    print("\n| variant | median step s | × GN (paired) | extra ms vs GN (paired) |")
    print("| --- | ---: | ---: | ---: |")
    extra = {}
    for k, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(t, times["gn"]))
        extra[k] = 1e3 * statistics.median(a - b for a, b in zip(t, times["gn"]))
        print(f"| {k} | {statistics.median(t):.3f} | {ratio:.3f} | {extra[k]:+.1f} |")
    print("\n| stages | WS cost ms (gn_ws extra − extra left without their WS) | share |")
    print("| --- | ---: | ---: |")
    for label in GROUPS:
        cost = extra["gn_ws"] - extra[f"gn_ws minus {label}"]
        print(f"| {label} | {cost:.1f} | {cost / extra['gn_ws']:.0%} |")


if __name__ == "__main__":
    main()
