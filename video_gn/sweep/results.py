"""Bookkeeping of a sweep's results: each run's logged metrics read back, and ``runs.csv`` appended to and read.

Rows are appended one write per run and fsync'ed, so an interrupted sweep leaves whole lines and resumes.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

VAL_METRICS = ("val/clip_top1", "val/clip_top5", "val/video_top1", "val/video_top5")
#: Also read from each run's log: training top-1 of the last finished epoch (how well the run fit its data).
TRAIN_METRIC = "train/top1"
#: ... and, on GPUs, the CUDA allocator's peak of the last finished epoch (largest over ranks), MiB.
GPU_PEAK_METRIC = "train/gpu_peak_mib"

CSV_FIELDS = [
    "run_id", "experiment", "norm", "batch", "frames", "sampling_rate", "devices", "global_batch", "seed",
    "clips", "max_steps", "clip_top1", "clip_top5", "video_top1", "video_top5", "val_loss", "wall_s",
    "peak_rss_mib", "status", "run_dir", "finished_at", "train_top1", "peak_gpu_mib", "config", "setup",
]  # fmt: skip


def _csv_header(path: Path) -> list[str]:
    with path.open() as f:
        return f.readline().strip().split(",")


def newest_metrics_csv(run_dir: str | os.PathLike, *, training: bool = False) -> Path:
    """The CSV logger's file of a run's newest version: ``<run_dir>/logs/version_<highest>/metrics.csv``.

    With ``training``, the newest version that logged training (a ``train/*`` column): ``video-gn validate``
    and ``test`` add versions of their own to the run's ``logs/``.
    """

    def order(path: Path) -> tuple[int, float]:  # version number (non-numeric names first), then age
        number = path.parent.name.rpartition("_")[2]
        return (int(number) if number.isdigit() else -1, path.stat().st_mtime)

    found = sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=order)
    if training:
        found = [f for f in found if any(c.startswith("train/") for c in _csv_header(f))]
    if not found:
        what = "training logs" if training else "CSV logs"
        raise FileNotFoundError(f"No {what} under {run_dir}/logs/version_*/metrics.csv; did the run log?")
    return found[-1]


def read_val_metrics(run_dir: str | os.PathLike) -> dict[str, float]:
    """Last logged value of each validation metric (and of the epoch's training top-1) in
    ``<run_dir>/logs/version_*/metrics.csv`` (newest version).

    Args:
        run_dir: the run's ``trainer.default_root_dir``.

    Returns:
        ``{"val/clip_top1": ..., "val/video_top1": ..., "val/loss": ..., "train/top1": ...}`` for the metrics found.
    """
    out: dict[str, float] = {}
    with newest_metrics_csv(run_dir).open(newline="") as f:
        for row in csv.DictReader(f):
            for key in (*VAL_METRICS, "val/loss", TRAIN_METRIC, GPU_PEAK_METRIC):
                if row.get(key) not in (None, ""):
                    out[key] = float(row[key])
    return out


def append_row(csv_path: Path, row: dict) -> None:
    """Append one row to the results CSV (header first if new), flushed and fsync'ed.

    A CSV written by an older version with other columns is first rewritten with today's header.
    """
    new = not csv_path.exists() or csv_path.stat().st_size == 0
    buf = []
    if not new:
        with csv_path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != CSV_FIELDS:
            rewrite_rows(csv_path, read_rows(csv_path))
        with csv_path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn last line (a crash mid-write): end it, or this row would join it
                buf.append("")
    if new:
        buf.append(",".join(CSV_FIELDS))
    line = _csv_line([row.get(k, "") for k in CSV_FIELDS])
    buf.append(line)
    with csv_path.open("a", newline="") as f:
        f.write("\n".join(buf) + "\n")  # one write per run: a crash leaves whole lines
        f.flush()
        os.fsync(f.fileno())


def rewrite_rows(csv_path: Path, rows: list[dict]) -> None:
    """Replace the results CSV by ``rows`` under today's header (atomically: temp file, then rename)."""
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    lines = [",".join(CSV_FIELDS)] + [_csv_line([r.get(k, "") for k in CSV_FIELDS]) for r in rows]
    with tmp.open("w", newline="") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, csv_path)


def backfill_train_top1(csv_path: Path) -> int:
    """Fill ``train_top1`` of rows written before that column existed, from their run's logs where they still
    exist; rewrite the CSV if any changed. Returns how many rows were filled."""
    rows = read_rows(csv_path)
    filled = 0
    for r in rows:
        if r.get("status") == "ok" and not r.get("train_top1") and r.get("run_dir"):
            try:
                value = read_val_metrics(r["run_dir"]).get(TRAIN_METRIC)
            except FileNotFoundError:
                continue
            if value is not None:
                r["train_top1"] = value
                filled += 1
    if filled:
        rewrite_rows(csv_path, rows)
    return filled


def _csv_line(values: list) -> str:
    import io

    s = io.StringIO()
    csv.writer(s, lineterminator="").writerow(["" if v is None else v for v in values])
    return s.getvalue()


def read_rows(csv_path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV (an absent file gives no rows; a torn line, with fewer or more fields than the
    header, is ignored)."""
    path = Path(csv_path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r.get("finished_at") and None not in r and None not in r.values()]
