#!/usr/bin/env python
"""Generate the synthetic motion-recognition dataset (H.264 MP4s in the Kinetics folder layout).

Presets: "quickstart" (the default here: exactly the dataset configs/quickstart.yaml generates, 6 classes,
1,680 videos at 40x48 px), "default" (SyntheticSpec()'s defaults: 10 classes, 500 videos at 64x80 px),
"tiny", "large" (14 classes, 128x160 px). Options below override single fields of the preset.

A folder holds one spec. Rerunning with the same spec on a finished folder reuses it (nothing is generated,
so a repeated command is harmless); a folder holding another spec (its synthetic.json says which) or
anything that is not a synthetic dataset is refused: choose another folder. Exit status: 0 written or
reused, 2 bad input (nothing written).

Example:
    python data_scripts/make_synthetic.py data/synthetic_motion                    # the quick start's dataset
    python data_scripts/make_synthetic.py data/synthetic10 --preset default        # 10 classes, 64x80 px
    python data_scripts/make_synthetic.py data/synth112 --preset large             # 14 classes, 128x160 px
    python data_scripts/make_synthetic.py --list-classes
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from video_gn.argparsing import CommandParser
from video_gn.data.progress import run_script
from video_gn.data.script_args import bounded_int
from video_gn.data.synthetic import PRESETS, check_root, describe, generate

DEFAULT_PRESET = "quickstart"


def main(argv: list[str] | None = None) -> int:
    base = PRESETS[DEFAULT_PRESET]
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "root",
        nargs="?",
        help="output dataset folder: created if missing (or filled if empty); reused as it is if it holds "
        "this same spec; refused if it holds another spec or anything else",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=DEFAULT_PRESET,
        help=f"base spec (default: {DEFAULT_PRESET})",
    )
    q = DEFAULT_PRESET
    p.add_argument("--num-classes", type=int, help=f"first N classes ({q}: {base.num_classes})")
    p.add_argument("--train-per-class", type=int, help=f"({q}: {base.train_per_class})")
    p.add_argument("--val-per-class", type=int, help=f"({q}: {base.val_per_class})")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help=f"frame size ({q}: {base.size})")
    p.add_argument("--fps", type=int, help=f"({q}: {base.fps})")
    p.add_argument("--num-frames", type=int, help=f"video length in frames ({q}: {base.num_frames})")
    p.add_argument("--seed", type=int, help=f"({q}: {base.seed})")
    p.add_argument("--crf", type=int, help=f"x264 quality ({q}: {base.crf})")
    p.add_argument("--workers", type=bounded_int(0), default=None, help="processes (default: all CPUs)")
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
    counts = (
        f"{n} videos: {spec.num_classes} classes x ({spec.train_per_class} train + "
        f"{spec.val_per_class} val), {spec.size[0]}x{spec.size[1]} px, {spec.num_frames} frames at "
        f"{spec.fps} fps"
    )
    try:
        if check_root(args.root, spec):
            print(
                f"{args.root} already holds this dataset ({counts}): reused, nothing generated",
                file=sys.stderr,
            )
            return 0
        print(f"{spec}\n{counts} -> {args.root}", file=sys.stderr)
        t0 = time.perf_counter()
        root = generate(args.root, spec, workers=args.workers)
    except (OSError, ValueError) as e:  # an occupied root or an unwritable path: one line, not a traceback
        p.exit(2, f"{p.prog}: error: {e}\n")
    print(
        f"done in {time.perf_counter() - t0:.1f}s: {root} ({n} videos, classes.txt, synthetic.json)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "the dataset folder was not created; rerun the same command"))
