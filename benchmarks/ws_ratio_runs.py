"""Is GN+WS's train step within 1.05× GN's? Many fresh runs of ``benchmarks/layers.py``, pooled.

One run of ``layers.py`` gives a paired median ratio whose quartiles are tight, but a second run of the same code
can land 2-3 % away: part of the spread is per process (where the allocator puts buffers, which pages are huge,
how the two OpenMP threads are placed), and no number of rounds inside one process averages it out. This script
starts ``--runs`` fresh processes of::

    python benchmarks/layers.py --variants gn gn_ws --rounds R --skip-memory --skip-inference

(other ``--variants`` can be passed, e.g. the issue's ``bn gn gn_ws``), keeps each run's output under ``--out``
(a run already there is not repeated, so an interrupted series resumes), and prints:

* per run: the median over its rounds of (GN+WS time / GN time in the same round), and the machine load;
* pooled: the median of every round's ratio, with a 95 % interval from resampling whole runs (a cluster
  bootstrap: rounds of one process are not independent of each other);
* how many runs have their median at or under ``--target``.

Usage::

    python benchmarks/ws_ratio_runs.py --runs 10 --rounds 30 --out docs/results/bench/ws_ratio_runs
    python benchmarks/ws_ratio_runs.py --out docs/results/bench/ws_ratio_runs --summary-only   # re-print
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

from interleave import paired_ratios, round_ratios  # benchmarks/interleave.py, beside this file (no torch)

HERE = Path(__file__).resolve().parent
RAW_PREFIX = "raw wall s: "


def run_once(path: Path, variants: list[str], rounds: int, threads: int) -> None:
    """Run ``layers.py`` once in a fresh process; write its output to ``path`` only when it completed."""
    cmd = [sys.executable, str(HERE / "layers.py"), "--variants", *variants, "--rounds", str(rounds)]
    cmd += ["--threads", str(threads), "--skip-memory", "--skip-inference"]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or RAW_PREFIX not in proc.stdout:
        raise SystemExit(
            f"ws_ratio_runs: {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"# command: {' '.join(cmd[1:])}\n# load average at start: {load:.2f}\n{proc.stdout}")
    tmp.replace(path)


def read_run(path: Path) -> tuple[dict[str, list[float]], float]:
    """(wall times per variant, load average at start) of one saved run."""
    load, times = float("nan"), None
    for line in path.read_text().splitlines():
        if line.startswith("# load average at start: "):
            load = float(line.rsplit(" ", 1)[1])
        elif line.startswith(RAW_PREFIX):
            times = json.loads(line[len(RAW_PREFIX) :])
    if times is None:
        raise SystemExit(f"ws_ratio_runs: {path} has no '{RAW_PREFIX}' line; delete it and run again")
    return times, load


def cluster_bootstrap(runs: list[list[float]], draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of the pooled median when whole runs are resampled with replacement."""
    rng = random.Random(seed)
    medians = sorted(
        statistics.median([r for run in rng.choices(runs, k=len(runs)) for r in run]) for _ in range(draws)
    )
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="fresh layers.py processes (default 10)")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds per run (default 30)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["gn", "gn_ws"], help="layers.py variants; must hold gn")
    p.add_argument("--variant", default="gn_ws", help="the variant compared with GN (default gn_ws)")
    p.add_argument("--target", type=float, default=1.05)
    p.add_argument("--out", type=Path, required=True, help="folder for the runs' raw outputs (resumable)")
    p.add_argument("--summary-only", action="store_true", help="only summarise the runs already in --out")
    args = p.parse_args()
    if args.rounds < 2:
        raise SystemExit(f"ws_ratio_runs: --rounds must be at least 2 (quartiles per run), got {args.rounds}")
    if "gn" not in args.variants or args.variant not in args.variants:
        raise SystemExit(f"ws_ratio_runs: --variants {args.variants} must include gn and {args.variant}")

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for i in range(args.runs):
            path = args.out / f"run_{i:02d}.txt"
            if path.exists():
                continue
            run_once(path, args.variants, args.rounds, args.threads)
            times, load = read_run(path)
            ratio = paired_ratios(times, "gn")[args.variant][0]
            print(f"run {i + 1}/{args.runs}: {args.variant} × GN {ratio:.3f} (load {load:.2f})", flush=True)

    paths = sorted(args.out.glob("run_*.txt"))
    if not paths:
        raise SystemExit(f"ws_ratio_runs: no runs in {args.out}")
    runs, per_run, loads, gn_steps = [], [], [], []
    for path in paths:
        times, load = read_run(path)
        runs.append(round_ratios(times, args.variant, "gn"))
        per_run.append(paired_ratios(times, "gn")[args.variant])  # (median, q1, q3), as layers.py printed it
        loads.append(load)
        gn_steps.append(statistics.median(times["gn"]))

    print(f"\n{args.variant} step time / GN step time in the same round; {len(runs)} runs from {args.out}\n")
    print("| run | rounds | load at start | GN median step s | median ratio | quartiles |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for path, ratios, (median, q1, q3), load, step in zip(paths, runs, per_run, loads, gn_steps, strict=True):
        print(
            f"| {path.stem} | {len(ratios)} | {load:.2f} | {step:.3f} | {median:.3f} | [{q1:.3f}, {q3:.3f}] |"
        )
    medians = sorted(median for median, _, _ in per_run)
    pooled = statistics.median([r for run in runs for r in run])
    lo, hi = cluster_bootstrap(runs)
    under = sum(m <= args.target for m in medians)
    print(
        f"\npooled median over {sum(map(len, runs))} rounds: {pooled:.3f} "
        f"(95 % interval, runs resampled: [{lo:.3f}, {hi:.3f}])"
    )
    print(
        f"median of the run medians: {statistics.median(medians):.3f}; range {medians[0]:.3f}-{medians[-1]:.3f}"
    )
    print(f"runs with median ≤ {args.target}: {under} of {len(runs)}")


if __name__ == "__main__":
    main()
