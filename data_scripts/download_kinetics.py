#!/usr/bin/env python
"""Download Kinetics-400/600/700 clips listed in official annotation CSVs and cut them to their segment.

Writes <out>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4 (H.264, fps kept); resumable (rerun the
same command to continue), failures (and rejected rows) go to a CSV in the input format plus an `error`
column, which can be passed back as input to retry; its path and the first reasons are printed at the end.
Needs yt-dlp (pip install -e '.[download]' or pip install yt-dlp): checked before anything is done.
Exit status: 0 every valid row's clip is present, 1 some clips failed, 2 bad input (nothing was done).

Example:
    python data_scripts/download_kinetics.py kinetics400/train.csv kinetics400/val.csv --out data/k400 \\
        --workers 16 --short-side 320
"""

from __future__ import annotations

import argparse
import sys

from video_gn.argparsing import CommandParser
from video_gn.data.kinetics_download import DownloaderNotFound, download_kinetics
from video_gn.data.progress import run_script
from video_gn.data.script_args import bounded_int, output_path_problem


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+", help="annotation CSV(s): label,youtube_id,time_start,time_end,split")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--split", help="keep only this split (or name the split of CSVs without that column)")
    p.add_argument(
        "--workers", type=bounded_int(0), default=None, help="parallel downloads (default: 2 x CPUs)"
    )
    p.add_argument(
        "--retries",
        type=bounded_int(0),
        default=2,
        help="extra attempts per clip (default: 2); a video reported removed or private is not retried",
    )
    p.add_argument(
        "--retry-wait", type=float, default=5.0, help="seconds before the first retry (default: 5)"
    )
    p.add_argument(
        "--short-side", type=bounded_int(2), default=None, help="also resize clips (e.g. 256 or 320)"
    )
    p.add_argument(
        "--crf", type=bounded_int(0, 51), default=23, help="x264 quality of the cut clips (default: 23)"
    )
    p.add_argument("--failures", default=None, help="failures CSV (default: <out>/failures.csv)")
    p.add_argument("--limit", type=bounded_int(0), default=None, help="process at most N clips")
    args = p.parse_args(argv)
    if not 0 <= args.retry_wait < float("inf"):
        p.error(f"argument --retry-wait: must be a number of seconds >= 0, got {args.retry_wait}")
    problem = output_path_problem(args.out, directory=True)
    if problem:
        p.error(f"--out: {problem}")
    problem = output_path_problem(args.failures) if args.failures else None
    if problem:
        p.error(f"--failures: {problem}")
    try:
        summary = download_kinetics(
            args.csv,
            args.out,
            split=args.split,
            workers=args.workers,
            retries=args.retries,
            retry_wait=args.retry_wait,
            short_side=args.short_side,
            crf=args.crf,
            failures_csv=args.failures,
            limit=args.limit,
        )
    except (DownloaderNotFound, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")  # bad input: one line, not a traceback
    except OSError as e:  # e.g. the disk filled up during the run: finished clips stay, rerun to resume
        p.exit(1, f"{p.prog}: error: {e} (finished clips are kept; rerun the same command to resume)\n")
    print(summary.report(), file=sys.stderr)
    return 0 if not summary.failed else 1


if __name__ == "__main__":
    sys.exit(run_script(main, "finished videos are kept; rerun the same command to resume"))
