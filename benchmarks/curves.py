"""Print per-epoch metric curves of several `video-gn fit` runs side by side, as a markdown table.

Reads each run's CSV log (``<run>/logs/version_*/metrics.csv``, the newest version that trained, so a later
``video-gn validate`` into the same folder does not hide the curve) and prints one row per
epoch with the chosen metrics of every run, then the mean of the last ``--last`` epochs and the best epoch.
Used for the inflation result in docs/results.md::

    python benchmarks/curves.py runs/infl_scratch runs/infl_inflated --names scratch,inflated \
        --metrics val/video_top1,train/top1
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from video_gn.sweep import newest_metrics_csv


def metrics_csv(run: Path) -> Path:
    """The newest ``metrics.csv`` under a run folder (or the file itself)."""
    if run.is_file():
        return run
    try:
        return newest_metrics_csv(run, training=True)
    except FileNotFoundError:
        pass
    if run.name == "logs":  # the logs/ folder itself
        try:
            return newest_metrics_csv(run.parent, training=True)
        except FileNotFoundError:
            pass
    raise SystemExit(
        f"No training metrics.csv under {run}: pass a `video-gn fit` run folder (trainer.default_root_dir)."
    )


def per_epoch(path: Path, metric: str) -> dict[int, float]:
    """``{epoch: value}`` of one metric (the last logged value of each epoch)."""
    out: dict[int, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            value, epoch = row.get(metric, ""), row.get("epoch", "")
            if value not in ("", None) and epoch not in ("", None):
                out[int(float(epoch))] = float(value)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders (or metrics.csv files)")
    p.add_argument("--names", help="comma-separated column names (default: folder names)")
    p.add_argument("--metrics", default="val/video_top1", help="comma-separated metric names")
    p.add_argument("--last", type=int, default=5, help="epochs averaged in the summary row")
    args = p.parse_args(argv)
    names = args.names.split(",") if args.names else [r.name for r in args.runs]
    if len(names) != len(args.runs):
        raise SystemExit(f"--names has {len(names)} names for {len(args.runs)} runs.")
    metrics = args.metrics.split(",")
    series = {(n, m): per_epoch(metrics_csv(r), m) for n, r in zip(names, args.runs) for m in metrics}
    if not any(series.values()):
        raise SystemExit(f"None of {metrics} was logged in {[str(r) for r in args.runs]}.")
    epochs = sorted({e for s in series.values() for e in s})
    cols = list(series)
    print("| epoch | " + " | ".join(f"{n}: {m}" for n, m in cols) + " |")
    print("| --: |" + " --: |" * len(cols))
    for e in epochs:
        cells = [f"{series[c][e]:.3f}" if e in series[c] else "" for c in cols]
        print(f"| {e + 1} | " + " | ".join(cells) + " |")

    def summary(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f}" if values else ""

    last = [summary([series[c][e] for e in epochs[-args.last :] if e in series[c]]) for c in cols]
    best = [
        (f"{max(series[c].values()):.3f} (ep {max(series[c], key=series[c].get) + 1})" if series[c] else "")
        for c in cols
    ]
    print(f"| mean of last {args.last} | " + " | ".join(last) + " |")
    print("| best | " + " | ".join(best) + " |")
    if any(math.isnan(v) for s in series.values() for v in s.values()):
        print("\n(NaN values were logged.)")


if __name__ == "__main__":
    main()
