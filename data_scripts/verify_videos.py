#!/usr/bin/env python
"""Check that every video opens and decodes from start to end; list the bad ones.

Per file: the first frames, one frame a third and two thirds in, and every frame from the last key frame
to the end of the stream, whose last frame must match the length the header announces (so a file that
lost its tail, e.g. an interrupted download, is caught even though it opens). About one GOP of decoding
per file.

Give a folder (every video file under it is checked) or a `path label` list (paths relative to the list's
folder, or --root). Prints a summary, writes the bad files with their error to --bad (CSV), and with
--clean-csv writes the list without the bad rows.

Example:
    python data_scripts/verify_videos.py data/k400 --bad data/k400/bad.csv
    python data_scripts/verify_videos.py data/k400/train.csv --clean-csv data/k400/train_clean.csv
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from video_gn.data.prep import find_videos, read_list, verify_videos, write_clean_csv, write_rows_csv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a dataset folder or a `path label` list file")
    p.add_argument(
        "--root", default=None, help="base folder of relative paths in a list (default: its folder)"
    )
    p.add_argument("--frames", type=int, default=4, help="frames to decode at the start (default: 4)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--bad", default=None, help="CSV of bad files (default: bad_videos.csv beside the target)")
    p.add_argument("--clean-csv", default=None, help="with a list target: write it without the bad rows here")
    args = p.parse_args(argv)
    target = Path(args.target)
    if target.is_dir():
        paths = find_videos(target)
        base = target
    elif target.is_file():
        base = Path(args.root) if args.root else target.parent
        paths = [base / path for path, _ in read_list(target)]
    else:
        p.error(f"{target} does not exist")
    if args.clean_csv and not target.is_file():
        p.error("--clean-csv needs a list file as target")
    checks = verify_videos(paths, num_frames=args.frames, workers=args.workers)
    bad = [c for c in checks if not c.ok]
    print(f"{len(checks)} files checked: {len(checks) - len(bad)} ok, {len(bad)} bad", file=sys.stderr)
    for reason, n in Counter(c.error.split(":")[0] for c in bad).most_common(10):
        print(f"  {n:6d}  {reason}", file=sys.stderr)
    bad_csv = Path(args.bad) if args.bad else (base if target.is_dir() else target.parent) / "bad_videos.csv"
    write_rows_csv(bad_csv, ("path", "error"), [(c.path, c.error) for c in bad])
    print(f"bad files listed in {bad_csv}", file=sys.stderr)
    if args.clean_csv:
        removed = write_clean_csv(target, args.clean_csv, [c.path for c in bad], root=str(base))
        print(f"wrote {args.clean_csv} ({removed} rows removed)", file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
