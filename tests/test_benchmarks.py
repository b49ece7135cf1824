"""Smoke tests of the benchmark scripts whose inputs come from the library (a library change can break them).

The figures themselves are not checked here (timings belong in docs/benchmarks.md, never in assertions); what
is checked is that the documented commands still run to the end and print their tables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_data_benchmark_runs_every_section_on_a_tiny_setting(tmp_path):
    # The loader section builds a Kinetics-layout dataset for KineticsDataModule; it once put every video in
    # one class folder, which the data module refuses (a classifier needs two classes), and crashed there.
    cmd = [sys.executable, str(BENCHMARKS / "data.py"), "--out", str(tmp_path / "bench")]
    cmd += ["--videos", "1", "--clips", "2", "--loader-epochs", "1", "--loader-videos", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "### Decode only" in out
    loader = out.split("### Training loader", 1)[1]
    rows = [line for line in loader.splitlines() if line.startswith("| gop30 |") or line.startswith("| x264")]
    assert len(rows) == 12, loader  # 2 encodings x 3 windows x (0, 2) workers
    assert all(float(row.split("|")[4]) > 0 for row in rows)  # clips/s
    classes = sorted(p.name for p in (tmp_path / "bench" / "loader_gop30" / "train").iterdir())
    assert classes == ["c0", "c1"]


def test_ws_insitu_clocks_every_conv_of_both_models():
    # It swaps video_gn.nn.ws._WSConvFunction for a clocked subclass: a rename or a changed forward signature
    # there would break it (or time nothing) without any other test noticing.
    cmd = [sys.executable, str(BENCHMARKS / "ws_insitu.py"), "--rounds", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| (")]
    # r3d_18's 20 convs have 11 distinct (weight, input) shapes; each is clocked forward and backward
    assert len(rows) == 22, done.stdout
    assert all(float(row[4]) > 0 and float(row[5]) > 0 for row in rows), done.stdout  # plain ms, WS ms
    assert "per step: plain" in done.stdout


def test_omp_policy_option_sets_the_variable_openmp_reads(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import omp_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert omp_policy.apply(["--rounds", "3"]) == "active"  # no option: the caller's setting is kept
    assert omp_policy.apply(["--omp-wait-policy", "passive"]) == "passive"
    assert omp_policy.apply(["--omp-wait-policy=default"]).startswith("default")
    assert "OMP_WAIT_POLICY" not in os.environ


def test_conv_backends_times_every_conv_and_shows_the_routing():
    # It asks video_gn.nn.conv.backward_on_slow3d which backend each gradient takes; a changed signature there
    # would break the documented table without any other test noticing.
    cmd = [
        sys.executable,
        str(BENCHMARKS / "conv_backends.py"),
        "--width",
        "16",
        "--crop",
        "32",
        "--reps",
        "1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line.split("|")
        for line in done.stdout.splitlines()
        if line.startswith("| 1 |") or line.startswith("| 3 |") or line.startswith("| 4 |")
    ]
    assert len(rows) == 11, done.stdout  # r3d_18's 20 convs have 11 distinct (weight, input, stride) shapes
    routes = [row[-2].strip() for row in rows]
    assert "oneDNN, oneDNN" in routes, done.stdout
    # layer4 at T = 1: its 3×3×3 convs keep their middle temporal slice (which oneDNN then takes), timed as such
    assert any(
        re.fullmatch(r"trimmed to \(1, 3, 3\): oneDNN, oneDNN \([\d.]+, [\d.]+\)", r) for r in routes
    ), done.stdout
    assert "video_gn" in done.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("routing", "what"),
    [("backward-slow3d", "with part of their backward to slow3d"), ("trim-kernel", "with a trimmed kernel")],
)
def test_routing_benchmark_runs_the_off_on_comparison(routing, what):
    cmd = [sys.executable, str(BENCHMARKS / "batch1.py"), "--routing", routing, "--batches", "2"]
    cmd += ["--rounds", "1", "--warmup", "0", "--norms", "gn"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"# gn: at B=2, 3 of 20 3D convs routed {what}" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| gn | 2 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["off", "on"], done.stdout


def test_round_orders_never_repeat_a_variant_and_favour_no_position(monkeypatch):
    # Reversing every other round ran the first and last variant twice in a row at each round boundary, a
    # measured ~3 % bias in paired ratios (benchmarks/interleave.py).
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from interleave import round_orders

    keys = ["bn", "gn", "gn_ws", "naive", "timm", "weightfn"]
    orders = list(round_orders(keys, 600))
    assert all(sorted(order) == sorted(keys) for order in orders)
    sequence = [k for order in orders for k in order]
    assert all(a != b for a, b in zip(sequence, sequence[1:]))
    for position in (0, len(keys) - 1):
        counts = {k: sum(order[position] == k for order in orders) for k in keys}
        assert min(counts.values()) > 600 / len(keys) / 2, counts  # each about 100
    followers = {(a, b) for a, b in zip(sequence, sequence[1:])}
    assert len(followers) == len(keys) * (len(keys) - 1)  # every variant runs after every other
    assert orders == list(round_orders(keys, 600))  # deterministic
    two = list(round_orders(["gn", "gn_ws"], 5))
    assert all(order == two[1] for order in two[1:])  # two variants: each always follows the other


def _fake_run(path: Path, gn: list[float], ws: list[float], load: float = 0.5) -> None:
    """A saved layers.py run as ws_ratio_runs.py writes it: its header, then layers.py's output."""
    raw = json.dumps({"gn": gn, "gn_ws": ws})
    path.write_text(
        f"# command: layers.py\n# load average at start: {load}\n### Train step\n\nraw wall s: {raw}\n"
    )


def test_ws_ratio_runs_pools_saved_runs_without_rerunning_them(tmp_path):
    # Three runs already on disk and --runs 3: the series is complete, so the script must only summarise (a
    # broken resume would start layers.py, which takes minutes, and trip the timeout).
    _fake_run(tmp_path / "run_00.txt", [1.0, 1.0, 1.0], [1.02, 1.03, 1.04])
    _fake_run(tmp_path / "run_01.txt", [2.0, 2.0, 2.0], [2.10, 2.12, 2.14])  # 1.05, 1.06, 1.07
    _fake_run(tmp_path / "run_02.txt", [1.0, 1.0, 1.0], [1.01, 1.00, 1.02], load=1.25)
    cmd = [sys.executable, str(BENCHMARKS / "ws_ratio_runs.py"), "--runs", "3", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    rows = {
        line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| run_")
    }
    assert sorted(rows) == ["run_00", "run_01", "run_02"]
    assert [float(rows[r][5]) for r in sorted(rows)] == [1.03, 1.06, 1.01]  # per-run median ratio
    assert float(rows["run_02"][3]) == 1.25 and float(rows["run_01"][4]) == 2.0  # load, GN median step
    # pooled: the median of all nine round ratios (1.00 1.01 1.02 1.02 1.03 1.04 1.05 1.06 1.07)
    assert re.search(
        r"pooled median over 9 rounds: 1\.030 \(95 % interval, runs resampled: \[1\.0\d\d, 1\.0\d\d\]\)", out
    )
    assert "runs with median ≤ 1.05: 2 of 3" in out


def test_ws_ratio_runs_names_a_saved_run_it_cannot_read(tmp_path):
    (tmp_path / "run_00.txt").write_text("# command: layers.py\nTraceback ...\n")
    cmd = [sys.executable, str(BENCHMARKS / "ws_ratio_runs.py"), "--summary-only", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "run_00.txt" in done.stderr and "delete it and run again" in done.stderr
