"""``video-gn plan`` command line: parse the options, build the plan, print it (table, ``--json`` or ``--csv``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch

from video_gn.argparsing import CommandParser
from video_gn.nn import NORM_KINDS
from video_gn.plan.extrapolate import build_plan
from video_gn.plan.measure import OPTIMIZERS, PRECISIONS
from video_gn.plan.report import plot, render_table, to_csv
from video_gn.plan.units import parse_bytes


def parse_int_list(text: str, what: str) -> list[int]:
    """Parse ``"8,16,32"`` into sorted unique positive ints; ``what`` names the option in errors."""
    try:
        values = sorted({int(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers like 8,16,32, got {text!r}.") from None
    if not values or values[0] < 1:
        raise ValueError(f"{what} must list positive integers like 8,16,32, got {text!r}.")
    return values


def _gn_groups(text: str) -> int | str:
    if text in ("auto", "min32"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, 'auto' or 'min32', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``video-gn plan`` argument parser."""
    p = CommandParser(
        prog="video-gn plan",
        description="Peak training memory and step time per (clip length T, per-device batch B), measured "
        "with real training steps (CPU: bytes saved for backward + params/grads/optimiser; CUDA: allocator "
        "peak) and extrapolated exactly where the model allows. On CPU, i3d_r50 at crop 224 needs about "
        "a minute on 2 cores with the default grid.",
    )
    p.add_argument("--model", default="i3d_r50", help="registry model name (default i3d_r50)")
    p.add_argument("--norm", default="gn", choices=NORM_KINDS, help="normalisation (default gn)")
    p.add_argument("--ws", action=argparse.BooleanOptionalAction, default=True, help="weight standardization")
    p.add_argument("--width", type=int, default=64, help="base width (64 = published)")
    p.add_argument(
        "--gn_groups",
        "--gn-groups",
        type=_gn_groups,
        default=None,
        help="GroupNorm groups, an int, 'auto' or 'min32' (default: the registry's min32: 32, one per channel "
        "below 32 channels; as --model.gn_groups)",
    )
    p.add_argument("--frames", default="8,16,32,64", help="clip lengths T (default 8,16,32,64)")
    p.add_argument("--batch", default="1,2,4,8", help="per-device batch sizes B (default 1,2,4,8)")
    p.add_argument("--crop", type=int, default=224, help="spatial crop (default 224)")
    p.add_argument("--num_classes", "--num-classes", type=int, default=400, help="classes (default 400)")
    p.add_argument("--budget", default=None, help="memory budget per device, e.g. 80GiB, 24G, 16GB")
    p.add_argument("--precision", default="32-true", choices=PRECISIONS)
    p.add_argument(
        "--optimizer", default="sgd", choices=OPTIMIZERS, help="sgd: momentum 1x, adamw: 2x params"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--measure", default="auto", choices=("auto", "all"),
        help="auto: few points + exact extrapolation on CPU, every cell on CUDA; all: measure every cell",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=int, default=None, help="timed steps per measured point (default CPU 2, CUDA 5)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--csv", action="store_true", help="print CSV instead of the table")
    p.add_argument("--plot", default=None, metavar="PNG", help="also save memory vs T per B as a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``video-gn plan``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        frames = parse_int_list(args.frames, "--frames")
        batches = parse_int_list(args.batch, "--batch")
        try:
            budget = parse_bytes(args.budget) if args.budget is not None else None
        except ValueError as err:
            raise ValueError(f"--budget: {err}") from None
        if args.threads is not None and args.threads < 1:
            raise ValueError(
                f"--threads must be a positive int, got {args.threads}; omit it for torch's default."
            )
        if args.json and args.csv:
            raise ValueError("--json and --csv are exclusive; pick one.")
        if args.plot:  # before minutes of measuring, not after
            folder = os.path.dirname(os.path.abspath(args.plot))
            if not os.path.isdir(folder):
                raise ValueError(f"--plot {args.plot}: the folder {folder} does not exist")
            try:
                from matplotlib.backends.backend_agg import FigureCanvasAgg  # the [plot] extra
            except ImportError:
                raise ImportError("--plot needs matplotlib: pip install 'video_gn[plot]'") from None
            suffix = os.path.splitext(args.plot)[1].lstrip(".").lower()
            formats = FigureCanvasAgg.get_supported_filetypes()
            if suffix and suffix not in formats:  # no suffix: plot() adds .png
                raise ValueError(
                    f"--plot {args.plot}: matplotlib cannot write .{suffix} files; use one of "
                    f"{', '.join('.' + f for f in sorted(formats))}"
                )
        if args.threads:
            torch.set_num_threads(args.threads)
        steps = args.steps if args.steps is not None else (5 if args.device == "cuda" else 2)
        plan = build_plan(
            model=args.model, norm=args.norm, ws=args.ws, width=args.width, frames=frames, batches=batches,
            crop=args.crop, num_classes=args.num_classes, budget_bytes=budget, precision=args.precision,
            optimizer=args.optimizer, device=args.device, measure=args.measure, steps=steps, log=not args.quiet,
            gn_groups=args.gn_groups,
        )  # fmt: skip
    except (ValueError, TypeError, ImportError) as err:
        # Errors from the model builders name the fit/config option; plan's own flag is --gn-groups.
        print(
            f"video-gn plan: error: {str(err).replace('--model.gn_groups', '--gn-groups')}", file=sys.stderr
        )
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    elif args.csv:
        print(to_csv(plan), end="")
    else:
        print(render_table(plan), end="")
    if args.plot:
        try:
            plot(plan, args.plot)
        except (ImportError, OSError, ValueError) as err:
            print(f"video-gn plan: error: {err}", file=sys.stderr)
            return 2
    return 0
