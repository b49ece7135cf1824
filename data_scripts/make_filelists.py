#!/usr/bin/env python
"""Write `<split>.csv` lists (`<relative path> <label index>`, pytorchvideo convention) and classes.txt
from the folder layout <root>/<split>/<class>/<video>.

Class order: --classes file if given, else an existing <root>/classes.txt, else sorted folder names.
Exit status: 0 lists written, 2 bad input (nothing written).

Example:
    python data_scripts/make_filelists.py data/k400 --splits train val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from video_gn.argparsing import CommandParser
from video_gn.data.filelists import make_filelists
from video_gn.data.progress import run_script
from video_gn.data.script_args import folder_problem, output_path_problem


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="dataset root")
    p.add_argument("--splits", nargs="+", default=None, help="split folders (default: all)")
    p.add_argument("--out-dir", default=None, help="where to write the lists (default: root)")
    p.add_argument("--classes", default=None, help="file with one class name per line fixing the order")
    args = p.parse_args(argv)
    root = Path(args.root)
    if why := folder_problem(root):
        p.error(f"dataset root {root} {why}")
    if problem := output_path_problem(args.out_dir or root, directory=True):  # before listing every folder
        p.error(
            f"--out-dir: {problem}" if args.out_dir else f"{problem} (--out-dir writes the lists elsewhere)"
        )
    classes = None
    if args.classes:
        path = Path(args.classes)
        if not path.is_file():
            p.error(f"--classes: {path} {'is not a file' if path.exists() else 'does not exist'}")
        classes = [c.strip() for c in path.read_text(encoding="utf-8-sig").splitlines() if c.strip()]
        if not classes:
            p.error(f"--classes: {path} is empty; write one class name per line")
        order = f"from {path}"
    elif (root / "classes.txt").is_file():
        order = f"from the existing {root / 'classes.txt'}"
    else:
        order = "sorted class folder names"
    try:
        written = make_filelists(
            root, splits=args.splits, out_dir=args.out_dir, classes=classes, classes_from=args.classes
        )
    except (OSError, ValueError) as e:  # bad layout: one line, not a traceback
        p.exit(2, f"{p.prog}: error: {e}\n")
    out_dir = Path(args.out_dir) if args.out_dir else root
    n_classes = sum(
        1 for line in (out_dir / "classes.txt").read_text(encoding="utf-8-sig").splitlines() if line.strip()
    )
    for split, path in written.items():
        with open(path) as f:
            n = sum(1 for _ in f)
        print(f"{split}: {n} videos -> {path}", file=sys.stderr)
    print(f"classes: {n_classes} ({order}) -> {out_dir / 'classes.txt'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "nothing was written; rerun the same command"))
