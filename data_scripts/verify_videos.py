#!/usr/bin/env python
"""Check that every video opens and decodes from start to end; list the bad ones.

Per file: the first frames, one frame a third and two thirds in, and every frame from the last key frame
to the end of the stream, whose last frame must match the length the header announces (so a file that
lost its tail, e.g. an interrupted download, is caught even though it opens). About one GOP of decoding
per file.

Give a folder (every video file under it is checked) or a `path label` list (paths relative to the list's
folder, or --root). Prints a summary, writes the bad files with their error to the --bad CSV (always, so a
clean run leaves an empty list; its path is printed at the end), and with --clean-csv writes the list
without the bad rows. The default --bad is written beside the target, never inside a dataset folder:
`data/k400` -> `data/k400_bad_videos.csv`, `data/k400/train.csv` -> `data/k400/train_bad_videos.csv`.
Exit status: 0 all good, 1 some bad files, 2 bad input (nothing checked).

Example:
    python data_scripts/verify_videos.py data/k400                    # bad files -> data/k400_bad_videos.csv
    python data_scripts/verify_videos.py data/k400/train.csv --clean-csv data/k400/train_clean.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from video_gn.argparsing import CommandParser
from video_gn.data.filelists import read_list, write_clean_csv
from video_gn.data.prep import VIDEO_EXTENSIONS, find_videos, write_rows_csv
from video_gn.data.progress import run_script
from video_gn.data.script_args import bounded_int, folder_problem, output_path_problem
from video_gn.data.verify import verify_videos


def default_bad_csv(target: Path) -> Path:
    """Where the bad-file CSV goes by default: beside the target, outside a dataset folder.

    A folder ``<parent>/<name>`` gives ``<parent>/<name>_bad_videos.csv``; a list ``<dir>/<stem>.csv``
    gives ``<dir>/<stem>_bad_videos.csv``; a folder without a name (``/``) gives ``./bad_videos.csv``.
    """
    if target.is_dir():
        full = target.resolve()
        return full.parent / f"{full.name}_bad_videos.csv" if full.name else Path("bad_videos.csv")
    return target.parent / f"{target.stem}_bad_videos.csv"


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a dataset folder or a `path label` list file")
    p.add_argument(
        "--root", default=None, help="base folder of relative paths in a list (default: its folder)"
    )
    p.add_argument(
        "--frames", type=bounded_int(1), default=4, help="frames to decode at the start (default: 4)"
    )
    p.add_argument("--workers", type=bounded_int(0), default=None, help="processes (default: all CPUs)")
    p.add_argument(
        "--bad",
        default=None,
        help="CSV of bad files (path,error), always written (default: beside the target, not inside a "
        "folder target: <folder>_bad_videos.csv next to the folder, <list stem>_bad_videos.csv next to "
        "a list)",
    )
    p.add_argument("--clean-csv", default=None, help="with a list target: write it without the bad rows here")
    args = p.parse_args(argv)
    target = Path(args.target)
    if not target.exists():
        p.error(f"{target} does not exist")
    if args.clean_csv and not target.is_file():
        p.error("--clean-csv needs a list file as target")
    if args.root and not target.is_file():
        p.error("--root is for a list file target (a folder target is its own root)")
    bad_csv = Path(args.bad) if args.bad else default_bad_csv(target)
    for flag, path in (("--bad", bad_csv), ("--clean-csv", args.clean_csv)):
        if path and (problem := output_path_problem(path)):
            p.error(f"{flag}: {problem}")
    if target.is_dir():
        base = target
        paths = find_videos(target)
        if not paths:
            p.error(f"no video files under {target} (extensions: {' '.join(VIDEO_EXTENSIONS)})")
        print(f"{len(paths)} video files found under {target}", file=sys.stderr)
    else:
        base = Path(args.root) if args.root else target.parent
        if why := folder_problem(base):
            p.error(f"--root {base} {why}")
        try:
            rows = read_list(target)
        except (OSError, ValueError) as e:  # e.g. a comma-separated or binary file: one line, not a traceback
            message = str(e) if str(target) in str(e) else f"{target}: not a `path label` list ({e})"
            p.exit(2, f"{p.prog}: error: {message}\n")
        if not rows:
            p.error(f"{target} lists no files (expected one `path label` per line)")
        paths = [base / path for path, _ in rows]
        missing = [q for q in paths if not os.path.isfile(q)]
        if len(missing) == len(paths):
            against = f"--root {base}" if args.root else f"the list's folder {base}, unless --root is given"
            p.error(
                f"none of the {len(paths)} files listed in {target} exists (first: {missing[0]}); relative "
                f"paths are resolved against {against}"
            )
        print(f"{len(paths)} files listed in {target} (relative to {base})", file=sys.stderr)
    checks = verify_videos(paths, num_frames=args.frames, workers=args.workers)
    bad = [c for c in checks if not c.ok]
    print(f"{len(checks)} files checked: {len(checks) - len(bad)} ok, {len(bad)} bad", file=sys.stderr)
    for reason, n in Counter(c.error.split(":")[0] for c in bad).most_common(10):
        print(f"  {n:6d}  {reason}", file=sys.stderr)
    for c in bad[:2]:
        print(f"  e.g. {c.path}: {c.error}", file=sys.stderr)
    write_rows_csv(bad_csv, ("path", "error"), [(c.path, c.error) for c in bad])
    print(f"{len(bad)} bad files listed in {bad_csv}", file=sys.stderr)
    if args.clean_csv:
        removed = write_clean_csv(target, args.clean_csv, [c.path for c in bad], root=str(base))
        print(f"wrote {args.clean_csv} ({removed} rows removed)", file=sys.stderr)
    elif bad and target.is_file():
        print("(--clean-csv writes the list without them)", file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(run_script(main, "no list of bad files was written; rerun the same command"))
