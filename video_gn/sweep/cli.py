"""``video-gn sweep`` command line: a grid file and/or flags merged into a spec, then run and report."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from video_gn.argparsing import CommandParser
from video_gn.sweep.grid import Cell, SweepSpec, _int_list, expand_grid, load_spec, parse_norm
from video_gn.sweep.report import write_reports
from video_gn.sweep.results import read_rows
from video_gn.sweep.run import run_sweep


def build_parser() -> argparse.ArgumentParser:
    """The ``video-gn sweep`` argument parser."""
    p = CommandParser(
        prog="video-gn sweep",
        description="Train a grid of norms x per-device batch x clip length x seeds at a fixed number of "
        "training clips (each run a `video-gn fit` subprocess, validated at its last step); resumable; "
        "writes runs.csv, summary.md (mean ± std over seeds) and accuracy plots.",
        epilog="Extra `video-gn fit` overrides for every run go after `--`, e.g. -- --data.crop_size=48",
    )
    p.add_argument(
        "-g", "-c", "--grid", "--config", dest="grid",
        help="grid YAML (configs/sweep/*.yaml); the flags below restrict it",
    )  # fmt: skip
    p.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    p.add_argument("--base", help="base `video-gn fit` config(s), comma-separated, applied in order")
    p.add_argument("--norms", help="comma-separated norms, e.g. bn,gn,gn+ws (crossed with --batch/--frames)")
    p.add_argument("--batch", help="comma-separated per-device batch sizes")
    p.add_argument("--frames", help="comma-separated clip lengths")
    p.add_argument("--clips", type=_positive(int), help="training clips seen per run")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1")
    p.add_argument("--devices", type=_positive(int), help="devices per run (DDP when > 1)")
    p.add_argument("--span", type=_positive(int), help="sampling_rate = span // frames")
    p.add_argument("--timeout", type=_positive(float), help="kill a run after this many seconds")
    p.add_argument(
        "--threads",
        type=_positive(int),
        help="CPU threads per run (sets OMP_NUM_THREADS; 1 is fastest on a busy machine)",
    )
    p.add_argument("--max-runs", type=_positive(int), help="run at most this many runs now (resume later)")
    p.add_argument("--dry-run", action="store_true", help="print the `video-gn fit` commands and exit")
    p.add_argument(
        "--report-only", action="store_true", help="only rebuild summary.md and plots from runs.csv"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--accept-config-change",
        action="store_true",
        help="resume although a base config file changed since the sweep started",
    )
    return p


def _positive(kind: type):
    """An argparse type: a number > 0 (argparse names the option and exits with status 2 otherwise)."""

    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's message for a non-number: "invalid int value: 'x'"
    return parse


def _split_ints(text: str, what: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be a comma-separated list of ints, got {text!r}.") from None
    return _int_list(values, what, minimum)


def _restrict_cells(cells: list[Cell], args: argparse.Namespace) -> list[Cell]:
    """Apply --norms / --batch / --frames / --span to a grid file's cells, keeping its (B, T) pairing.

    ``--batch`` and ``--frames`` select among the grid's (B, T) pairs (a zipped fixed-budget grid stays
    zipped); ``--norms`` runs those pairs with the given norms; ``--span`` recomputes each sampling rate.
    """
    for flag, attr in (("batch", "batch"), ("frames", "frames")):
        text = getattr(args, flag)
        if not text:
            continue
        wanted = _split_ints(text, f"--{flag}")
        have = sorted({getattr(c, attr) for c in cells})
        missing = [v for v in wanted if v not in have]
        if missing:
            raise ValueError(
                f"--{flag} {missing} is not in the grid file's values {have}; edit the grid file, or drop "
                f"--grid and give --base/--clips/--norms/--batch/--frames for a crossed grid."
            )
        cells = [c for c in cells if getattr(c, attr) in wanted]
    norms = [parse_norm(n) for n in args.norms.split(",")] if args.norms else None
    out: dict[Cell, Cell] = {}
    for cell in cells:
        rate = cell.sampling_rate
        if args.span is not None:
            if cell.frames > args.span:
                raise ValueError(
                    f"frames {cell.frames} is longer than --span {args.span}; raise it or drop that T."
                )
            rate = max(1, args.span // cell.frames)
        for norm in norms or [cell.norm]:
            new = Cell(norm, cell.batch, cell.frames, rate, cell.experiments)
            out.setdefault(new, new)
    return list(out.values())


def spec_from_args(args: argparse.Namespace, extra: list[str]) -> SweepSpec:
    """Merge a grid file (if any) with command-line flags into a :class:`SweepSpec`."""
    if args.grid:
        spec = load_spec(args.grid)
    else:
        if not (args.base and args.clips and args.norms and args.batch and args.frames):
            raise ValueError("Without --grid, give --base, --clips, --norms, --batch and --frames.")
        spec = SweepSpec(base=[], clips=args.clips, seeds=[0], devices=1, cells=[])
    if args.grid:
        spec.cells = _restrict_cells(spec.cells, args)
    elif args.norms or args.batch or args.frames or args.span:
        grid = {"norms": args.norms.split(","), "batch": _split_ints(args.batch, "--batch")}
        grid["frames"] = _split_ints(args.frames, "--frames")
        spec.cells = expand_grid({"cli": grid}, args.span)
    if args.base:
        spec.base = [b for b in args.base.split(",") if b]
    if args.clips is not None:
        spec.clips = args.clips
    if args.seeds:
        spec.seeds = _split_ints(args.seeds, "--seeds", minimum=0)
    if args.devices is not None:
        spec.devices = args.devices
    spec.overrides = spec.overrides + extra
    for base in spec.base:
        if not Path(base).is_file():
            raise FileNotFoundError(
                f"Base config {base!r} does not exist (relative paths are from {os.getcwd()})."
            )
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``video-gn sweep``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    out = Path(args.out)

    def stop(signum, _frame):  # SIGTERM (kill, a scheduler's time limit): unwind, killing the current run
        raise SystemExit(128 + signum)

    previous = (
        signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return _main(args, extra, out)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args, extra: list[str], out: Path) -> int:
    try:
        if not args.report_only:
            spec = spec_from_args(args, extra)
            if not (args.no_plots or args.dry_run):  # fail now, not after the sweep's hours of training
                try:
                    import matplotlib  # noqa: F401
                except ImportError:
                    raise ImportError(
                        "Plots need matplotlib: pip install 'video_gn[plot]', or pass --no-plots (the plots can "
                        "be made later with --report-only)."
                    ) from None
            run_sweep(
                spec,
                out,
                timeout=args.timeout,
                max_runs=args.max_runs,
                dry_run=args.dry_run,
                threads=args.threads,
                accept_config_change=args.accept_config_change,
            )
            if args.dry_run:
                return 0
        if not (out / "runs.csv").exists():
            raise FileNotFoundError(f"No results at {out / 'runs.csv'}; run the sweep first.")
        print(write_reports(out / "runs.csv", out, plots=not args.no_plots), end="")
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"video-gn sweep: error: {err}", file=sys.stderr)
        return 2
    rows = read_rows(out / "runs.csv")
    ok = {r["run_id"] for r in rows if r["status"] == "ok"}
    return 0 if all(r["run_id"] in ok for r in rows) else 1
