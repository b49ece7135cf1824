"""A/B test of two WSConv3d implementations in one interleaved run: is a change to ``video_gn/nn/ws.py`` faster?

Whole-step ratios of GN+WS to GN move by ±2 % between idle runs on a 2-core machine, more than most changes to the
WS code are worth. This script puts the shipped ``video_gn.nn.WSConv3d`` and other versions of ``ws.py`` (files
given on the command line, e.g. ``git show HEAD~1:video_gn/nn/ws.py > /tmp/ws_old.py``) in the same process, on
the same weights, and times one train step of each per round (the model, step and interleaving of
``benchmarks/layers.py``: r3d_18 width 64, 2×3×8×112×112, SGD with momentum). It prints each variant's
median step and its median ratio to GN in the same round, then shipped / other per round, median [quartiles].

    git show HEAD~1:video_gn/nn/ws.py > /tmp/ws_old.py
    python benchmarks/ws_ab.py old=/tmp/ws_old.py [--rounds 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
from types import ModuleType

import omp_policy  # benchmarks/omp_policy.py, beside this file

omp_policy.apply()  # --omp-wait-policy, before torch starts OpenMP

import torch  # noqa: E402
from interleave import paired_ratios  # noqa: E402  (benchmarks/interleave.py, beside this file)
from layers import Trainer, interleaved  # noqa: E402  (benchmarks/layers.py, beside this file)
from torch import nn  # noqa: E402

from video_gn import nn as vnn  # noqa: E402
from video_gn.models import build  # noqa: E402


def load_module(name: str, path: str) -> ModuleType:
    """Import a copy of ``ws.py`` from ``path`` as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"ws_ab_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"ws_ab: cannot import {path!r}: give a Python file (a copy of video_gn/nn/ws.py)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "WSConv3d"):
        raise SystemExit(f"ws_ab: {path!r} defines no WSConv3d; give a copy of video_gn/nn/ws.py")
    return module


def ws_model(reference: nn.Module, ws_class: type | None) -> nn.Module:
    """The GN+WS r3d_18 with ``reference``'s weights, its WS convs switched to ``ws_class`` (None: shipped)."""
    model = build("r3d_18", num_classes=400, norm="gn", ws=True, width=64)
    model.load_state_dict(reference.state_dict())
    if ws_class is not None:
        for module in model.modules():
            if isinstance(module, vnn.WSConv3d):
                module.__class__ = ws_class  # same attributes (weight, bias, eps, conv options)
    return model


def fmt(ratio: tuple[float, float, float]) -> str:
    """``median [q1, q3]`` of a :func:`interleave.paired_ratios` entry."""
    return f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("others", nargs="+", metavar="NAME=PATH", help="other versions of ws.py to compare")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    omp_policy.add_option(parser)
    args = parser.parse_args(argv)
    others = {}
    for item in args.others:
        name, sep, path = item.partition("=")
        if not sep or not name or name in ("gn", "shipped"):
            raise SystemExit(f"ws_ab: expected NAME=PATH with NAME not 'gn' or 'shipped', got {item!r}")
        others[name] = load_module(name, path).WSConv3d
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gn = build("r3d_18", num_classes=400, norm="gn", ws=False, width=64)
    models = {"gn": gn, "shipped": ws_model(gn, None)} | {k: ws_model(gn, c) for k, c in others.items()}
    x, y = torch.randn(2, 3, 8, 112, 112), torch.randint(0, 400, (2,))
    steps = {k: Trainer(m, x, y).step for k, m in models.items()}
    load = os.getloadavg()[0]
    wall, _ = interleaved(steps, warmup=2, rounds=args.rounds)
    print(
        f"r3d_18 w64, 2×3×8×112×112, {args.threads} threads, OpenMP wait policy {omp_policy.describe()}, "
        f"{args.rounds} rounds, load {load:.1f} at start\n"
    )
    print("| variant | median step s | × GN, paired: median [quartiles] |\n| --- | ---: | ---: |")
    to_gn = paired_ratios(wall, "gn")
    for k, ts in wall.items():
        print(f"| {k} | {statistics.median(ts):.3f} | {fmt(to_gn[k])} |")
    print()
    for k in others:
        print(f"shipped / {k}, paired: {fmt(paired_ratios(wall, k)['shipped'])}")


if __name__ == "__main__":
    main()
