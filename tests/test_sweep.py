"""Tests for ``video-gn sweep``: grid expansion, run arguments, metrics reading, reports, and a real tiny sweep."""

import csv
import os
import statistics
from pathlib import Path

import pytest

from video_gn.sweep import (
    CSV_FIELDS,
    Cell,
    SweepSpec,
    aggregate,
    append_row,
    backfill_train_top1,
    build_parser,
    config_id,
    expand_grid,
    fit_args,
    load_spec,
    main,
    markdown_table,
    max_steps,
    parse_norm,
    read_rows,
    read_val_metrics,
    run_id,
    run_sweep,
    setup_id,
    spec_from_args,
    write_reports,
)

REPO = Path(__file__).resolve().parents[1]


def test_expand_grid_cross_zip_dedupe_and_span():
    cells = expand_grid(
        {
            "batch": {"norms": ["bn", "GN+WS"], "batch": [8, 2], "frames": [8]},
            "budget": {"norms": ["bn"], "batch": [8, 4], "frames": [8, 16], "zip": True},
        },
        span=32,
    )
    keys = [(c.norm, c.batch, c.frames, c.sampling_rate) for c in cells]
    assert keys == [
        ("bn", 8, 8, 4),
        ("bn", 2, 8, 4),
        ("gn+ws", 8, 8, 4),
        ("gn+ws", 2, 8, 4),
        ("bn", 4, 16, 2),
    ]
    assert cells[0].experiments == ("batch", "budget")  # shared cell runs once, belongs to both
    assert cells[2].kind == "gn" and cells[2].ws and not cells[0].ws


@pytest.mark.parametrize("bad", ["group", "gn+foo", "batchnorm+ws"])
def test_parse_norm_rejects(bad):
    with pytest.raises(ValueError, match="Unknown norm"):
        parse_norm(bad)


def test_expand_grid_rejects_mismatched_zip_and_unknown_keys():
    with pytest.raises(ValueError, match="zip"):
        expand_grid({"x": {"norms": ["bn"], "batch": [8, 4], "frames": [8], "zip": True}})
    with pytest.raises(ValueError, match="unknown keys"):
        expand_grid({"x": {"norms": ["bn"], "batch": [8], "frames": [8], "lr": 1}})


def test_load_spec_of_the_documented_grids():
    batch = load_spec(REPO / "configs" / "sweep" / "synthetic_batch.yaml")
    budget = load_spec(REPO / "configs" / "sweep" / "synthetic_budget.yaml")
    sqrt = load_spec(REPO / "configs" / "sweep" / "synthetic_batch_sqrt.yaml")
    assert len(batch.cells) == 9 and len(budget.cells) == 6 and len(sqrt.cells) == 4
    assert batch.seeds == budget.seeds == sqrt.seeds == [0, 1, 2]
    assert {(c.batch, c.frames) for c in batch.cells if c.norm == "gn+ws"} == {(8, 8), (4, 8), (2, 8)}
    # Fixed B x T = 32 clip-frames, every clip spanning 16 source frames.
    assert {(c.batch, c.frames) for c in budget.cells if c.norm == "gn+ws"} == {(8, 4), (4, 8), (2, 16)}
    assert all(c.batch * c.frames == 32 for c in budget.cells)
    # The sqrt grid gives B = 8 exactly the linear grid's lr: 0.008 * 8/64 == lr * sqrt(8/64).
    lr = float(next(o for o in sqrt.overrides if o.startswith("--model.lr=")).split("=")[1])
    assert "--model.lr_scaling=sqrt" in sqrt.overrides
    assert abs(lr * (8 / 64) ** 0.5 - 0.008 * 8 / 64) < 1e-8
    span = load_spec(REPO / "configs" / "sweep" / "synthetic_span.yaml")  # longer clips, same frame stride
    assert {(c.batch, c.frames) for c in span.cells} == {(8, 4), (4, 8), (2, 16)}
    assert all(c.sampling_rate is None for c in span.cells) and "--data.sampling_rate=4" in span.overrides
    # The optional B = 16 / 1 extension is the sqrt grid at other batches: same base, clips and overrides, so
    # its runs carry the lr rule of the sqrt grid (and the same run ids a merged grid would give them).
    extra = load_spec(REPO / "configs" / "sweep" / "synthetic_batch_range.yaml")
    assert {(c.norm, c.batch) for c in extra.cells} == {(n, b) for n in ("gn", "gn+ws") for b in (16, 1)}
    assert (extra.base, extra.clips, extra.seeds, extra.overrides) == (
        sqrt.base,
        sqrt.clips,
        sqrt.seeds,
        sqrt.overrides,
    )
    # The span grid's controls: the same data, stride, lr rule, clips and seeds, the two crossed cells.
    control = load_spec(REPO / "configs" / "sweep" / "synthetic_span_control.yaml")
    assert {(c.batch, c.frames) for c in control.cells} == {(2, 4), (8, 16)}
    assert (control.base, control.clips, control.seeds, control.overrides) == (
        span.base,
        span.clips,
        span.seeds,
        span.overrides,
    )
    specs = (batch, budget, sqrt, span, extra, control)
    assert all(Path(REPO / b).is_file() for spec in specs for b in spec.base)


def test_command_line_flags_restrict_a_zipped_grid_without_crossing_it(monkeypatch):
    monkeypatch.chdir(REPO)  # the grid's base configs are relative to the repository
    grid = "configs/sweep/synthetic_budget.yaml"

    def cells(*flags: str) -> set[tuple]:
        spec = spec_from_args(build_parser().parse_args(["-g", grid, *flags]), [])
        return {(c.norm, c.batch, c.frames, c.sampling_rate) for c in spec.cells}

    # One norm of the fixed B x T = 32 grid: still the 3 zipped pairs, same sampling rates (span 16).
    assert cells("--norms", "gn+ws") == {("gn+ws", 8, 4, 4), ("gn+ws", 4, 8, 2), ("gn+ws", 2, 16, 1)}
    assert cells("--batch", "4,2") == {
        (n, b, t, r) for n in ("bn", "gn+ws") for b, t, r in [(4, 8, 2), (2, 16, 1)]
    }
    assert cells("--norms", "gn", "--span", "32", "--frames", "16") == {("gn", 2, 16, 2)}
    with pytest.raises(ValueError, match=r"--batch \[5\] is not in the grid file's values \[2, 4, 8\]"):
        cells("--batch", "5")


def test_fit_args_fixed_clips_and_syncbn_guard(tmp_path):
    spec = SweepSpec(base=["a.yaml", "b.yaml"], clips=1000, seeds=[0], devices=2, cells=[])
    cell = Cell("gn+ws", 4, 16, 2)
    assert max_steps(spec, cell) == 1000 // (4 * 2)
    args = fit_args(spec, cell, 3, tmp_path)
    assert args[:5] == ["fit", "-c", "a.yaml", "-c", "b.yaml"]
    for expected in ["--model.norm=gn", "--model.ws=true", "--data.batch_size=4", "--data.num_frames=16",
                     "--data.sampling_rate=2", "--trainer.max_steps=125", "--trainer.val_check_interval=125",
                     "--seed_everything=3", "--trainer.strategy=ddp"]:  # fmt: skip
        assert expected in args
    assert "--trainer.sync_batchnorm=true" in fit_args(spec, Cell("syncbn", 4, 16), 0, tmp_path)
    with pytest.raises(ValueError, match="syncbn"):
        fit_args(SweepSpec(["a.yaml"], 1000, [0], 1, []), Cell("syncbn", 4, 16), 0, tmp_path)
    # Ids are stable and differ by seed and by anything that changes the training.
    assert run_id(spec, cell, 0) == run_id(spec, cell, 0) != run_id(spec, cell, 1)
    assert run_id(spec, cell, 0) != run_id(SweepSpec(["a.yaml", "b.yaml"], 999, [0], 2, []), cell, 0)


def test_read_val_metrics_takes_last_values_of_newest_version(tmp_path):
    for version, acc in (("version_0", "0.1"), ("version_1", "0.75")):
        d = tmp_path / "logs" / version
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(
            "epoch,step,train/loss,val/clip_top1,val/video_top1,val/video_top5\n"
            "0,9,2.0,,,\n"
            f"0,9,,0.5,{acc},1.0\n"
            "1,19,1.5,,,\n"
        )
    assert read_val_metrics(tmp_path) == {"val/clip_top1": 0.5, "val/video_top1": 0.75, "val/video_top5": 1.0}
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_val_metrics(tmp_path / "nothing")


def _row(norm, batch, frames, seed, v1, status="ok", run=None):
    return {
        "run_id": run or f"{norm}_{batch}_{frames}_{seed}", "experiment": "x", "norm": norm, "batch": batch,
        "frames": frames, "sampling_rate": 32 // frames, "devices": 1, "global_batch": batch, "seed": seed,
        "clips": 64, "max_steps": 64 // batch, "clip_top1": v1 / 2, "clip_top5": 1.0, "video_top1": v1,
        "video_top5": 1.0, "val_loss": 1.0, "wall_s": 10 + seed, "peak_rss_mib": 900, "status": status,
        "run_dir": "r", "finished_at": "2026-01-01T00:00:00",
    }  # fmt: skip


def test_reports_from_csv(tmp_path):
    csv_path = tmp_path / "runs.csv"
    rows = [
        _row("bn", 8, 8, 0, 0.50), _row("bn", 8, 8, 1, 0.60), _row("bn", 2, 8, 0, 0.20), _row("bn", 2, 8, 1, 0.30),
        _row("gn+ws", 8, 8, 0, 0.55), _row("gn+ws", 2, 8, 0, 0.25, status="failed(1)"),
        _row("gn+ws", 2, 8, 0, 0.52),  # the re-run of the failed one
        _row("gn+ws", 4, 16, 0, 0.70), _row("gn+ws", 2, 32, 0, 0.80), _row("bn", 4, 16, 0, 0.40),
    ]  # fmt: skip
    for r in rows:
        append_row(csv_path, r)
    with csv_path.open() as f:
        assert next(csv.reader(f)) == CSV_FIELDS
    assert len(read_rows(csv_path)) == len(rows)
    groups = {(g["norm"], g["batch"], g["frames"]): g for g in aggregate(read_rows(csv_path))}
    bn8 = groups[("bn", 8, 8)]
    assert bn8["n"] == 2 and bn8["video_top1_mean"] == pytest.approx(55.0)
    assert bn8["video_top1_std"] == pytest.approx(statistics.stdev([50.0, 60.0]))
    assert groups[("gn+ws", 2, 8)]["video_top1_mean"] == pytest.approx(52.0)  # failed row ignored
    table = markdown_table(aggregate(read_rows(csv_path)))
    assert "| bn | 8 | 8 | 4 | 2 | 55.0 ± 7.1 |" in table
    assert table.index("| bn | 8 |") < table.index("| gn+ws | 8 |")
    pytest.importorskip("matplotlib")
    text = write_reports(csv_path, tmp_path)
    assert (tmp_path / "summary.md").read_text() == text
    for png in ("acc_vs_batch.png", "acc_vs_frames.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_runs_with_different_clip_budgets_are_not_averaged_together():
    rows = [
        _row("gn", 8, 8, 0, 0.5),
        _row("gn", 8, 8, 1, 0.7),
        {**_row("gn", 8, 8, 0, 0.9, run="long"), "clips": 640},
    ]
    groups = aggregate(rows)
    assert sorted((str(g["clips"]), g["n"], round(g["video_top1_mean"], 1)) for g in groups) == [
        ("64", 2, 60.0),
        ("640", 1, 90.0),
    ]
    table = markdown_table(groups)
    assert (
        "| norm | batch | frames | rate | clips | seeds |" in table
        and "| gn | 8 | 8 | 4 | 640 | 1 |" in table
    )
    assert "clips" not in markdown_table(aggregate(rows[:2]))  # one budget: no extra column


def test_gpu_peak_is_read_from_the_logs_and_shown_only_for_gpu_runs(tmp_path):
    d = tmp_path / "logs" / "version_0"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text(
        "epoch,step,train/top1,train/gpu_peak_mib,val/video_top1\n0,9,0.5,812.5,\n0,9,,,0.75\n"
    )
    assert read_val_metrics(tmp_path)["train/gpu_peak_mib"] == 812.5
    cpu = [_row("gn", 8, 8, 0, 0.5), _row("gn", 8, 8, 1, 0.7)]
    assert "GPU" not in markdown_table(aggregate(cpu))  # CPU sweeps: the table as before
    gpu = [{**r, "peak_gpu_mib": 800 + 100 * i} for i, r in enumerate(cpu)]
    table = markdown_table(aggregate(gpu))
    assert "peak RSS (MiB) | peak GPU (MiB) |" in table and "| 900 | 850 |" in table


def test_torn_last_line_is_ignored(tmp_path):
    csv_path = tmp_path / "runs.csv"
    append_row(csv_path, _row("bn", 8, 8, 0, 0.5))
    with csv_path.open("a") as f:
        f.write("bn_8_8_1,x,bn,8")  # a crash mid-write
    assert [r["run_id"] for r in read_rows(csv_path)] == ["bn_8_8_0"]


TINY_BASE = """
seed_everything: 0
model: {{name: r3d_18, width: 4, dropout: 0.0, lr: 0.4, warmup_fraction: 0.0}}
data:
  root: {root}
  synthetic: {{num_classes: 2, train_per_class: 4, val_per_class: 2, size: [32, 32], fps: 25, num_frames: 16,
               seed: 0}}
  num_frames: 4
  sampling_rate: 2
  batch_size: 2
  num_workers: 0
  train_short_side: [32, 32]
  crop_size: 32
  test_short_side: 32
  hflip: false
  num_clips: 1
trainer: {{accelerator: cpu, devices: 1, log_every_n_steps: 1}}
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from video_gn.data.synthetic import SyntheticSpec, generate

    tmp = tmp_path_factory.mktemp("sweep_data")
    root = tmp / "data"
    generate(root, SyntheticSpec(num_classes=2, train_per_class=4, val_per_class=2, size=(32, 32), num_frames=16),
             workers=1, progress=False)  # fmt: skip
    base = tmp / "tiny.yaml"
    base.write_text(TINY_BASE.format(root=root))
    return base


def test_runs_of_other_overrides_are_not_averaged_as_seeds():
    # The same cell and seed with another learning rate (other overrides, same --out) is another configuration.
    rows = [
        {**_row("gn", 4, 4, 0, 0.3, run="a"), "config": "c1"},
        {**_row("gn", 4, 4, 0, 0.5, run="b"), "config": "c2"},
        {**_row("gn", 4, 4, 1, 0.7, run="c"), "config": "c2"},
    ]
    groups = sorted(aggregate(rows), key=lambda g: g["config"])
    assert [(g["n"], round(g["video_top1_mean"], 1)) for g in groups] == [(1, 30.0), (2, 60.0)]
    assert [g["experiment"] for g in groups] == ["x [config c1]", "x [config c2]"]
    spec = SweepSpec(["a.yaml"], 64, [0, 1], 1, [Cell("gn", 4, 4)])
    other = SweepSpec(["a.yaml"], 64, [0, 1], 1, [Cell("gn", 4, 4)], overrides=["--model.lr=0.5"])
    assert config_id(spec, spec.cells[0]) != config_id(other, other.cells[0])
    assert config_id(spec, spec.cells[0]) in {config_id(spec, Cell("gn", 4, 4))}  # seeds share it


def test_a_cell_that_cannot_run_fails_before_any_run(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(
        "video_gn.sweep.run._run_subprocess", lambda *a, **k: started.append(a) or (0, 1.0, 1.0)
    )
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    spec = SweepSpec([str(base)], 64, [0], 1, [Cell("bn", 4, 4), Cell("syncbn", 4, 4)])
    with pytest.raises(ValueError, match="syncbn"):
        run_sweep(spec, tmp_path / "out", log=False)
    assert started == []


def _sweep_with_a_fake_run(tmp_path):
    """Start ``video-gn sweep`` on a one-run grid whose training run is a shell that prints its pid and sleeps;
    return (sweep process, the run's fit.log) once the run has started."""
    import subprocess
    import sys
    import time

    fake_python = tmp_path / "python"  # stands in for the training run: prints its pid, then waits
    fake_python.write_text("#!/bin/sh\necho $$\nexec sleep 60\n")
    fake_python.chmod(0o755)
    script = tmp_path / "sweep.py"
    script.write_text(
        "import sys, types\n"
        "import video_gn.sweep.run as run\n"
        f"run.sys = types.SimpleNamespace(executable={str(fake_python)!r})\n"
        "from video_gn.sweep.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    grid = tmp_path / "grid.yaml"
    (tmp_path / "a.yaml").write_text("model: {}\n")
    grid.write_text(
        f"base: {tmp_path / 'a.yaml'}\nclips: 8\nseeds: [0]\nexperiments:\n"
        "  b: {norms: [gn], batch: [4], frames: [4]}\n"
    )
    sweep = subprocess.Popen([sys.executable, str(script), "-g", str(grid), "--out", str(tmp_path / "out")])
    deadline = time.time() + 60
    while time.time() < deadline and sweep.poll() is None:
        logs = list((tmp_path / "out" / "runs").glob("*/fit.log"))
        if logs and len(logs[0].read_text().splitlines()) >= 2:
            return sweep, logs[0]
        time.sleep(0.2)
    sweep.kill()
    raise AssertionError("the sweep never started its run")


def test_a_stopped_sweep_kills_its_training_run(tmp_path):
    # SIGTERM to the sweep (a scheduler's time limit, kill) must not leave the fit it started running alone.
    import signal
    import time

    sweep, log = _sweep_with_a_fake_run(tmp_path)
    child = int(log.read_text().splitlines()[1])
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    assert "[sweep] stopped: the run was killed with the sweep" in log.read_text()


def test_tiny_sweep_end_to_end_and_resume(tiny_base, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: {tiny_base}\nclips: 8\nseeds: [0]\n"
        "experiments:\n  b: {norms: [bn, gn+ws], batch: [4], frames: [4]}\n"
    )
    out = tmp_path / "out"
    # First call stops after one run (as an interrupted sweep would) ...
    first = run_sweep(load_spec(grid), out, max_runs=1, log=False)
    assert [r["norm"] for r in first] == ["bn"] and first[0]["status"] == "ok", first
    # ... the CLI resumes: only the missing run is trained, then the reports are written.
    assert main(["-g", str(grid), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 runs in the grid, 1 already done, 1 to run" in printed
    rows = read_rows(out / "runs.csv")
    assert [(r["norm"], r["status"]) for r in rows] == [("bn", "ok"), ("gn+ws", "ok")]
    for r in rows:
        assert r["max_steps"] == "2"  # 8 clips / batch 4
        for key in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["peak_rss_mib"]) > 100 and float(r["wall_s"]) > 0
        log = (Path(r["run_dir"]) / "fit.log").read_text()
        assert "max_steps=2" in log
    assert "| gn+ws | 4 | 4 |" in (out / "summary.md").read_text()
    # Everything is done: nothing runs again.
    assert run_sweep(load_spec(grid), out, log=False) == []
    assert len(read_rows(out / "runs.csv")) == 2
    # An edited base config would make the finished rows stale: resuming is refused unless accepted.
    Path(tiny_base).write_text(Path(tiny_base).read_text() + "\n# edited\n")
    with pytest.raises(ValueError, match="changed since this sweep started"):
        run_sweep(load_spec(grid), out, log=False)
    assert run_sweep(load_spec(grid), out, log=False, accept_config_change=True) == []


def test_cli_errors(tmp_path, capsys):
    assert main(["-g", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--report-only"]) == 2
    assert "No results" in capsys.readouterr().err


def test_old_csv_is_migrated_and_train_top1_backfilled_from_run_logs(tmp_path):
    # A runs.csv written before the train_top1 column existed, one run of which still has its logs.
    old_fields = [f for f in CSV_FIELDS if f != "train_top1"]
    run_dir = tmp_path / "runs" / "r0"
    (run_dir / "logs" / "version_0").mkdir(parents=True)
    (run_dir / "logs" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/top1,val/video_top1\n0,9,0.25,\n1,19,0.75,\n1,19,,0.5\n"
    )
    csv_path = tmp_path / "runs.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(_row("gn", 8, 8, 0, 0.5, run=None) | {"run_dir": str(run_dir)})
        writer.writerow(_row("gn", 8, 8, 1, 0.7) | {"run_dir": str(tmp_path / "gone")})
    append_row(csv_path, _row("gn", 8, 8, 2, 0.6) | {"train_top1": 0.5})  # new row under today's header
    with csv_path.open() as f:
        assert next(csv.reader(f)) == CSV_FIELDS
    rows = read_rows(csv_path)
    assert [r["train_top1"] for r in rows] == ["", "", "0.5"] and len(rows) == 3
    assert backfill_train_top1(csv_path) == 1  # the run whose logs are gone stays empty
    assert [r["train_top1"] for r in read_rows(csv_path)] == ["0.75", "", "0.5"]
    # A cell with a missing train value shows "-" rather than a mean over fewer seeds.
    table = markdown_table(aggregate(read_rows(csv_path)))
    assert table.splitlines()[0].count("train top-1") == 1
    assert "| 60.0 ± 10.0 | 100.0 ± 0.0 | 30.0 ± 5.0 | 100.0 ± 0.0 | - |" in table


def _fake_runs(monkeypatch, wall: float = 1.0) -> list[list[str]]:
    """Replace the training subprocess: record its `video-gn fit` arguments, take ``wall`` seconds, log nothing."""
    started: list[list[str]] = []

    def fake(args, log_path, timeout, threads=None):
        started.append(args)
        return 0, wall, 1.0

    monkeypatch.setattr("video_gn.sweep.run._run_subprocess", fake)
    return started


def test_a_seed_listed_twice_runs_once(tmp_path, monkeypatch):
    started = _fake_runs(monkeypatch)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    spec = SweepSpec([str(base)], 8, [0, 0, 1], 1, [Cell("gn", 4, 4)])
    rows = run_sweep(spec, tmp_path / "out", log=False)
    assert [r["seed"] for r in rows] == [0, 1] and len(started) == 2
    assert len({r["run_id"] for r in rows}) == 2


def test_clips_that_batch_x_devices_does_not_divide_are_refused_before_any_run(tmp_path, monkeypatch):
    # 10 clips: B=4 would take 2 steps (8 clips), B=2 5 steps (10 clips); 2 clips at B=4: 1 step of 4 clips.
    started = _fake_runs(monkeypatch)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    for clips, devices in ((10, 1), (2, 1), (12, 2)):
        spec = SweepSpec([str(base)], clips, [0], devices, [Cell("gn", 2, 4), Cell("gn", 4, 4)])
        with pytest.raises(
            ValueError, match=f"clips {clips} is not a multiple of batch 4 x devices {devices}"
        ):
            run_sweep(spec, tmp_path / "out", log=False)
    assert started == []
    spec = SweepSpec([str(base)], 16, [0], 2, [Cell("gn", 2, 4), Cell("gn", 4, 4)])
    assert [r["max_steps"] * r["global_batch"] for r in run_sweep(spec, tmp_path / "out", log=False)] == [
        16,
        16,
    ]


@pytest.mark.parametrize("flag", ["--clips", "--devices", "--threads", "--timeout", "--max-runs", "--span"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_cli_refuses_non_positive_numbers_naming_the_option(flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    grid = "configs/sweep/synthetic_batch.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["-g", grid, "--out", str(tmp_path / "out"), "--dry-run", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be > 0, got {value}" in capsys.readouterr().err


def test_grid_file_span_that_is_not_a_number_names_the_key(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "base: a.yaml\nclips: 8\nspan: sixteen\nexperiments:\n  b: {norms: [gn], batch: [4], frames: [4]}\n"
    )
    with pytest.raises(ValueError, match="span must be an int"):
        load_spec(grid)


def test_progress_gives_an_eta_from_the_runs_so_far(tmp_path, monkeypatch, capsys):
    _fake_runs(monkeypatch, wall=10.0)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    # Work per run is clips x frames: the T=8 cell counts twice the T=4 cells, whatever the batch.
    spec = SweepSpec([str(base)], 8, [0], 1, [Cell("gn", 4, 4), Cell("gn", 2, 4), Cell("gn", 4, 8)])
    rows = run_sweep(spec, tmp_path / "out")
    lines = [line for line in capsys.readouterr().out.splitlines() if "elapsed" in line]
    assert len(lines) == 3
    assert "(elapsed 0:00:10; 2 left, ETA 0:00:30)" in lines[0]  # 10 s per 32 units, 96 left
    assert "(elapsed 0:00:20; 1 left, ETA 0:00:20)" in lines[1]
    assert lines[2].endswith("(elapsed 0:00:30)")
    assert {r["setup"] for r in rows} == {setup_id(spec)}  # one sweep: one set-up


def test_a_sweep_killed_with_sigkill_takes_its_training_run_with_it(tmp_path):
    # SIGKILL (the OOM killer, kill -9) cannot be caught: the run must still not go on training alone, into
    # the folder that the next call reruns it in.
    import signal
    import time

    sweep, log = _sweep_with_a_fake_run(tmp_path)
    child = int(log.read_text().splitlines()[1])
    sweep.kill()
    assert sweep.wait(timeout=30) == -signal.SIGKILL
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_row_appended_after_a_torn_line_is_kept(tmp_path):
    csv_path = tmp_path / "runs.csv"
    append_row(csv_path, _row("bn", 8, 8, 0, 0.5))
    with csv_path.open("a") as f:
        f.write("bn_8_8_1,x,bn,8")  # a crash mid-write
    append_row(csv_path, _row("bn", 8, 8, 2, 0.6))  # the resumed sweep's next run
    rows = read_rows(csv_path)
    assert [(r["run_id"], r["status"]) for r in rows] == [("bn_8_8_0", "ok"), ("bn_8_8_2", "ok")]
    # A line cut after its finished_at (but before the last columns) is torn too.
    line = csv_path.read_text().splitlines()[1]
    with csv_path.open("a") as f:
        f.write(line.replace("bn_8_8_0", "bn_8_8_3").rsplit(",", 3)[0])
    assert [r["run_id"] for r in read_rows(csv_path)] == ["bn_8_8_0", "bn_8_8_2"]


def test_an_edited_included_config_is_detected(tmp_path):
    from video_gn.sweep import check_base_configs_unchanged

    (tmp_path / "shared.yaml").write_text("model: {lr: 0.1}\n")
    base = tmp_path / "exp.yaml"
    base.write_text("config: shared.yaml\ndata: {batch_size: 2}\n")
    spec = SweepSpec([str(base)], 8, [0], 1, [Cell("gn", 4, 4)])
    out = tmp_path / "out"
    out.mkdir()
    check_base_configs_unchanged(spec, out)
    check_base_configs_unchanged(spec, out)  # unchanged: fine
    (tmp_path / "shared.yaml").write_text("model: {lr: 0.2}\n")
    with pytest.raises(ValueError, match="shared.yaml"):
        check_base_configs_unchanged(spec, out)


def test_reports_keep_two_setups_in_one_folder_apart(tmp_path, monkeypatch):
    # Two grids (other overrides) run into one --out: same cells, same accuracies. The table says which
    # set-up a row is, and the plots draw one line per norm and set-up instead of one zigzag line per norm.
    rows = []
    for setup, accs in (("s1", (0.5, 0.5)), ("s2", (0.5, 0.7))):
        for batch, acc in zip((8, 2), accs):
            rows.append({**_row("gn", batch, 8, 0, acc, run=f"{setup}{batch}"), "config": f"{setup}{batch}",
                         "setup": setup})  # fmt: skip
    groups = aggregate(rows)
    table = markdown_table(groups)
    assert (
        "| norm | batch | frames | rate | setup | seeds |" in table and "| gn | 8 | 8 | 4 | s2 | 1 |" in table
    )
    assert "setup" not in markdown_table(aggregate(rows[:2]))
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    drawn = []
    errorbar = matplotlib.axes.Axes.errorbar

    def record(self, x, y, *args, label=None, **kwargs):
        drawn.append((label, list(x), list(y)))
        return errorbar(self, x, y, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record)
    from video_gn.sweep import plot_groups

    assert [p.name for p in plot_groups(groups, tmp_path)] == ["acc_vs_batch.png"]
    assert sorted(drawn) == [("gn [setup s1]", [2, 8], [50.0, 50.0]), ("gn [setup s2]", [2, 8], [70.0, 50.0])]


@pytest.mark.parametrize(
    ("code", "log", "status"),
    [
        (1, "FloatingPointError: Non-finite training loss on rank(s) [0] of 1", "failed(1: non-finite loss)"),
        (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", "failed(1: out of memory)"),
        (-9, "\n[sweep] killed after the 5 s timeout\n", "failed(-9: timeout)"),
        (-9, "Epoch 0: 10/40", "failed(-9: killed by SIGKILL: out of host memory?)"),
        (2, "video-gn fit: error: something else", "failed(2)"),
        (
            2,
            "video-gn fit: error: bad size\n(ValueError raised before training started, at x.py:1: a config ...)",
            "failed(2: config error: see its log)",
        ),
    ],
)
def test_a_failed_run_records_why_and_the_sweep_goes_on(code, log, status, tmp_path, monkeypatch):
    def fake(args, log_path, timeout, threads=None):
        log_path.write_text("$ python -m video_gn.cli fit ...\nTraceback (most recent call last):\n" + log)
        return code, 1.0, 1.0

    monkeypatch.setattr("video_gn.sweep.run._run_subprocess", fake)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    spec = SweepSpec([str(base)], 8, [0], 1, [Cell("gn", 4, 4), Cell("gn", 2, 4)])
    rows = run_sweep(spec, tmp_path / "out", log=False)
    assert [r["status"] for r in rows] == [status, status]  # the second cell still ran
    assert [r["status"] for r in read_rows(tmp_path / "out" / "runs.csv")] == [status, status]
    summary = write_reports(tmp_path / "out" / "runs.csv", tmp_path / "out", plots=False)
    assert f"{rows[0]['run_id']} {status}" in summary


def test_missing_matplotlib_is_reported_before_any_run(tmp_path, monkeypatch, capsys):
    import sys

    started = _fake_runs(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    flags = ["--base", str(base), "--clips", "8", "--norms", "gn", "--batch", "4,2", "--frames", "4"]
    assert main([*flags, "--out", str(tmp_path / "out")]) == 2
    assert "--no-plots" in capsys.readouterr().err and started == []
    assert main([*flags, "--out", str(tmp_path / "out"), "--no-plots"]) == 1  # runs (they log nothing here)
    assert len(started) == 2


def test_rows_from_before_the_setup_column_join_the_sweep_that_resumes_them(tmp_path):
    # A sweep started by an older version has rows without a setup; resumed, its new rows get one: without the
    # backfill the report would show one grid as two set-ups (two plot lines per norm).
    from video_gn.sweep import read_rows, rewrite_rows, run_id, setup_id
    from video_gn.sweep.run import _fill_setup

    spec = SweepSpec(base=["a.yaml"], clips=64, seeds=[0], devices=1, cells=[Cell("gn", 8, 8)])
    csv_path = tmp_path / "runs.csv"
    ours = {**_row("gn", 8, 8, 0, 0.5, run=run_id(spec, spec.cells[0], 0)), "setup": ""}
    other = {**_row("gn", 4, 8, 0, 0.5, run="another_grid"), "setup": ""}
    rewrite_rows(csv_path, [ours, other])
    _fill_setup(read_rows(csv_path), spec, [0], csv_path)
    assert [r["setup"] for r in read_rows(csv_path)] == [setup_id(spec), ""]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("batch: [2.7]", r"b\.batch must be an int"),
        ("batch: true", r"b\.batch must be an int"),
        ("zip: 'false'", "zip must be true or false"),
    ],
)
def test_grid_values_that_are_not_what_they_look_like_are_refused(line, match, tmp_path):
    """int() would have run batch 2 for 2.7, batch 1 for true, and taken the string 'false' as true."""
    grid = tmp_path / "grid.yaml"
    sub = {"norms": "[gn]", "batch": "[4]", "frames": "[4]"}
    key, _, value = line.partition(": ")
    sub[key] = value
    inner = ", ".join(f"{k}: {v}" for k, v in sub.items())
    grid.write_text(f"base: a.yaml\nclips: 8\nexperiments:\n  b: {{{inner}}}\n")
    with pytest.raises(ValueError, match=match):
        load_spec(grid)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "base: a.yaml\nclips: [16, 32]\nexperiments: {b: {norms: [gn], batch: [4], frames: [4]}}\n",
            "clips must be one int",
        ),
        (
            "base: a.yaml\nclips: 8\nseeds: [0.5]\nexperiments: {b: {norms: [gn], batch: [4], frames: [4]}}\n",
            "seeds must be",
        ),
        ("base: a.yaml\nclips: 8\nexperiments: {b: {norms: [gn]\n", r"grid\.yaml: not valid YAML"),
    ],
)
def test_grid_file_mistakes_are_value_errors_naming_the_key_or_file(text, match, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_spec(grid)


@pytest.mark.parametrize("override", ["--trainer.accumulate_grad_batches=2", "--trainer.num_nodes=2"])
def test_options_that_multiply_the_clips_per_step_are_refused(override, tmp_path):
    spec = SweepSpec([str(tmp_path / "a.yaml")], 8, [0], 1, [Cell("gn", 4, 4)], overrides=[override])
    with pytest.raises(ValueError, match="not supported in a sweep"):
        fit_args(spec, Cell("gn", 4, 4), 0, tmp_path / "run")
    spec.overrides = [override.split("=")[0], "1"]  # a value of 1 changes nothing
    fit_args(spec, Cell("gn", 4, 4), 0, tmp_path / "run")


def test_a_run_refused_at_start_up_stops_the_sweep(tmp_path, monkeypatch):
    """A misspelt override after `--` fails every run alike: the sweep stops after the first, saying why."""
    started = []

    def refused(args, log_path, timeout, threads=None):
        started.append(args)
        log_path.write_text("usage: ...\nvideo-gn fit: error: unrecognized arguments: --data.batchsize 3\n")
        return 2, 1.0, 1.0

    monkeypatch.setattr("video_gn.sweep.run._run_subprocess", refused)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    spec = SweepSpec(
        [str(base)], 8, [0, 1], 1, [Cell("gn", 4, 4), Cell("bn", 4, 4)], ["--data.batchsize", "3"]
    )
    with pytest.raises(ValueError, match=r"refused at start-up: video-gn fit: error: unrecognized arguments"):
        run_sweep(spec, tmp_path / "out", log=False)
    assert len(started) == 1
    (row,) = read_rows(tmp_path / "out" / "runs.csv")
    assert row["status"] == "failed(2: unknown option: see its log)"


def test_a_second_sweep_into_the_same_folder_is_refused(tmp_path, monkeypatch):
    from video_gn.runlock import lock_folder

    _fake_runs(monkeypatch)
    base = tmp_path / "a.yaml"
    base.write_text("model: {}\n")
    spec = SweepSpec([str(base)], 8, [0], 1, [Cell("gn", 4, 4)])
    held = lock_folder(tmp_path / "out", "video-gn sweep")  # another open file: Linux flock locks conflict
    try:
        with pytest.raises(ValueError, match=r"--out .*out is in use by video-gn sweep \(pid"):
            run_sweep(spec, tmp_path / "out", log=False)
    finally:
        held.close()
    assert len(run_sweep(spec, tmp_path / "out", log=False)) == 1
