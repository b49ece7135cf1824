"""``video-gn sweep``: a grid of trainings — norms × per-device batch × clip length × seeds — at a fixed budget
of training clips, as in the GN paper's batch-size studies (small batches take more steps, same clips seen).

Each run is one ``video-gn fit`` of a base config with command-line overrides, in its own subprocess (a crash
or an out-of-memory kill loses one run, not the sweep; peak memory is measured per run), validated once at
the last step. The learning rate needs no override: ``model.lr`` is given per 64 clips and
:class:`~video_gn.module.VideoClassifier` scales it with the global batch (linearly by default; put
``--model.lr_scaling=sqrt`` in ``overrides`` for AdamW, see ``configs/sweep/synthetic_batch_sqrt.yaml``).

Results go to ``<out>/runs.csv``, one row appended (and fsync'ed) per finished run, so an interrupted sweep
resumes where it stopped: runs whose id is already in the CSV with status ``ok`` are skipped. Then
``<out>/summary.md`` (mean ± std over seeds) and two PNG plots are written from the CSV.

The grid is a YAML file (see ``configs/sweep/``)::

    base: [configs/quickstart.yaml, configs/sweep/synthetic_base.yaml]  # `video-gn fit -c` configs, in order
    clips: 3200                        # training clips seen by every run
    seeds: [0, 1]
    devices: 1                         # per-node devices (DDP when > 1; syncbn needs > 1)
    span: 64                           # optional: sampling_rate = span // frames (same seconds per clip)
    overrides: ["--data.crop_size=48"]  # applied to every run
    experiments:                       # named sub-grids; their union is run, shared cells once
      batch:   {norms: [bn, gn, gn+ws], batch: [8, 4, 2, 1], frames: [8]}
      budget:  {norms: [bn, gn+ws], batch: [8, 4, 2], frames: [8, 16, 32], zip: true}

A norm is a ``video_gn.nn`` kind, optionally with ``+ws`` for weight-standardized convolutions
(``gn+ws``, ``bn+ws``); without it ``model.ws`` is false.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from video_gn.norm_kinds import NORM_KINDS

VAL_METRICS = ("val/clip_top1", "val/clip_top5", "val/video_top1", "val/video_top5")
#: Also read from each run's log: training top-1 of the last finished epoch (how well the run fit its data).
TRAIN_METRIC = "train/top1"

CSV_FIELDS = [
    "run_id", "experiment", "norm", "batch", "frames", "sampling_rate", "devices", "global_batch", "seed",
    "clips", "max_steps", "clip_top1", "clip_top5", "video_top1", "video_top5", "val_loss", "wall_s",
    "peak_rss_mib", "status", "run_dir", "finished_at", "train_top1",
]  # fmt: skip


# ------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class Cell:
    """One training configuration of the grid (without the seed).

    Attributes:
        norm: norm spec, ``"<kind>"`` or ``"<kind>+ws"``.
        batch: per-device batch size.
        frames: clip length T.
        sampling_rate: frame stride inside the clip (None: the base config's).
        experiments: names of the sub-grids containing this cell.
    """

    norm: str
    batch: int
    frames: int
    sampling_rate: int | None = None
    experiments: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @property
    def kind(self) -> str:
        """The ``model.norm`` value."""
        return self.norm.split("+")[0]

    @property
    def ws(self) -> bool:
        """The ``model.ws`` value."""
        return self.norm.endswith("+ws")


@dataclass
class SweepSpec:
    """A parsed grid file (or command-line equivalent).

    Attributes:
        base: the ``video-gn fit`` configs every run starts from, applied in order (``-c a.yaml -c b.yaml``).
        clips: training clips seen per run (max_steps = clips // (batch × devices)).
        seeds: seeds, one run per cell and seed.
        devices: devices per run (DDP when > 1).
        cells: the configurations.
        overrides: extra ``video-gn fit`` arguments for every run.
    """

    base: list[str]
    clips: int
    seeds: list[int]
    devices: int
    cells: list[Cell]
    overrides: list[str] = field(default_factory=list)


def parse_norm(spec: str) -> str:
    """Validate a norm spec such as ``"gn+ws"`` and return it normalised (lower case, no spaces)."""
    norm = str(spec).strip().lower().replace(" ", "")
    kind, _, suffix = norm.partition("+")
    if kind not in NORM_KINDS or suffix not in ("", "ws"):
        raise ValueError(
            f"Unknown norm {spec!r}; expected one of {NORM_KINDS}, optionally followed by '+ws' (e.g. 'gn+ws')."
        )
    return norm


def _int_list(value: object, what: str, minimum: int = 1) -> list[int]:
    values = value if isinstance(value, list) else [value]
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a list of ints, got {value!r}.") from None
    if not out or any(v < minimum for v in out):
        raise ValueError(f"{what} must be integers >= {minimum}, got {value!r}.")
    return out


def expand_grid(experiments: dict, span: int | None = None) -> list[Cell]:
    """Turn named sub-grids into a de-duplicated list of cells (order kept, experiment names merged).

    Args:
        experiments: ``{name: {"norms": [...], "batch": [...], "frames": [...], "zip": bool}}``; with ``zip``
            batch and frames are paired element-wise (e.g. a fixed B×T budget), otherwise crossed.
        span: if set, each cell's sampling rate is ``span // frames`` (clips cover the same frames span).

    Returns:
        The cells.
    """
    if not isinstance(experiments, dict) or not experiments:
        raise ValueError("The grid needs an 'experiments' mapping of name -> {norms, batch, frames}.")
    cells: dict[Cell, Cell] = {}
    for name, sub in experiments.items():
        if not isinstance(sub, dict) or {"norms", "batch", "frames"} - set(sub):
            raise ValueError(f"Experiment {name!r} must give norms, batch and frames, got {sub!r}.")
        unknown = set(sub) - {"norms", "batch", "frames", "zip"}
        if unknown:
            raise ValueError(
                f"Experiment {name!r} has unknown keys {sorted(unknown)}; allowed: norms, batch, frames, zip."
            )
        norms = [parse_norm(n) for n in (sub["norms"] if isinstance(sub["norms"], list) else [sub["norms"]])]
        batches = _int_list(sub["batch"], f"{name}.batch")
        frames = _int_list(sub["frames"], f"{name}.frames")
        if sub.get("zip"):
            if len(batches) != len(frames):
                raise ValueError(
                    f"Experiment {name!r} has zip: true but {len(batches)} batches and {len(frames)} frames."
                )
            pairs = list(zip(batches, frames))
        else:
            pairs = [(b, t) for b in batches for t in frames]
        for norm in norms:
            for b, t in pairs:
                rate = None
                if span is not None:
                    if t > span:
                        raise ValueError(f"frames {t} is longer than span {span}; raise span or drop that T.")
                    rate = max(1, span // t)
                cell = Cell(norm, b, t, rate)
                old = cells.get(cell)
                names = (old.experiments if old else ()) + (name,)
                cells[cell] = Cell(norm, b, t, rate, tuple(dict.fromkeys(names)))
    return list(cells.values())


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a sweep grid YAML file (format in the module docstring).

    Args:
        path: the YAML file.

    Returns:
        The :class:`SweepSpec`.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Sweep grid file {str(path)!r} does not exist; see configs/sweep/ for examples."
        )
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {"base", "clips", "seeds", "devices", "span", "overrides", "experiments"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}.")
    for key in ("base", "clips", "experiments"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}.")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list):
        raise ValueError(f"{path}: overrides must be a list of 'video-gn fit' arguments, got {overrides!r}.")
    return SweepSpec(
        base=[str(b) for b in (data["base"] if isinstance(data["base"], list) else [data["base"]])],
        clips=_int_list(data["clips"], "clips")[0],
        seeds=_int_list(data.get("seeds", [0]), "seeds", minimum=0),
        devices=_int_list(data.get("devices", 1), "devices")[0],
        cells=expand_grid(data["experiments"], data.get("span")),
        overrides=[str(o) for o in overrides],
    )


# ------------------------------------------------------------------------------------- one run
def run_id(spec: SweepSpec, cell: Cell, seed: int) -> str:
    """Stable id of one run: readable cell fields plus a hash of everything that changes the training."""
    key = json.dumps(
        [spec.base, spec.clips, spec.devices, spec.overrides, cell.norm, cell.batch, cell.frames,
         cell.sampling_rate, seed]
    )  # fmt: skip
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{cell.norm.replace('+', '')}_b{cell.batch}_t{cell.frames}_s{seed}_{digest}"


def max_steps(spec: SweepSpec, cell: Cell) -> int:
    """Optimiser steps so that every run sees ``spec.clips`` training clips: clips // (batch × devices)."""
    return max(1, spec.clips // (cell.batch * spec.devices))


def fit_args(spec: SweepSpec, cell: Cell, seed: int, run_dir: Path) -> list[str]:
    """The ``video-gn fit`` arguments of one run (base config, then the cell's overrides)."""
    steps = max_steps(spec, cell)
    if cell.kind == "syncbn" and spec.devices < 2:
        raise ValueError("norm 'syncbn' only differs from 'bn' under DDP: set devices >= 2 or use 'bn'.")
    args = [
        "fit", *[a for b in spec.base for a in ("-c", b)],
        f"--seed_everything={seed}",
        f"--model.norm={cell.kind}",
        f"--model.ws={str(cell.ws).lower()}",
        f"--data.batch_size={cell.batch}",
        f"--data.num_frames={cell.frames}",
        f"--data.seed={seed}",
        f"--trainer.max_steps={steps}",
        "--trainer.max_epochs=-1",
        # One validation, after the last step: val_check_interval counts steps across epochs.
        "--trainer.check_val_every_n_epoch=null",
        f"--trainer.val_check_interval={steps}",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.devices={spec.devices}",
        f"--trainer.default_root_dir={run_dir}",
    ]  # fmt: skip
    if cell.sampling_rate is not None:
        args.append(f"--data.sampling_rate={cell.sampling_rate}")
    if spec.devices > 1:
        args.append("--trainer.strategy=ddp")
        if cell.kind == "syncbn":
            args.append("--trainer.sync_batchnorm=true")
    return args + list(spec.overrides)


def newest_metrics_csv(run_dir: str | os.PathLike) -> Path:
    """The CSV logger's file of a run's newest version: ``<run_dir>/logs/version_<highest>/metrics.csv``."""

    def order(path: Path) -> tuple[int, float]:  # version number (non-numeric names first), then age
        number = path.parent.name.rpartition("_")[2]
        return (int(number) if number.isdigit() else -1, path.stat().st_mtime)

    found = sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=order)
    if not found:
        raise FileNotFoundError(f"No CSV logs under {run_dir}/logs/version_*/metrics.csv; did the run log?")
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
            for key in (*VAL_METRICS, "val/loss", TRAIN_METRIC):
                if row.get(key) not in (None, ""):
                    out[key] = float(row[key])
    return out


def _run_subprocess(
    args: list[str], log_path: Path, timeout: float | None, threads: int | None = None
) -> tuple[int, float, float]:
    """Run ``python -m video_gn.cli ARGS`` with output to ``log_path``; (returncode, wall s, peak RSS MiB)."""
    cmd = [sys.executable, "-m", "video_gn.cli", *args]
    env = dict(os.environ)
    if threads is not None:
        # OpenMP threads spin while they wait: on an oversubscribed machine one thread per run is faster.
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = None if timeout is None else start + timeout
        while True:
            # wait4 gives this child's own rusage (its peak RSS, or its children's if larger).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                log.write(f"\n[sweep] killed after the {timeout:.0f} s timeout\n")
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def append_row(csv_path: Path, row: dict) -> None:
    """Append one row to the results CSV (header first if new), flushed and fsync'ed.

    A CSV written by an older version with other columns is first rewritten with today's header.
    """
    new = not csv_path.exists() or csv_path.stat().st_size == 0
    if not new:
        with csv_path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != CSV_FIELDS:
            rewrite_rows(csv_path, read_rows(csv_path))
    buf = []
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
    """Rows of a results CSV (an absent file gives no rows; a torn last line is ignored)."""
    path = Path(csv_path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r.get("finished_at")]


BASE_FINGERPRINTS = "base_configs.json"


def check_base_configs_unchanged(spec: SweepSpec, out: Path, *, accept_changes: bool = False) -> None:
    """Refuse to resume a sweep whose base config files changed since it started (rows would mix configs).

    Run ids hash the base configs' paths, not their contents, so an edited base file would otherwise count
    the old runs as done. The first call writes ``<out>/base_configs.json`` (path -> sha1 of the contents).
    """
    path = out / BASE_FINGERPRINTS
    now = {b: hashlib.sha1(Path(b).read_bytes()).hexdigest() for b in spec.base}
    before = json.loads(path.read_text()) if path.exists() else {}
    changed = [b for b in now if b in before and before[b] != now[b]]
    if changed and not accept_changes:
        raise ValueError(
            f"Base config(s) {changed} changed since this sweep started in {out}: the finished runs used the "
            "old contents, so resuming would mix configurations. Use a new --out, restore the files, or pass "
            "--accept-config-change to go on anyway."
        )
    if now != before:
        path.write_text(json.dumps({**before, **now}, indent=1) + "\n")


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    timeout: float | None = None,
    max_runs: int | None = None,
    dry_run: bool = False,
    log: bool = True,
    threads: int | None = None,
    accept_config_change: bool = False,
) -> list[dict]:
    """Run every (cell, seed) not already finished in ``<out>/runs.csv``; append one row per run.

    Args:
        spec: the grid.
        out: output folder (runs/<run_id>/ with logs, runs.csv, summary.md, plots).
        timeout: seconds after which a run is killed (recorded as failed).
        max_runs: stop after starting this many runs (the rest on the next call).
        dry_run: print the commands instead of running them.
        log: print progress.
        threads: CPU threads per run (OMP_NUM_THREADS); None keeps torch's default.
        accept_config_change: go on although a base config's contents changed since the sweep started.

    Returns:
        The rows written by this call.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "runs.csv"
    if not dry_run:
        check_base_configs_unchanged(spec, out, accept_changes=accept_config_change)
    done = {r["run_id"] for r in read_rows(csv_path) if r.get("status") == "ok"}
    # Seed-major order: a sweep stopped half-way still has every cell for the first seed(s).
    todo = [(c, s) for s in spec.seeds for c in spec.cells if run_id(spec, c, s) not in done]
    if log:
        total = len(spec.cells) * len(spec.seeds)
        print(
            f"[sweep] {total} runs in the grid, {total - len(todo)} already done, {len(todo)} to run",
            flush=True,
        )
    written: list[dict] = []
    for i, (cell, seed) in enumerate(todo):
        if max_runs is not None and i >= max_runs:
            break
        rid = run_id(spec, cell, seed)
        run_dir = out / "runs" / rid
        args = fit_args(spec, cell, seed, run_dir)
        if dry_run:
            print("video-gn " + " ".join(args))
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        if log:
            print(f"[sweep] ({i + 1}/{len(todo)}) {rid}: {max_steps(spec, cell)} steps ...", flush=True)
        code, wall, rss = _run_subprocess(args, run_dir / "fit.log", timeout, threads)
        metrics: dict[str, float] = {}
        status = "ok" if code == 0 else f"failed({code})"
        if code == 0:
            try:
                metrics = read_val_metrics(run_dir)
            except FileNotFoundError:
                status = "failed(no-logs)"
            if "val/video_top1" not in metrics:
                status = "failed(no-val)"
        row = {
            "run_id": rid,
            "experiment": "+".join(cell.experiments),
            "norm": cell.norm,
            "batch": cell.batch,
            "frames": cell.frames,
            "sampling_rate": cell.sampling_rate if cell.sampling_rate is not None else "",
            "devices": spec.devices,
            "global_batch": cell.batch * spec.devices,
            "seed": seed,
            "clips": spec.clips,
            "max_steps": max_steps(spec, cell),
            "clip_top1": metrics.get("val/clip_top1"),
            "clip_top5": metrics.get("val/clip_top5"),
            "video_top1": metrics.get("val/video_top1"),
            "video_top5": metrics.get("val/video_top5"),
            "val_loss": metrics.get("val/loss"),
            "train_top1": metrics.get(TRAIN_METRIC),
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(rss, 1),
            "status": status,
            "run_dir": str(run_dir),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        append_row(csv_path, row)
        written.append(row)
        if log:
            acc = row["video_top1"]
            shown = f"video top-1 {acc:.3f}" if acc is not None else f"see {run_dir / 'fit.log'}"
            print(f"[sweep]   {status} in {wall:.0f} s, peak RSS {rss:.0f} MiB, {shown}", flush=True)
    return written


# ------------------------------------------------------------------------------------- reports
def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict]) -> list[dict]:
    """Group ``ok`` rows by (norm, batch, frames, sampling rate, clips, devices): mean and std over seeds.

    The latest row of a run id wins (a re-run replaces an earlier one).

    Args:
        rows: rows of ``runs.csv``.

    Returns:
        One dict per cell with ``n``, ``<metric>_mean`` and ``<metric>_std`` (metrics in percent), ``wall_s``
        and ``peak_rss_mib`` means.
    """
    latest = {r["run_id"]: r for r in rows if r.get("status") == "ok"}
    groups: dict[tuple, list[dict]] = {}
    for r in latest.values():
        key = (
            r["norm"],
            int(r["batch"]),
            int(r["frames"]),
            r.get("sampling_rate", ""),
            r.get("clips", ""),
            r.get("devices", ""),
        )
        groups.setdefault(key, []).append(r)
    out = []
    for (norm, batch, frames, rate, clips, devices), rs in groups.items():
        g = {"norm": norm, "batch": batch, "frames": frames, "sampling_rate": rate, "n": len(rs),
             "clips": clips, "devices": devices,
             "experiment": rs[0].get("experiment", ""), "seeds": sorted(int(r["seed"]) for r in rs)}  # fmt: skip
        for m in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
            g[f"{m}_mean"], g[f"{m}_std"] = _mean_std([100 * float(r[m]) for r in rs])
        train = [100 * float(r["train_top1"]) for r in rs if r.get("train_top1") not in (None, "")]
        g["train_top1_mean"], g["train_top1_std"] = (
            _mean_std(train) if len(train) == len(rs) else (None, None)
        )
        g["wall_s"] = statistics.fmean(float(r["wall_s"]) for r in rs)
        g["peak_rss_mib"] = statistics.fmean(float(r["peak_rss_mib"]) for r in rs)
        out.append(g)
    order = {n: i for i, n in enumerate(("bn", "syncbn", "frozen_bn", "gn", "gn+ws", "bn+ws"))}
    out.sort(key=lambda g: (order.get(g["norm"], 99), g["norm"], -g["batch"], g["frames"], str(g["clips"])))
    return out


def markdown_table(groups: list[dict]) -> str:
    """A markdown table, one line per cell: mean ± std over seeds (percent), time and memory.

    "train top-1" is the training accuracy of each run's last finished epoch (train mode, augmented clips):
    with the validation accuracy it tells under-fitting from over-fitting.
    """
    # Rows trained on different budgets (clips seen) or device counts are separate cells; show those columns
    # only when a folder mixes them.
    extra = [k for k in ("clips", "devices") if len({str(g.get(k, "")) for g in groups}) > 1]
    lines = [
        "| norm | batch | frames | rate | "
        + "".join(f"{k} | " for k in extra)
        + "seeds | video top-1 | video top-5 | clip top-1 | clip top-5 | train top-1 | time/run (s) | "
        "peak RSS (MiB) |",
        "|---|--:|--:|--:|" + "--:|" * len(extra) + "--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for g in groups:
        cells = [
            f"{g[m + '_mean']:.1f} ± {g[m + '_std']:.1f}" if g.get(m + "_mean") is not None else "-"
            for m in ("video_top1", "video_top5", "clip_top1", "clip_top5", "train_top1")
        ]
        lines.append(
            f"| {g['norm']} | {g['batch']} | {g['frames']} | {g['sampling_rate'] or '-'} | "
            + "".join(f"{g.get(k, '')} | " for k in extra)
            + f"{g['n']} | "
            + " | ".join(cells)
            + f" | {g['wall_s']:.0f} | {g['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _most_common(values: list) -> object:
    return max(set(values), key=lambda v: (values.count(v), v)) if values else None


def plot_groups(groups: list[dict], out: str | os.PathLike, metric: str = "video_top1") -> list[Path]:
    """Write ``acc_vs_batch.png`` (at the most common clip length) and ``acc_vs_frames.png`` (at the most common
    B×T product with several clip lengths), one line per norm with ± std error bars.

    Args:
        groups: output of :func:`aggregate`.
        out: folder for the PNGs.
        metric: which accuracy to plot.

    Returns:
        The PNG paths written (a plot with fewer than two x values is skipped).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install 'video_gn[plot]' (or pass --no-plots)."
        ) from None
    out = Path(out)
    written = []
    norms = list(dict.fromkeys(g["norm"] for g in groups))
    label = metric.replace("_", " ").replace("top1", "top-1").replace("top5", "top-5")

    def draw(
        selected: list[dict], x_key: str, name: str, xlabel: str, title: str, annotate: str | None
    ) -> None:
        if len({g[x_key] for g in selected}) < 2:
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        for norm in norms:
            pts = sorted(
                (g[x_key], g[f"{metric}_mean"], g[f"{metric}_std"], g) for g in selected if g["norm"] == norm
            )
            pts = [p for p in pts]
            if not pts:
                continue
            xs, ys, es, gs = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=norm)
            if annotate:
                for x, y, g in zip(xs, ys, gs):
                    ax.annotate(
                        f"{annotate}={g[annotate]}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                    )
        ax.set_xscale("log", base=2)
        xs_all = sorted({g[x_key] for g in selected})
        ax.set_xticks(xs_all, [str(x) for x in xs_all])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"val {label} (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # Accuracy vs batch: cells at the clip length shared by the most batch sizes.
    by_t = {t: {g["batch"] for g in groups if g["frames"] == t} for t in {g["frames"] for g in groups}}
    if by_t:
        t_best = max(by_t, key=lambda t: (len(by_t[t]), -t))
        sel = [g for g in groups if g["frames"] == t_best]
        draw(
            sel,
            "batch",
            "acc_vs_batch.png",
            "per-device batch (clips)",
            f"accuracy vs batch, T={t_best}",
            None,
        )
    # Accuracy vs frames: cells at the B×T product shared by the most clip lengths.
    by_bt: dict[int, set] = {}
    for g in groups:
        by_bt.setdefault(g["batch"] * g["frames"], set()).add(g["frames"])
    if by_bt:
        bt_best = max(by_bt, key=lambda p: (len(by_bt[p]), p))
        sel = [g for g in groups if g["batch"] * g["frames"] == bt_best]
        draw(
            sel,
            "frames",
            "acc_vs_frames.png",
            "frames per clip (T)",
            f"accuracy vs clip length, B×T={bt_best}",
            "batch",
        )
    return written


def write_reports(csv_path: str | os.PathLike, out: str | os.PathLike, *, plots: bool = True) -> str:
    """Write ``summary.md`` (and the PNGs) into ``out`` from a results CSV; return the markdown table.

    Args:
        csv_path: ``runs.csv`` of a sweep.
        out: output folder.
        plots: also write the PNG plots (needs matplotlib).

    Returns:
        The markdown table.
    """
    backfill_train_top1(Path(csv_path))
    rows = read_rows(csv_path)
    groups = aggregate(rows)
    table = markdown_table(groups)
    failed = [r for r in rows if r.get("status") != "ok"]
    text = table
    if failed:
        ids = {r["run_id"] for r in rows if r.get("status") == "ok"}
        pending = sorted({r["run_id"] for r in failed} - ids)
        if pending:
            text += f"\nFailed runs (see runs/<id>/fit.log): {', '.join(pending)}\n"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    if plots and groups:
        plot_groups(groups, out)
    return text


# ------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``video-gn sweep`` argument parser."""
    p = argparse.ArgumentParser(
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
    p.add_argument("--clips", type=int, help="training clips seen per run")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1")
    p.add_argument("--devices", type=int, help="devices per run (DDP when > 1)")
    p.add_argument("--span", type=int, help="sampling_rate = span // frames")
    p.add_argument("--timeout", type=float, help="kill a run after this many seconds")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads per run (sets OMP_NUM_THREADS; 1 is fastest on a busy machine)",
    )
    p.add_argument("--max-runs", type=int, help="run at most this many runs now (resume later)")
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


def _split_ints(text: str, what: str, minimum: int = 1) -> list[int]:
    return _int_list([v for v in text.split(",") if v.strip()], what, minimum)


def _restrict_cells(cells: list[Cell], args: argparse.Namespace) -> list[Cell]:
    """Apply --norms / --batch / --frames / --span to a grid file's cells, keeping its (B, T) pairing.

    ``--batch`` and ``--frames`` select among the grid's (B, T) pairs (a zipped fixed-budget grid stays
    zipped); ``--norms`` runs those pairs with the given norms; ``--span`` recomputes each sampling rate.
    """
    pairs = list(dict.fromkeys((c.batch, c.frames, c.sampling_rate, c.experiments) for c in cells))
    for flag, index in (("batch", 0), ("frames", 1)):
        text = getattr(args, flag)
        if not text:
            continue
        wanted = _split_ints(text, f"--{flag}")
        have = sorted({p[index] for p in pairs})
        missing = [v for v in wanted if v not in have]
        if missing:
            raise ValueError(
                f"--{flag} {missing} is not in the grid file's values {have}; edit the grid file, or drop "
                f"--grid and give --base/--clips/--norms/--batch/--frames for a crossed grid."
            )
        pairs = [p for p in pairs if p[index] in wanted]
    norms = [parse_norm(n) for n in args.norms.split(",")] if args.norms else None
    out: dict[Cell, Cell] = {}
    for cell in cells:
        for b, t, rate, experiments in pairs:
            if (cell.batch, cell.frames, cell.sampling_rate) != (b, t, rate):
                continue
            if args.span is not None:
                if t > args.span:
                    raise ValueError(
                        f"frames {t} is longer than --span {args.span}; raise it or drop that T."
                    )
                rate = max(1, args.span // t)
            for norm in norms or [cell.norm]:
                new = Cell(norm, b, t, rate, experiments)
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
    if args.clips:
        spec.clips = args.clips
    if args.seeds:
        spec.seeds = _split_ints(args.seeds, "--seeds", minimum=0)
    if args.devices:
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
    try:
        if not args.report_only:
            spec = spec_from_args(args, extra)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
