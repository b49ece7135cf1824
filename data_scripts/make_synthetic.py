#!/usr/bin/env python
"""Generate the synthetic motion-recognition dataset (H.264 MP4s in the Kinetics folder layout).

Example:
    python data_scripts/make_synthetic.py data/synthetic                  # quick-start size
    python data_scripts/make_synthetic.py data/synth112 --preset large     # bigger, 128x160 px
    python data_scripts/make_synthetic.py --list-classes
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from video_gn.data.synthetic import PRESETS, SyntheticSpec, describe, generate


def main(argv: list[str] | None = None) -> int:
    default = SyntheticSpec()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", help="output dataset folder (must not exist, or be empty)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="base spec (default: quick)")
    p.add_argument("--num-classes", type=int, help=f"first N classes (quick: {default.num_classes})")
    p.add_argument("--train-per-class", type=int, help=f"(quick: {default.train_per_class})")
    p.add_argument("--val-per-class", type=int, help=f"(quick: {default.val_per_class})")
    p.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"), help=f"frame size (quick: {default.size})"
    )
    p.add_argument("--fps", type=int, help=f"(quick: {default.fps})")
    p.add_argument("--num-frames", type=int, help=f"video length in frames (quick: {default.num_frames})")
    p.add_argument("--seed", type=int, help=f"(quick: {default.seed})")
    p.add_argument("--crf", type=int, help=f"x264 quality (quick: {default.crf})")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--list-classes", action="store_true", help="describe the classes and exit")
    args = p.parse_args(argv)
    if args.list_classes:
        print(describe())
        return 0
    if not args.root:
        p.error("root is required (or use --list-classes)")
    overrides = {
        k: (tuple(v) if k == "size" else v)
        for k in (
            "num_classes",
            "train_per_class",
            "val_per_class",
            "size",
            "fps",
            "num_frames",
            "seed",
            "crf",
        )
        if (v := getattr(args, k)) is not None
    }
    try:
        spec = dataclasses.replace(PRESETS[args.preset], **overrides)
    except ValueError as e:
        p.error(str(e))
    n = spec.num_classes * (spec.train_per_class + spec.val_per_class)
    print(f"{spec}\n{n} videos -> {args.root}", file=sys.stderr)
    t0 = time.perf_counter()
    root = generate(args.root, spec, workers=args.workers)
    print(f"done in {time.perf_counter() - t0:.1f}s: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
