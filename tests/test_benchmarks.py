"""Smoke tests of the benchmark scripts whose inputs come from the library (a library change can break them).

The figures themselves are not checked here (timings belong in docs/benchmarks.md, never in assertions); what
is checked is that the documented commands still run to the end and print their tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
