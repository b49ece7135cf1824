#!/usr/bin/env python
"""Write `<split>.csv` lists (`<relative path> <label index>`, pytorchvideo convention) and classes.txt
from the folder layout <root>/<split>/<class>/<video>.

Class order: --classes file if given, else an existing <root>/classes.txt, else sorted folder names.

Example:
    python data_scripts/make_filelists.py data/k400 --splits train val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from video_gn.data.prep import make_filelists


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="dataset root")
    p.add_argument("--splits", nargs="+", default=None, help="split folders (default: all)")
    p.add_argument("--out-dir", default=None, help="where to write the lists (default: root)")
    p.add_argument("--classes", default=None, help="file with one class name per line fixing the order")
    args = p.parse_args(argv)
    classes = None
    if args.classes:
        classes = [c.strip() for c in Path(args.classes).read_text().splitlines() if c.strip()]
    written = make_filelists(args.root, splits=args.splits, out_dir=args.out_dir, classes=classes)
    for split, path in written.items():
        n = sum(1 for _ in open(path))
        print(f"{split}: {n} videos -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
