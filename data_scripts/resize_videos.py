#!/usr/bin/env python
"""Resize every video under SRC so its short side is 256 or 320 px (aspect and fps kept, H.264 MP4) into DST.

The folder structure is mirrored; rerunning skips outputs that exist and are newer than their source.

Example:
    python data_scripts/resize_videos.py data/k400_raw data/k400_320 --short-side 320
"""

from __future__ import annotations

import argparse
import sys

from video_gn.data.prep import resize_tree, write_rows_csv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="input root")
    p.add_argument("dst", help="output root (must differ from src)")
    p.add_argument("--short-side", type=int, default=256, help="target short side in pixels (default: 256)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality (default: 23)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default: veryfast)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument(
        "--failures", default=None, help="write failed files here (default: <dst>/resize_failures.csv)"
    )
    args = p.parse_args(argv)
    r = resize_tree(
        args.src, args.dst, short_side=args.short_side, crf=args.crf, preset=args.preset, workers=args.workers
    )
    print(
        f"{len(r['done'])} resized, {len(r['skipped'])} already done, {len(r['failed'])} failed",
        file=sys.stderr,
    )
    if r["failed"]:
        out = args.failures or f"{args.dst}/resize_failures.csv"
        write_rows_csv(out, ("path", "error"), r["failed"])
        print(f"failures listed in {out}", file=sys.stderr)
    return 0 if not r["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
