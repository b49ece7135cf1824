"""Running the sweep: each (cell, seed) is one ``video-gn fit`` subprocess, recorded as one row of ``runs.csv``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from video_gn.runlock import FolderLocked, lock_folder
from video_gn.sweep.grid import Cell, SweepSpec
from video_gn.sweep.results import (
    GPU_PEAK_METRIC,
    TRAIN_METRIC,
    append_row,
    read_rows,
    read_val_metrics,
    rewrite_rows,
)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:8]


def _setup_parts(spec: SweepSpec) -> tuple:
    """What a run's training depends on besides its cell and seed."""
    return (spec.base, spec.clips, spec.devices, spec.overrides)


def _config_parts(spec: SweepSpec, cell: Cell) -> tuple:
    """Everything a run's training depends on except its seed."""
    return (*_setup_parts(spec), cell.norm, cell.batch, cell.frames, cell.sampling_rate)


def run_id(spec: SweepSpec, cell: Cell, seed: int) -> str:
    """Stable id of one run: readable cell fields plus a hash of everything that changes the training."""
    digest = _digest(*_config_parts(spec, cell), seed)
    return f"{cell.norm.replace('+', '')}_b{cell.batch}_t{cell.frames}_s{seed}_{digest}"


def config_id(spec: SweepSpec, cell: Cell) -> str:
    """What a run's training depends on except its seed: rows with the same id are seeds of one configuration."""
    return _digest(*_config_parts(spec, cell))


def setup_id(spec: SweepSpec) -> str:
    """What every cell of one sweep shares (base configs, clips, devices, overrides): the report keeps the
    cells of two set-ups written into one ``--out`` apart (table column, separate plot lines)."""
    return _digest(*_setup_parts(spec))


def max_steps(spec: SweepSpec, cell: Cell) -> int:
    """Optimiser steps so that every run sees ``spec.clips`` training clips: clips // (batch × devices)."""
    return max(1, spec.clips // (cell.batch * spec.devices))


# Options that multiply the clips of an optimiser step beyond batch x devices: max_steps = clips / (batch x
# devices) would then see more clips than `clips`, and the rows would record the wrong budget and global batch.
_STEP_MULTIPLIERS = ("--trainer.accumulate_grad_batches", "--trainer.num_nodes")


def check_cell(spec: SweepSpec, cell: Cell) -> None:
    """Raise ValueError for a cell that cannot run in this sweep."""
    for i, arg in enumerate(spec.overrides):
        key, eq, value = str(arg).partition("=")
        if key in _STEP_MULTIPLIERS:
            value = value if eq else (spec.overrides[i + 1] if i + 1 < len(spec.overrides) else "")
            if value.strip() != "1":
                raise ValueError(
                    f"{key}={value} is not supported in a sweep: every run sees `clips` training clips through "
                    "max_steps = clips / (batch x devices), which this option would multiply; raise `clips` or "
                    "`batch` instead."
                )
    if cell.kind == "syncbn" and spec.devices < 2:
        raise ValueError("norm 'syncbn' only differs from 'bn' under DDP: set devices >= 2 or use 'bn'.")
    global_batch = cell.batch * spec.devices
    if spec.clips % global_batch:  # max_steps rounds down (or up to 1 step): the runs would see other numbers
        raise ValueError(
            f"clips {spec.clips} is not a multiple of batch {cell.batch} x devices {spec.devices} = "
            f"{global_batch}: that run would see {max_steps(spec, cell) * global_batch} clips, not the same "
            "number as the others; choose clips divisible by every global batch of the grid."
        )


def fit_args(spec: SweepSpec, cell: Cell, seed: int, run_dir: Path) -> list[str]:
    """The ``video-gn fit`` arguments of one run (base config, then the cell's overrides)."""
    check_cell(spec, cell)
    steps = max_steps(spec, cell)
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
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with(os.getpid())
        )
        deadline = None if timeout is None else start + timeout
        try:
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
        except BaseException:  # the sweep is stopped (Ctrl-C, SIGTERM): its training must not run on alone
            proc.kill()
            proc.wait()
            log.write("\n[sweep] stopped: the run was killed with the sweep\n")
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def _die_with(parent: int):
    """A ``preexec_fn`` that has Linux kill the run when the sweep dies, even by SIGKILL (which the sweep cannot
    catch to stop it): an orphaned run would go on training into the folder that the next call reruns into."""
    if platform.system() != "Linux":
        return None
    import ctypes

    # Resolved here, in the parent: the child between fork and exec must not import or load anything.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the sweep died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


#: Why a run failed, from the last lines of its log: (text in the log, reason recorded in runs.csv).
_UNKNOWN_OPTION = "unknown option: see its log"
_FAILURE_REASONS = (
    ("[sweep] killed after the", "timeout"),
    ("Non-finite training loss", "non-finite loss"),
    ("OutOfMemoryError", "out of memory"),
    ("out of memory", "out of memory"),
    ("raised before training started", "config error: see its log"),
    ("unrecognized arguments", _UNKNOWN_OPTION),
    ("does not accept option", _UNKNOWN_OPTION),
)


def _log_tail(log_path: Path) -> str:
    """The last 20 kB of a run's log ("" if it cannot be read): where a failing run says why."""
    try:
        with log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 20000))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _last_error_line(log_path: Path) -> str:
    """The last ``error:`` line of a run's log (what `video-gn fit` refused), or ""."""
    lines = _log_tail(log_path).splitlines()
    return next((line.strip() for line in reversed(lines) if "error:" in line), "")


def _failure(code: int, log_path: Path) -> str:
    """The status of a failed run: ``failed(<exit code>)``, with the reason when its log tells it."""
    tail = _log_tail(log_path)
    reason = next((why for text, why in _FAILURE_REASONS if text in tail), None)
    if reason is None and code == -signal.SIGKILL:
        reason = "killed by SIGKILL: out of host memory?"
    return f"failed({code}: {reason})" if reason else f"failed({code})"


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _fill_setup(rows: list[dict], spec: SweepSpec, seeds: list[int], csv_path: Path) -> None:
    """Give rows written before the ``setup`` column existed this sweep's setup id when their run id is one of
    its runs (the run id hashes the same settings), so a resumed older sweep is not split in two set-ups."""
    ours = {run_id(spec, c, s) for c in spec.cells for s in seeds}
    stale = [r for r in rows if not r.get("setup") and r.get("run_id") in ours]
    if stale:
        setup = setup_id(spec)
        for r in stale:
            r["setup"] = setup
        rewrite_rows(csv_path, rows)


BASE_FINGERPRINTS = "base_configs.json"


def check_base_configs_unchanged(spec: SweepSpec, out: Path, *, accept_changes: bool = False) -> None:
    """Refuse to resume a sweep whose base config files changed since it started (rows would mix configs).

    Run ids hash the base configs' paths, not their contents, so an edited base file would otherwise count
    the old runs as done. The first call writes ``<out>/base_configs.json`` (path -> sha1 of the contents),
    for the base configs and the files they include (``config: base.yaml``).
    """
    from video_gn.cli import expand_config_includes  # torch-free

    path = out / BASE_FINGERPRINTS
    files = list(spec.base)
    for b in spec.base:
        files += [f for f in expand_config_includes(["-c", b])[1::2] if Path(f) != Path(b) and f not in files]
    now = {f: hashlib.sha1(Path(f).read_bytes()).hexdigest() for f in files}
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
    lock = None
    if not dry_run:  # a dry run only prints: it creates nothing
        try:
            lock = lock_folder(out, "video-gn sweep")  # a second sweep into `out` would run every cell again
        except FolderLocked as err:
            raise ValueError(f"--out {err}") from err
        check_base_configs_unchanged(spec, out, accept_changes=accept_config_change)
    try:
        return _run_cells(spec, out, timeout, max_runs, dry_run, log, threads)
    finally:
        if lock is not None:
            lock.close()


def _run_cells(
    spec: SweepSpec,
    out: Path,
    timeout: float | None,
    max_runs: int | None,
    dry_run: bool,
    log: bool,
    threads: int | None,
) -> list[dict]:
    csv_path = out / "runs.csv"
    for cell in spec.cells:  # a cell that cannot run fails now, not after the runs before it
        check_cell(spec, cell)
    seeds = list(dict.fromkeys(spec.seeds))  # a seed listed twice is one run, not two with one id
    rows = read_rows(csv_path)
    if not dry_run:
        _fill_setup(rows, spec, seeds, csv_path)
    done = {r["run_id"] for r in rows if r.get("status") == "ok"}
    # Seed-major order: a sweep stopped half-way still has every cell for the first seed(s).
    todo = [(c, s) for s in seeds for c in spec.cells if run_id(spec, c, s) not in done]
    if log:
        total = len(spec.cells) * len(seeds)
        now = "" if max_runs is None or max_runs >= len(todo) else f" ({max_runs} now, --max-runs)"
        print(
            f"[sweep] {total} runs in the grid, {total - len(todo)} already done, {len(todo)} to run{now}",
            flush=True,
        )
    if max_runs is not None:
        todo = todo[:max_runs]
    # ETA: seconds per unit of work (clips seen x frames, what a run's compute grows with) of the runs so far.
    work = [max_steps(spec, c) * c.batch * spec.devices * c.frames for c, _ in todo]
    spent_s = spent_work = 0.0
    written: list[dict] = []
    for i, (cell, seed) in enumerate(todo):
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
        status = "ok" if code == 0 else _failure(code, run_dir / "fit.log")
        if code == 0:
            try:
                metrics = read_val_metrics(run_dir)
            except FileNotFoundError:
                status = "failed(no-logs)"
            if "val/video_top1" not in metrics:
                status = "failed(no-val)"
        gpu_peak = metrics.get(GPU_PEAK_METRIC)  # logged by the model on CUDA only
        row = {
            "run_id": rid,
            "config": config_id(spec, cell),
            "setup": setup_id(spec),
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
            "peak_gpu_mib": None if gpu_peak is None else round(gpu_peak, 1),
            "status": status,
            "run_dir": str(run_dir),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        append_row(csv_path, row)
        written.append(row)
        # An option no run can take (a misspelt override after `--` or key in a base config) fails every run
        # alike; a refused value may be the cell's own (a batch larger than the split), so the sweep goes on.
        if _UNKNOWN_OPTION in status:
            raise ValueError(
                f"run {rid} was refused at start-up: {_last_error_line(run_dir / 'fit.log') or 'see its log'} "
                f"(log: {run_dir / 'fit.log'}). The runs share the base configs and the overrides after `--`, so "
                "the sweep stops here; fix them and run the same command again (finished runs are kept)."
            )
        spent_s, spent_work = spent_s + wall, spent_work + work[i]
        if log:
            acc = row["video_top1"]
            shown = f"video top-1 {acc:.3f}" if acc is not None else f"see {run_dir / 'fit.log'}"
            left = len(todo) - i - 1
            eta = f"; {left} left, ETA {_hms(spent_s / spent_work * sum(work[i + 1 :]))}" if left else ""
            print(
                f"[sweep]   {status} in {wall:.0f} s, peak RSS {rss:.0f} MiB, {shown} "
                f"(elapsed {_hms(spent_s)}{eta})",
                flush=True,
            )
    return written
