#!/usr/bin/env python
"""Resize every video under SRC so its short side is 256 or 320 px (aspect and fps kept, H.264 MP4) into DST.

The folder structure is mirrored (a SRC/classes.txt is copied, so label indices stay); rotated (phone)
videos are turned upright. Rerunning skips outputs that exist and are newer than their source (the settings
are recorded in DST/.resize.json, and a rerun into DST with another --short-side is refused, since it would
keep the old outputs). Videos already smaller than --short-side are scaled up, as the usual
Kinetics preprocessing does (every video gets the same short side); the summary says how many, and
--no-upscale keeps them at their size instead. Exit status: 0 all resized, 1 some failed (listed in the
--failures CSV), 2 bad input (nothing done).

Example:
    python data_scripts/resize_videos.py data/k400_raw data/k400_320 --short-side 320
"""

from __future__ import annotations

import argparse
import sys

from video_gn.argparsing import CommandParser
from video_gn.data.prep import X264_PRESETS, resize_tree, write_rows_csv
from video_gn.data.progress import run_script
from video_gn.data.script_args import bounded_int, output_path_problem


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="input root")
    p.add_argument("dst", help="output root (must differ from src and not lie inside it)")
    p.add_argument(
        "--short-side",
        type=bounded_int(2),
        default=256,
        help="target short side in pixels, rounded to even for H.264 4:2:0 (default: 256)",
    )
    p.add_argument(
        "--no-upscale",
        action="store_true",
        help="keep videos whose short side is already below --short-side at their size (default: scale "
        "them up so every video has the same short side)",
    )
    p.add_argument("--crf", type=bounded_int(0, 51), default=23, help="x264 quality (default: 23)")
    p.add_argument(
        "--preset", choices=X264_PRESETS, default="veryfast", help="x264 preset (default: veryfast)"
    )
    p.add_argument("--workers", type=bounded_int(0), default=None, help="processes (default: all CPUs)")
    p.add_argument(
        "--failures", default=None, help="write failed files here (default: <dst>/resize_failures.csv)"
    )
    args = p.parse_args(argv)
    if args.failures and (problem := output_path_problem(args.failures)):
        p.error(f"--failures: {problem}")
    try:
        r = resize_tree(
            args.src,
            args.dst,
            short_side=args.short_side,
            crf=args.crf,
            preset=args.preset,
            upscale=not args.no_upscale,
            workers=args.workers,
        )
    except (OSError, ValueError) as e:  # bad folders: one line, not a traceback
        p.exit(2, f"{p.prog}: error: {e}\n")
    print(
        f"{len(r['done'])} resized, {len(r['skipped'])} already done, {len(r['failed'])} failed "
        f"-> {args.dst}",
        file=sys.stderr,
    )
    if r["smaller"]:
        first, sizes = r["smaller"][0]
        what = "kept at their size (--no-upscale)" if args.no_upscale else "upscaled"
        print(
            f"{len(r['smaller'])} videos were smaller than the target ({args.short_side} px short side) and "
            f"were {what}; first: {first} ({sizes})",
            file=sys.stderr,
        )
    if r["failed"]:
        out = args.failures or f"{args.dst}/resize_failures.csv"
        write_rows_csv(out, ("path", "error"), r["failed"])
        print(f"failures listed in {out}; e.g. {r['failed'][0][0]}: {r['failed'][0][1]}", file=sys.stderr)
    return 0 if not r["failed"] else 1


if __name__ == "__main__":
    sys.exit(run_script(main, "finished videos are kept; rerun the same command to resume"))
