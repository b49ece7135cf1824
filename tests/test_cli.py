"""The ``video-gn`` CLI end to end on a tiny generated synthetic dataset (CPU).

The tiny dataset is conftest.py's ``tiny_root``; the ``video-gn predict`` tests are in test_predict.py.
"""

import contextlib
import csv
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from video_gn.cli import main, parse_config, run_lightning_cli

REPO = Path(__file__).resolve().parent.parent
# Every training config, kinetics400/base.yaml included (it trains from scratch on its own); configs/sweep/
# holds sweep grids and their base, parsed by test_every_yaml_*.
CONFIGS = sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs" / "kinetics400").glob("*.yaml")])


def _tiny_overrides(root: Path, run_dir: Path) -> list[str]:
    return [
        f"--data.root={root}",
        "--data.synthetic=null",
        "--model.pretrained=null",  # test_every_config_* loads stand-ins for the configs' 2D checkpoints
        "--data.num_frames=4",
        "--data.sampling_rate=2",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.pin_memory=false",
        "--data.train_short_side=[40,48]",
        "--data.test_short_side=40",
        "--data.crop_size=32",
        "--data.num_clips=2",
        "--data.num_crops=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.num_nodes=1",
        "--trainer.strategy=auto",
        "--trainer.precision=32-true",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={run_dir}",
    ]


def _quick(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "-c",
        str(REPO / "configs" / "quickstart.yaml"),
        *_tiny_overrides(root, run_dir),
        "--model.width=8",
        "--trainer.max_epochs=1",
        "--trainer.max_steps=-1",
        *extra,
    ]


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", "predict", "plan", "sweep"):
        assert cmd in out


def test_help_examples_parse():
    from video_gn.cli import SUBCOMMANDS
    from video_gn.sweep import build_parser as sweep_parser

    example = SUBCOMMANDS["sweep"].split(": ", 1)[1].split()  # video-gn sweep -g GRID --out DIR
    assert example[:2] == ["video-gn", "sweep"]
    args = sweep_parser().parse_args(example[2:])
    assert args.grid == "configs/sweep/synthetic_batch.yaml" and (REPO / args.grid).is_file()
    # -c/--config is accepted as for fit/validate/test/predict.
    assert sweep_parser().parse_args(["-c", "g.yaml"]).grid == "g.yaml"
    assert sweep_parser().parse_args(["--config", "g.yaml"]).grid == "g.yaml"


def test_console_script_runs():
    proc = subprocess.run(["video-gn", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "predict" in proc.stdout


def _random_2d(name: str) -> dict[str, torch.Tensor] | None:
    """A randomly initialised stand-in (same keys and shapes) for a public 2D checkpoint a config names."""
    import torchvision

    if name == "resnet50-0676ba61.pth":  # torchvision ResNet50_Weights.IMAGENET1K_V1 (BN)
        return torchvision.models.resnet50().state_dict()
    try:
        import timm
    except ImportError:
        return None
    if name == "resnet50_gn.a1h_in1k.safetensors":  # timm's GN ResNet-50
        return timm.create_model("resnet50_gn", pretrained=False).state_dict()
    if name == "resnetv2_50x1_bit.goog_in21k.safetensors":  # timm's BiT-M R50x1
        return timm.create_model("resnetv2_50x1_bit", pretrained=False).state_dict()
    # quickstart_inflated's checkpoint from benchmarks/inflation.py: test_quickstart_inflated_* makes one.
    return None


@pytest.fixture(scope="module")
def stand_in_2d(tmp_path_factory):
    """``name -> path`` of a saved random stand-in for the checkpoint file ``name`` (None: none available)."""
    folder = tmp_path_factory.mktemp("pretrained")
    made: dict[str, Path | None] = {}

    def get(name: str) -> Path | None:
        if name not in made:
            sd = _random_2d(name)
            made[name] = None if sd is None else folder / name
            if sd is not None and name.endswith(".safetensors"):
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in sd.items()}, str(made[name]))
            elif sd is not None:
                torch.save(sd, made[name])
        return made[name]

    return get


def _pretrained_override(config: Path, stand_in_2d) -> tuple[str, Path | None]:
    """``--model.pretrained=<stand-in>`` for the file ``config`` names (null when there is none)."""
    name = parse_config(["-c", str(config)]).model.pretrained
    stand_in = stand_in_2d(Path(name).name) if name else None
    return f"--model.pretrained={stand_in or 'null'}", stand_in


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO / "configs")) for c in CONFIGS])
def test_every_config_parses_and_trains_one_step(config, tiny_root, tmp_path, stand_in_2d):
    pretrained, stand_in = _pretrained_override(config, stand_in_2d)
    cli = run_lightning_cli(
        [
            "fit",
            "-c",
            str(config),
            *_tiny_overrides(tiny_root, tmp_path),
            pretrained,  # the 2D checkpoint is inflated through the CLI, as on a real run
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
        ],
    )
    assert cli.trainer.global_step == 1
    assert cli.model.hparams.num_classes == 4  # linked from the data module
    # The SyncBN configs keep trainer.sync_batchnorm: the trainer holds our layer-sync plugin, which under DDP
    # turns every BatchNorm into a (CPU-capable) SyncBatchNorm; on this one process Lightning leaves it unused.
    from video_gn.nn.syncbn import SyncBatchNorm, SyncBatchNormPlugin

    layer_sync = cli.trainer._accelerator_connector._layer_sync
    assert isinstance(layer_sync, SyncBatchNormPlugin) == ("syncbn" in config.name), config.name
    if layer_sync is not None:
        synced = layer_sync.apply(cli.model)
        assert any(isinstance(m, SyncBatchNorm) for m in synced.modules())
        assert not any(type(m) is torch.nn.BatchNorm3d for m in synced.modules())
    if stand_in is not None:
        report = cli.model.pretrained_report
        assert report.source in ("resnet", "bit") and len(report.inflated) >= 50, report


def _benchmarks_inflation():
    """benchmarks/inflation.py (a script, not a package), imported from its path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmarks_inflation", REPO / "benchmarks" / "inflation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_inflated_starts_from_a_locally_saved_2d_checkpoint(tiny_root, tmp_path):
    # The file `benchmarks/inflation.py --pretrain-only` writes for configs/quickstart_inflated.yaml: a 2D
    # bit_c2d_r50x1 of the config's width and GN groups, saved by to_bit_2d_state_dict (timm BiT key names).
    from video_gn.models import build

    config = REPO / "configs" / "quickstart_inflated.yaml"
    hp = parse_config(["-c", str(config)]).model
    assert (hp.name, hp.pretrained_method) == ("bit_i3d_r50x1", "mean")
    torch.manual_seed(123)
    c2d = build(
        "bit_c2d_r50x1",
        num_classes=4,  # the tiny data's classes: the classifier is loaded too
        width=hp.width,
        ws_eps=hp.ws_eps,
        norm_kwargs={"num_groups": hp.pretrained_gn_groups},
    )
    with torch.no_grad():  # norm affine and biases away from their initial 1 / 0, so loading them shows
        for p in c2d.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    ckpt = tmp_path / "bit2d_shapes.pth"
    torch.save(_benchmarks_inflation().to_bit_2d_state_dict(c2d), ckpt)

    overrides = [
        o for o in _tiny_overrides(tiny_root, tmp_path / "run") if not o.startswith("--model.pretrained")
    ]
    cli = run_lightning_cli(
        [
            "fit",
            "-c",
            str(config),
            *overrides,
            f"--model.pretrained={ckpt}",  # the config's own path does not exist here
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
        ],
        run=False,
    )
    report = cli.model.pretrained_report
    assert report is not None and (report.source, report.method) == ("bit", "mean"), report
    assert not report.missing and not report.skipped, report
    sd2, sd3 = c2d.state_dict(), cli.model.model.state_dict()
    assert list(sd3) == list(sd2)  # bit_c2d and bit_i3d differ only in their temporal kernel sizes
    assert sorted(report.inflated) == sorted(k for k, v in sd2.items() if v.ndim == 5)
    inflated_in_time = 0
    for key, w2 in sd2.items():
        w3 = sd3[key]
        if w2.ndim == 5:
            # Mean inflation into a WS conv: every temporal tap is the 2D kernel (the 1/k_T of plain mean
            # inflation is a constant factor that the standardization removes).
            inflated_in_time += w3.shape[2] > 1
            torch.testing.assert_close(w3, w2.expand_as(w3), atol=0, rtol=0, msg=key)
        else:
            torch.testing.assert_close(w3, w2, atol=0, rtol=0, msg=key)  # GN affine, classifier
    assert inflated_in_time >= 10  # the stem (k_T 5) and the 3x1x1 convs of the I3D blocks

    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])


ALL_YAML = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(REPO / "configs")) for p in ALL_YAML])
def test_every_yaml_under_configs_parses(path, tmp_path, monkeypatch):
    """A `video-gn fit` config parses (with its `config:` includes); a sweep grid's runs parse as the sweep
    builds them (its `base:` configs, the cell's overrides and the grid's), so no file holds a wrong key."""
    import yaml

    from video_gn.sweep import fit_args, load_spec

    monkeypatch.chdir(REPO)  # grids name their base configs relative to the repository
    if "experiments" not in (yaml.safe_load(path.read_text()) or {}):
        parse_config(["-c", str(path)])  # SystemExit on an unknown key or a wrong type
        return
    spec = load_spec(path)
    assert spec.base and all(Path(b).is_file() for b in spec.base)
    one_cell_per_norm = {c.norm: c for c in spec.cells}.values()
    for cell in one_cell_per_norm:
        cfg = parse_config(fit_args(spec, cell, spec.seeds[0], tmp_path / "run"))
        assert (cfg.model.norm, cfg.model.ws, cfg.data.batch_size) == (cell.kind, cell.ws, cell.batch)


def test_table8_configs_are_imagenet_initialised_except_gn_ws():
    # The GN paper fine-tunes ImageNet models (BN from a BN net, GN from a GN net); GN+WS has none here.
    files = {
        "bn": "resnet50-0676ba61.pth",
        "syncbn": "resnet50-0676ba61.pth",
        "gn": "resnet50_gn.a1h_in1k.safetensors",
    }
    base_comment = (REPO / "configs" / "kinetics400" / "base.yaml").read_text()
    for config in (REPO / "configs" / "kinetics400").glob("i3d_r50_*_*x*_b*.yaml"):
        norm = config.name.split("_")[2]
        pretrained = parse_config(["-c", str(config)]).model.pretrained
        if norm == "gnws":
            assert pretrained is None, config.name
        else:
            assert pretrained == f"checkpoints/{files[norm]}", config.name
            assert f"checkpoints/{files[norm]}" in base_comment  # the command that makes the file


def test_missing_pretrained_file_fails_at_startup_naming_it_and_its_url(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ folder here
    config = REPO / "configs" / "kinetics400" / "i3d_r50_bn_32x2_b8.yaml"
    overrides = [o for o in _tiny_overrides(tiny_root, tmp_path) if not o.startswith("--model.pretrained")]
    with pytest.raises(
        FileNotFoundError, match=r"checkpoints/resnet50-0676ba61\.pth.*https://download\.pytorch"
    ):
        run_lightning_cli(["fit", "-c", str(config), *overrides], run=False)


def test_fit_validate_predict_end_to_end(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run)]) == 0
    ckpts = run / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    assert any(p.name.startswith("best-") for p in ckpts.iterdir())
    assert (ckpts / "classes.txt").read_text().split() == (tiny_root / "classes.txt").read_text().split()
    assert json.loads((ckpts / "classes.json").read_text()) == {
        "classes": (ckpts / "classes.txt").read_text().split()
    }
    # The resolved config is saved beside the logs.
    assert list(run.rglob("config.yaml"))

    # validate on the best checkpoint reproduces what fit logged at that checkpoint's epoch (same weights,
    # same deterministic val views).
    (best,) = [p for p in ckpts.iterdir() if p.name.startswith("best-")]
    epoch = torch.load(best, weights_only=True)["epoch"]
    with open(run / "logs" / "version_0" / "metrics.csv", newline="") as f:
        (fit_row,) = [r for r in csv.DictReader(f) if r.get("val/video_top1") and int(r["epoch"]) == epoch]
    cli = run_lightning_cli(["validate", *_quick(tiny_root, run), f"--ckpt_path={best}"])
    metrics = cli.trainer.callback_metrics
    for key in ("val/video_top1", "val/video_top5", "val/clip_top1", "val/loss"):
        assert float(metrics[key]) == pytest.approx(float(fit_row[key]), abs=1e-6), key

    video = next((tiny_root / "val").rglob("*.mp4"))
    capsys.readouterr()
    assert (
        main(["predict", str(video), "--ckpt_path", str(ckpts / "last.ckpt"), "--json", "--top_k", "3"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    (pred,) = out["predictions"]
    names = [n for n, _ in pred["top"]]
    probs = [p for _, p in pred["top"]]
    assert len(names) == 3 and set(names) <= set((ckpts / "classes.txt").read_text().split())
    assert probs == sorted(probs, reverse=True) and 0.0 < sum(probs) <= 1.0 + 1e-6


def _fit_recording_saves(args: list[str], *callbacks: L.Callback, ckpt_path: str | None = None):
    """Run ``fit`` as the CLI builds it, with extra callbacks; returns (cli, [(file name, global step) per save])."""
    cli = run_lightning_cli(["fit", *args], run=False)
    saves: list[tuple[str, int]] = []
    save = cli.trainer.save_checkpoint

    def recording_save(filepath, *a, **kw):
        save(filepath, *a, **kw)
        saves.append((Path(filepath).name, cli.trainer.global_step))

    cli.trainer.save_checkpoint = recording_save
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli, saves


# 16 training videos / batch 4 = 4 steps per epoch; validation only after epochs 1, 3, ...
_EVERY_2ND_EPOCH = (
    "--trainer.max_epochs=-1",
    "--trainer.max_steps=10",
    "--trainer.check_val_every_n_epoch=2",
)


def test_last_checkpoint_holds_the_final_step_between_validations(tiny_root, tmp_path):
    # The Kinetics recipe's shape: validation every few epochs, fit stopped by max_steps in between.
    run = tmp_path / "run"
    cli = run_lightning_cli(["fit", *_quick(tiny_root, run, *_EVERY_2ND_EPOCH)])
    assert cli.trainer.global_step == 10
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10
    torch.testing.assert_close(last["state_dict"], cli.model.state_dict(), atol=0, rtol=0)
    assert (run / "checkpoints" / "best-epoch001-step8.ckpt").is_file()  # the validation's best is kept


def test_last_every_n_steps_writes_between_validations(tiny_root, tmp_path):
    run = tmp_path / "run"
    _, saves = _fit_recording_saves(
        _quick(tiny_root, run, *_EVERY_2ND_EPOCH, "--checkpoint.last_every_n_steps=4")
    )
    # Every 4 steps; at step 8 the periodic save must not suppress the validation's best checkpoint, and
    # last.ckpt is written again after it (with the new best in its callback state); the end of fit at 10.
    assert saves == [
        ("last.ckpt", 4),
        ("last.ckpt", 8),
        ("best-epoch001-step8.ckpt", 8),
        ("last.ckpt", 8),
        ("last.ckpt", 10),
    ]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("VideoCheckpoint")]
    assert state["best_model_path"].endswith("best-epoch001-step8.ckpt")


def test_last_every_n_steps_writes_nothing_in_a_fast_dev_run(tiny_root, tmp_path):
    # Lightning writes no checkpoint in a debug run; a periodic last.ckpt would make the folder "taken".
    run = tmp_path / "run"
    assert (
        main(
            ["fit", *_quick(tiny_root, run, "--trainer.fast_dev_run=2", "--checkpoint.last_every_n_steps=1")]
        )
        == 0
    )
    assert not list(run.rglob("*.ckpt"))


def test_last_every_n_steps_must_be_positive(tiny_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(
            ["fit", *_quick(tiny_root, tmp_path, "--checkpoint.last_every_n_steps=0")], run=False
        )
    assert "checkpoint.last_every_n_steps" in capsys.readouterr().err


class _CrashAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


class _CountSteps(L.Callback):
    def __init__(self) -> None:
        self.started_at: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.started_at.append(trainer.global_step)


def test_resume_from_a_periodic_mid_epoch_last_checkpoint(tiny_root, tmp_path):
    args = _quick(tiny_root, tmp_path / "run", *_EVERY_2ND_EPOCH, "--checkpoint.last_every_n_steps=3")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit_recording_saves(args, _CrashAtStep(7))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6  # mid-epoch 1, no validation yet
    counter = _CountSteps()
    cli, _ = _fit_recording_saves(args, counter, ckpt_path="last")
    assert counter.started_at == [6, 7, 8, 9]  # continued at step 6, did not start over
    assert torch.load(last, weights_only=True)["global_step"] == cli.trainer.global_step == 10


class _PoisonWeightsAtStep(L.Callback):
    """Makes the weights non-finite after the optimiser step of ``step`` (as a blown-up update would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_final_last_checkpoint_is_not_written_from_non_finite_weights(tiny_root, tmp_path):
    run = tmp_path / "run"
    args = _quick(tiny_root, run, *_EVERY_2ND_EPOCH, "--checkpoint.last_every_n_steps=4")
    with pytest.raises(FloatingPointError, match="Refusing to write a checkpoint at global step 10"):
        _fit_recording_saves(args, _PoisonWeightsAtStep(10))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8  # the good state before is kept
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_fit_without_logger(tiny_root, tmp_path, capsys):
    from lightning.pytorch.callbacks import LearningRateMonitor

    run = tmp_path / "run"
    cli = run_lightning_cli(
        ["fit", *_quick(tiny_root, run, "--trainer.logger=false", "--trainer.limit_train_batches=1")]
    )
    assert cli.trainer.logger is None and cli.trainer.global_step == 1
    assert not any(isinstance(c, LearningRateMonitor) for c in cli.trainer.callbacks)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    out = capsys.readouterr()
    # the printed evaluate command names the config saved in default_root_dir, not a placeholder
    assert f"evaluate: video-gn validate -c {run / 'config.yaml'} --ckpt_path" in out.out + out.err
    with_logger = run_lightning_cli(["fit", *_quick(tiny_root, tmp_path / "logged")], run=False)
    assert any(isinstance(c, LearningRateMonitor) for c in with_logger.trainer.callbacks)


class _StopAfterFirstEpoch(L.Callback):
    """Simulates an interruption: the run stops after epoch 0 (its last.ckpt is written), max_epochs unchanged."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _logged_train_steps(run: Path, version: int) -> list[tuple[int, int]]:
    """(epoch, step) of every train/loss row one `video-gn fit` process wrote to its CSV log."""
    with open(run / "logs" / f"version_{version}" / "metrics.csv", newline="") as f:
        return [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(f) if r.get("train/loss")]


def test_resume_gives_same_weights_as_straight_run(tiny_root, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    every_step = "--trainer.log_every_n_steps=1"
    run_lightning_cli(["fit", *_quick(tiny_root, straight, "--trainer.max_epochs=2", every_step)])
    cli = run_lightning_cli(
        ["fit", *_quick(tiny_root, resumed, "--trainer.max_epochs=2", every_step)], run=False
    )
    cli.trainer.callbacks.append(_StopAfterFirstEpoch())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.current_epoch == 1  # stopped after one of two epochs
    run_lightning_cli(
        ["fit", *_quick(tiny_root, resumed, "--trainer.max_epochs=2", every_step, "--ckpt_path=last")]
    )
    # The resumed process (log version 1) trained only epoch 1, from step 4: it did not start over. A run
    # that ignored the checkpoint would also end with the straight run's weights, so this is the real check.
    assert _logged_train_steps(resumed, 0) == [(0, s) for s in range(4)]
    assert _logged_train_steps(resumed, 1) == [(1, s) for s in range(4, 8)]
    assert _logged_train_steps(straight, 0) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
    ]
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    for k, v in a["state_dict"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, b["state_dict"][k], atol=1e-6, rtol=0, msg=k)


def test_non_finite_loss_stops_without_overwriting_checkpoint(tiny_root, tmp_path):
    run = tmp_path / "run"
    run_lightning_cli(["fit", *_quick(tiny_root, run)])
    last = run / "checkpoints" / "last.ckpt"
    number = r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
    with pytest.raises(FloatingPointError, match=rf"global step \d+ .*last learning rate {number}\.") as err:
        # A fresh run into the same checkpoint folder (the CLI refuses that without --ckpt_path; resuming would
        # restore the good run's learning rate): built by the CLI, started directly.
        cli = run_lightning_cli(
            ["fit", *_quick(tiny_root, run, "--model.lr=1e30", "--trainer.max_epochs=3")], run=False
        )
        cli.trainer.fit(cli.model, cli.datamodule)
    # The rate the optimiser last used: at most the peak 1e30 x 4/64 clips (warm-up ramps up to it).
    lr = float(re.search(rf"last learning rate {number}\.", str(err.value)).group(1))
    assert 0.0 < lr <= 1e30 * 4 / 64 * (1 + 1e-6), err.value
    # Whatever the exploding run managed to save, no checkpoint on disk holds a NaN/inf weight.
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt
    assert last.is_file()


def test_scaled_learning_rate_is_logged_at_start(tiny_root, tmp_path, caplog):
    # model.lr is per 64 clips; the global batch is devices 1 x batch 4 x accumulation 2 = 8 clips.
    args = _quick(
        tiny_root,
        tmp_path / "run",
        "--model.lr=0.01",
        "--model.lr_scaling=linear",
        "--trainer.accumulate_grad_batches=2",
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
    )
    with caplog.at_level(logging.INFO):
        cli = run_lightning_cli(["fit", *args])
    assert cli.trainer.global_step == 1
    (line,) = [m for m in caplog.messages if "per 64 clips" in m]
    assert re.search(r"\blr 0\.01 per 64 clips, linear scaling to global batch 8 = 0\.00125\b", line), line


def test_checkpoint_with_non_finite_weights_is_refused():
    from video_gn.module import VideoClassifier

    model = VideoClassifier(name="r3d_18", num_classes=3, width=8)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="Refusing to write a checkpoint"):
        model.on_save_checkpoint({})


def test_wrong_config_fails_at_startup_with_clear_message(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "video_gn.cli",
            "fit",
            "-c",
            str(REPO / "configs" / "quickstart.yaml"),
            "--model.norm=batchnorm",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "model.norm" in proc.stderr and "gn" in proc.stderr


@pytest.mark.parametrize("option", ["--model.lr_scalin=sqrt", "--data.num_frame=4"])
def test_abbreviated_or_misspelt_option_is_refused(option, capsys):
    # argparse's default would read a prefix of a real option as that option, so a typo in a sweep grid's
    # overrides would pass silently.
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["-c", str(REPO / "configs" / "quickstart.yaml"), option])
    assert exit_info.value.code == 2
    assert option.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, wrong, meant",
    [
        (["plan", "--model", "r3d_18", "--frame", "8"], "--frame", "--frames"),
        (["sweep", "--ou", "runs/x", "--dry-run"], "--ou", "--out"),
        (["predict", "clip.mp4", "--ckpt", "last.ckpt"], "--ckpt", "--ckpt_path"),  # a required option missed
        (["predict", "clip.mp4", "--ckpt_path", "last.ckpt", "--num_clip", "3"], "--num_clip", "--num_clips"),
    ],
)
def test_argparse_commands_refuse_abbreviations_and_suggest_the_option(argv, wrong, meant, capsys):
    # As fit/validate/test: argparse's default would take --frame for --frames and run silently.
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{wrong}: did you mean {meant}" in err and "Traceback" not in err


def test_data_scripts_refuse_abbreviations_too(capsys):
    from video_gn.argparsing import CommandParser

    p = CommandParser(prog="x")
    p.add_argument("--short-side", type=int)
    p.add_argument("rest", nargs="*")
    assert p.parse_args(["--short-side", "256", "--", "--shrt"]).rest == ["--shrt"]  # after --: passed on
    with pytest.raises(SystemExit):
        p.parse_args(["--short", "256"])
    assert "--short: did you mean --short-side?" in capsys.readouterr().err
    out = subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / "resize_videos.py"), "a", "b", "--short", "256"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--short: did you mean --short-side?" in out.stderr


def test_misspelt_key_in_a_config_file_is_short_and_suggests_the_option(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"config: {REPO / 'configs' / 'quickstart.yaml'}\ndata:\n  batchsize: 4\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(typo)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "does not accept option 'data.batchsize'" in err
    assert "did you mean data.batch_size" in err and str(typo) in err
    assert "usage:" not in err and len(err.splitlines()) < 10  # not the ~90-line usage dump


def test_fit_without_config_points_at_the_quickstart_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data.root" in err  # the parser's own message stays
    assert err.strip().endswith("video-gn fit -c configs/quickstart.yaml")


def test_bf16_mixed_precision_trains_on_cpu(tiny_root, tmp_path):
    # GN+WS (the quick-start model): its 3x3x3 convs see T = 2 in stage 3, where torch's CPU bf16 conv3d
    # weight gradient is wrong without video_gn.nn's guard (video_gn/nn/conv.py).
    run = tmp_path / "bf16"
    cli = run_lightning_cli(
        [
            "fit",
            *_quick(
                tiny_root,
                run,
                "--trainer.precision=bf16-mixed",
                "--trainer.limit_train_batches=2",
                "--model.ws=true",
            ),
        ]
    )
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_experiment_config_composes_with_its_base(tiny_root, stand_in_2d):
    # configs/kinetics400/*.yaml start with `config: base.yaml`: the base must really be applied.
    cfg = REPO / "configs" / "kinetics400" / "i3d_r50_gn_64x1_b4.yaml"
    cli = run_lightning_cli(
        [
            "fit",
            "-c",
            str(cfg),
            _pretrained_override(cfg, stand_in_2d)[0],
            f"--data.root={tiny_root}",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.strategy=auto",
            "--data.num_workers=0",
        ],
        run=False,
    )
    hp = cli.model.hparams
    assert (hp.name, hp.norm, hp.ws, hp.lr, hp.schedule) == (
        "i3d_r50",
        "gn",
        False,
        0.01,
        "multistep",
    )  # base
    assert (cli.datamodule.num_frames, cli.datamodule.sampling_rate, cli.datamodule.batch_size) == (64, 1, 4)
    assert cli.trainer.max_steps == 400000
    from video_gn.callbacks import VideoCheckpoint

    (ckpt,) = [c for c in cli.trainer.callbacks if isinstance(c, VideoCheckpoint)]
    assert ckpt.last_every_n_steps == 5000  # base.yaml: validation only every 10 epochs


def test_config_include_cycle_and_missing_base_fail_clearly(tmp_path):
    from video_gn.cli import expand_config_includes

    (tmp_path / "a.yaml").write_text("config: b.yaml\n")
    (tmp_path / "b.yaml").write_text("config: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        expand_config_includes(["fit", "-c", str(tmp_path / "a.yaml")])
    (tmp_path / "c.yaml").write_text("config: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        expand_config_includes(["fit", "--config", str(tmp_path / "c.yaml")])
    (tmp_path / "d.yaml").write_text("model:\n  width: [8\n")
    with pytest.raises(ValueError, match=r"(?s)d\.yaml is not valid YAML.*line 2"):
        expand_config_includes(["fit", "-c", str(tmp_path / "d.yaml")])


def test_config_file_mistakes_are_one_line_errors_naming_the_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("config: nowhere.yaml\n")
    assert main(["fit", "-c", str(tmp_path / "c.yaml")]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err
    (tmp_path / "d.yaml").write_text("model:\n  width: [8\n")
    assert main(["fit", "-c", str(tmp_path / "d.yaml")]) == 2
    err = capsys.readouterr().err
    assert "d.yaml is not valid YAML" in err and "Traceback" not in err


def test_fresh_fit_into_a_folder_with_checkpoints_is_refused_and_resume_is_not(
    tiny_root, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    quick = _quick(tiny_root, run, "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1")
    assert main(["fit", *quick]) == 0
    before = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    capsys.readouterr()
    # A second fresh run would write last-v1.ckpt beside the first run's files, and a later
    # `--ckpt_path last` would pick either: refused, with both ways out named.
    assert main(["fit", *quick]) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "--ckpt_path last" in err and "default_root_dir" in err
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == before
    # Resuming it is fine (and writes last.ckpt again, no -v1 copy).
    assert main(["fit", *quick, "--ckpt_path=last", "--trainer.max_epochs=2"]) == 0
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names and not any("-v1" in n for n in names)
    # --ckpt_path last with nothing to resume starts from scratch and says so.
    fresh = _quick(
        tiny_root, tmp_path / "fresh", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"
    )
    capsys.readouterr()
    assert main(["fit", *fresh, "--ckpt_path=last"]) == 0
    assert "no last checkpoint" in capsys.readouterr().err
    # Only best-*.ckpt there (last.ckpt deleted): `--ckpt_path last` would start a new run among them: refused.
    (tmp_path / "fresh" / "checkpoints" / "last.ckpt").unlink()
    assert main(["fit", *fresh, "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err
    assert (
        "but no last.ckpt" in err
        and "--ckpt_path " + str(tmp_path / "fresh" / "checkpoints" / "best-") in err
    )
    # A SLURM requeue (same command, no --ckpt_path) finds Lightning's hpc_ckpt_*.ckpt and is let through.
    import shutil

    shutil.copy(run / "checkpoints" / "last.ckpt", run / "hpc_ckpt_1.ckpt")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")  # not "bash"/"interactive": a batch job Lightning manages
    assert main(["fit", *quick, "--trainer.max_epochs=3"]) == 0
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names and not any("-v1" in n for n in names)  # resumed, not a second run


def test_evaluating_a_checkpoint_needs_neither_its_pretrained_file_nor_lets_classes_mismatch(
    tiny_root, tmp_path, capsys
):
    # A run initialised from a local file: its checkpoints hold every weight, so validate (or a resume) must not
    # need that file again (Lightning copies the checkpoint's model settings, pretrained included, over the
    # command line).
    from video_gn.models import build

    pretrained = tmp_path / "init.pth"
    torch.save(build("r3d_18", num_classes=4, width=8).state_dict(), pretrained)
    run = tmp_path / "run"
    quick = _quick(tiny_root, run, "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1")
    assert main(["fit", *quick, f"--model.pretrained={pretrained}"]) == 0
    pretrained.unlink()
    last = run / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert main(["validate", *quick, f"--ckpt_path={last}"]) == 0
    assert "no --ckpt_path" not in capsys.readouterr().err
    # Without a checkpoint, validate says what it evaluates.
    assert main(["validate", *quick]) == 0
    assert "no --ckpt_path given: evaluating random weights" in capsys.readouterr().err
    # A checkpoint of another class count: one line naming both counts.
    other = tmp_path / "other"
    shutil.copytree(tiny_root, other)
    dropped = sorted(p.name for p in (other / "train").iterdir())[0]
    for split in ("train", "val"):
        shutil.rmtree(other / split / dropped)
    (other / "classes.txt").unlink()
    assert main(["validate", *_quick(other, run), f"--ckpt_path={last}"]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint's model has 4 classes, the data" in err and "has 3" in err


def test_a_run_without_a_known_length_is_refused_at_start(tiny_root, tmp_path, capsys):
    assert main(["fit", *_quick(tiny_root, tmp_path / "run", "--trainer.max_epochs=-1")]) == 2
    assert "is an endless run, but the learning-rate schedule needs its length" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before any log folder or config.yaml is written


def test_start_up_errors_are_one_line_with_exit_status_2(tiny_root, tmp_path, capsys):
    quick = _quick(tiny_root, tmp_path / "run")
    assert main(["validate", *quick, f"--ckpt_path={tmp_path / 'nope.ckpt'}"]) == 2
    err = capsys.readouterr().err
    assert "nope.ckpt: no such file" in err and "Traceback" not in err
    # A GPU recipe on a CPU machine: the fix is in the message.
    cfg = REPO / "configs" / "kinetics400" / "i3d_r50_gn_32x2_b8.yaml"
    assert main(["fit", "-c", str(cfg), f"--data.root={tiny_root}", "--model.pretrained=null"]) == 2
    err = capsys.readouterr().err
    assert "--trainer.accelerator cpu" in err
    # A value the model refuses at build time (40 stem channels, 32 groups): the message, not a traceback.
    assert main(["fit", *quick, "--model.width=10"]) == 2
    err = capsys.readouterr().err
    assert "valid group counts for 40 channels" in err and "--model.gn_groups auto" in err


def test_gn_groups_auto_builds_widths_32_does_not_divide(tiny_root, tmp_path):
    cli = run_lightning_cli(
        ["fit", *_quick(tiny_root, tmp_path / "run", "--model.width=10", "--model.gn_groups=auto")], run=False
    )
    groups = {m.num_channels: m.num_groups for m in cli.model.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups[10] == 10 and groups[40] == 20 and groups[80] == 20


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("--model.weight_decay=-1", "model.weight_decay"),
        ("--model.gamma=-1", "model.gamma"),
        ("--model.label_smoothing=2", "model.label_smoothing"),
        ("--model.momentum=1.5", "model.momentum"),
    ],
)
def test_out_of_range_optimisation_settings_fail_at_start_naming_the_option(
    option, named, tiny_root, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run, option)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not (run / "logs").exists()  # refused before the run wrote anything


def test_lightning_optimizer_options_are_refused(capsys):
    """--optimizer / --lr_scheduler would replace VideoClassifier's optimiser, lr scaling and schedule."""
    for option in ("--optimizer=AdamW", "--lr_scheduler=StepLR"):
        with pytest.raises(SystemExit) as exit_info:
            parse_config(["-c", str(REPO / "configs" / "quickstart.yaml"), option])
        assert exit_info.value.code == 2
        assert option.split("=")[0] in capsys.readouterr().err


def test_resuming_with_another_lr_says_which_lr_trains(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run, "--model.lr=0.1")]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"resumed at step 4: .* peak lr 0\.00625, not the 0\.0025"):
        resumed = [
            "fit",
            *_quick(tiny_root, run, "--model.lr=0.04", "--trainer.max_epochs=2", "--ckpt_path=last"),
        ]
        assert main(resumed) == 0
    # An explicit checkpoint file: Lightning puts the checkpoint's model settings over the config's; say so.
    last = run / "checkpoints" / "last.ckpt"
    other = _quick(
        tiny_root, tmp_path / "other", "--model.lr=0.02", "--trainer.max_epochs=2", f"--ckpt_path={last}"
    )
    with pytest.warns(
        UserWarning, match=r"uses the checkpoint's model settings, not the config's: model\.lr 0\.02 -> 0\.04"
    ):
        assert main(["fit", *other]) == 0


def test_fit_summary_says_when_the_final_model_was_not_validated(tiny_root, tmp_path, capsys):
    """max_steps in the middle of an epoch: the last validation (and so the best checkpoint) is older."""
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run, "--trainer.max_epochs=-1", "--trainer.max_steps=6")]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "was not validated" in x)
    assert "the final model (step 6) was not validated (last validation: step 4)" in line
    assert line.endswith(f"--ckpt_path {run / 'checkpoints' / 'last.ckpt'}")
    assert main(["fit", *_quick(tiny_root, tmp_path / "whole")]) == 0  # ends on a validation: no such line
    assert "was not validated" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_ckpt_path_best_points_at_the_best_file(tiny_root, tmp_path, capsys, command):
    run = tmp_path / "run"
    main(["fit", *_quick(tiny_root, run)])
    capsys.readouterr()
    assert main([command, *_quick(tiny_root, run), "--ckpt_path=best"]) == 2
    err = capsys.readouterr().err
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    assert (
        "--ckpt_path best names the best checkpoint of a fit in this same process" in err and str(best) in err
    )


class _SigtermAtStep(L.Callback):
    """Does what Lightning's SIGTERM handler does (sets ``received_sigterm``) after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            trainer._signal_connector.received_sigterm = True  # what its SIGTERM handler sets


def test_sigterm_writes_last_checkpoint_and_exits_143(tiny_root, tmp_path, monkeypatch, capsys):
    """A pre-empted run (SLURM's SIGTERM) keeps its work: last.ckpt at the step it stopped, a non-zero status."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    run = tmp_path / "run"
    args = _quick(tiny_root, run, "--checkpoint.last_every_n_steps=2")  # one epoch is 4 steps
    cli = run_lightning_cli(["fit", *args], run=False)
    cli.trainer.callbacks.append(_SigtermAtStep(3))
    with pytest.raises(SIGTERMException):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    torch.testing.assert_close(last["state_dict"], cli.model.state_dict(), atol=0, rtol=0)
    err = capsys.readouterr().err
    assert "SIGTERMException at step 3: wrote" in err
    # the summary line is made before the checkpoint callback writes, and must not call the step lost
    assert "fit stopped by SIGTERMException" in err and "not saved" not in err
    assert f"resume from {run / 'checkpoints' / 'last.ckpt'} with --ckpt_path last" in err

    def stopped(args):
        raise SIGTERMException()

    monkeypatch.setattr("video_gn.cli.run_lightning_cli", stopped)
    assert main(["fit", "-c", "x.yaml"]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as under a terminal, whatever this test run inherited (a job started in the
    background of a non-interactive shell ignores SIGINT, and GracefulStop rightly leaves that alone)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def _default_sigint() -> None:
    """``preexec_fn`` of a command that must react to SIGINT whatever this test run inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _CtrlCAtStep(L.Callback):
    """Sends this process SIGINT, as a terminal's Ctrl-C does, ``presses`` times at the end of step ``step``."""

    def __init__(self, step: int, presses: int = 1) -> None:
        self.step, self.presses = step, presses

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)


def test_first_ctrl_c_stops_fit_at_the_next_step_and_writes_last_checkpoint(
    tiny_root, tmp_path, capsys, python_sigint
):
    """Ctrl-C lands mid-step; fit finishes that step, stops, and last.ckpt holds exactly the weights at the stop."""
    from video_gn.callbacks import GracefulStop
    from video_gn.errors import FitInterrupted

    run = tmp_path / "run"
    cli = run_lightning_cli(["fit", *_quick(tiny_root, run, "--trainer.max_epochs=3")], run=False)
    assert sum(isinstance(c, GracefulStop) for c in cli.trainer.callbacks) == 1  # a default callback
    # Appended last, so GracefulStop has already looked at step 2 when the signal comes: it stops after step 3,
    # as when Ctrl-C lands in the middle of a step.
    cli.trainer.callbacks.append(_CtrlCAtStep(2))
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(FitInterrupted) as stop:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert signal.getsignal(signal.SIGINT) is before  # handed back when fit ends
    last = run / "checkpoints" / "last.ckpt"
    assert stop.value.step == 3 and stop.value.saved_checkpoint == str(last)
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 3
    torch.testing.assert_close(saved["state_dict"], cli.model.state_dict(), atol=0, rtol=0)
    err = capsys.readouterr().err
    assert "Ctrl-C: fit stops after this training batch and writes last.ckpt" in err
    assert "FitInterrupted at step 3: wrote" in err
    assert "not saved" not in err
    # Resuming continues from step 3 to the end (3 epochs of 4 steps).
    assert main(["fit", *_quick(tiny_root, run, "--trainer.max_epochs=3", "--ckpt_path=last")]) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 12


def test_first_ctrl_c_exits_130_naming_the_checkpoint(monkeypatch, capsys):
    from video_gn.errors import FitInterrupted

    def interrupted(args):
        err = FitInterrupted(7)
        err.saved_checkpoint = "runs/x/checkpoints/last.ckpt"
        raise err

    monkeypatch.setattr("video_gn.cli.run_lightning_cli", interrupted)
    assert main(["fit", "-c", "x.yaml"]) == 130
    assert capsys.readouterr().err.strip() == (
        "video-gn fit: interrupted by Ctrl-C at step 7; the weights are in runs/x/checkpoints/last.ckpt "
        "(resume with --ckpt_path last)"
    )


def _ddp_rank_pid(parent: int, rank: int) -> int:
    """The pid of the DDP rank ``rank`` that Lightning's launcher started as a child of ``parent``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            if f"LOCAL_RANK={rank}".encode() in (stat.parent / "environ").read_bytes().split(b"\0"):
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    raise AssertionError(f"no rank {rank} child of {parent}")


@pytest.mark.parametrize(
    "ddp, target",
    [(False, "group"), (True, "group"), (True, "rank1")],
    ids=["one-process", "ddp-terminal", "ddp-sigint-to-rank-1-only"],
)
def test_ctrl_c_from_a_terminal_stops_the_fit_command_with_its_checkpoint(tiny_root, tmp_path, ddp, target):
    """The real command, with a DataLoader worker, interrupted the way a terminal does: SIGINT to the whole
    process group (workers and DDP ranks included). Under DDP every rank stops at the same step, and the save
    is collective; so a SIGINT that reaches one rank only must stop them all (else the others hang)."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    with _fit_in_the_background(tiny_root, run, ddp) as proc:
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(_ddp_rank_pid(proc.pid, 1), signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = torch.load(last, weights_only=True)["global_step"]
    assert step >= 2
    assert f"video-gn fit: interrupted by Ctrl-C at step {step}; the weights are in" in err
    assert "exited unexpectedly" not in err and "Traceback" not in err


@pytest.mark.parametrize("split", ["train", "val"])
def test_ddp_rank_with_too_many_bad_videos_stops_every_rank_together_and_saves(tiny_root, tmp_path, split):
    """One video goes bad mid-run: only the rank whose shard holds it passes max_fail_fraction. Raised there
    alone, the other rank died in its next all-reduce (a gloo traceback; NCCL hangs) and nothing was saved."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    run = tmp_path / "run"
    with _fit_in_the_background(root, run, True, "--data.max_fail_fraction=0.1") as proc:
        next((root / split).rglob("*.mp4")).write_bytes(b"")
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    shard = {"train": 8, "val": 4}[split]  # tiny_root's 16 train and 8 val videos over 2 ranks
    assert f"1 of {shard} {split} videos failed to decode" in err
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert f"TooManyFailedVideos at step {step}: wrote" in err and "The weights so far are in" in err
    assert "Traceback" not in err


@contextlib.contextmanager
def _fit_in_the_background(root: Path, run: Path, ddp: bool, *extra: str):
    """``video-gn fit`` (one DataLoader worker, DDP on 2 processes or not) in its own process group, as a
    terminal's foreground job, handed over once training has run a step; killed if still running at the end."""
    args = _quick(
        root,
        run,
        "--trainer.max_epochs=1000",
        "--data.num_workers=1",
        "--checkpoint.last_every_n_steps=1",
        *extra,
    )
    if ddp:
        args += ["--trainer.devices=2", "--trainer.strategy=ddp"]
    proc = subprocess.Popen(
        ["video-gn", "fit", *args],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    try:
        last = run / "checkpoints" / "last.ckpt"  # written at step 1: training (and the handler) has started
        for _ in range(1200):
            if last.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert last.exists(), proc.stderr.read() if proc.poll() is not None else "fit did not start in 120 s"
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class _KeyboardInterruptAtStep(L.Callback):
    """Raises ``KeyboardInterrupt`` itself at the end of step ``step``, as code (or a debugger) can."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "interrupt",
    [lambda: _CtrlCAtStep(3, presses=2), lambda: _KeyboardInterruptAtStep(3)],
    ids=["ctrl-c-twice", "bare-keyboard-interrupt"],
)
def test_ctrl_c_twice_stops_fit_at_once_names_the_unsaved_steps_and_exits_130(
    tiny_root, tmp_path, monkeypatch, capsys, python_sigint, interrupt
):
    """A second Ctrl-C (or a KeyboardInterrupt raised by code) stops at once: nothing is written there."""
    run = tmp_path / "run"
    cli = run_lightning_cli(["fit", *_quick(tiny_root, run, "--checkpoint.last_every_n_steps=2")], run=False)
    cli.trainer.callbacks.append(interrupt())
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C while it shuts down
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert exit_info.value.code == 1 and isinstance(exit_info.value.__context__, KeyboardInterrupt)
    err = capsys.readouterr().err
    last = run / "checkpoints" / "last.ckpt"
    assert f"resume from {last} (step 2; the 1 step after it were not saved) with --ckpt_path last" in err
    assert torch.load(last, weights_only=True)["global_step"] == 2  # nothing written at the interrupt

    def interrupted(args):  # what Lightning does on Ctrl-C
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    monkeypatch.setattr("video_gn.cli.run_lightning_cli", interrupted)
    assert main(["fit", "-c", "x.yaml"]) == 130


def test_too_many_bad_videos_mid_fit_saves_the_weights_and_is_one_message(tiny_root, tmp_path, capsys):
    """Videos that go bad during a run (a file system failing): fit stops with the list of files, no
    traceback, and the weights trained so far are in last.ckpt."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    run = tmp_path / "run"
    args = [*_quick(root, run), "--trainer.max_epochs=3", "--data.max_fail_fraction=0.1"]

    class BreakVideosAfterFirstEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, *args) -> None:
            for video in sorted((root / "train").rglob("*.mp4"))[:4]:
                video.write_bytes(b"")

    cli = run_lightning_cli(["fit", *args], run=False)
    cli.trainer.callbacks.append(BreakVideosAfterFirstEpoch())
    from video_gn.errors import TooManyFailedVideos

    with (
        pytest.warns(RuntimeWarning, match="skipping unreadable video"),
        pytest.raises(TooManyFailedVideos) as err,
    ):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    step = cli.trainer.global_step
    assert step >= 4 and err.value.saved_checkpoint == str(run / "checkpoints" / "last.ckpt")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step
    capsys.readouterr()

    # Through the command: one message naming the files, exit status 1.
    shutil.rmtree(run)
    shutil.rmtree(root)
    shutil.copytree(tiny_root, root)
    assert main(["fit", *args]) == 0
    for video in sorted((root / "val").rglob("*.mp4")):
        video.write_bytes(b"")
    with pytest.warns(RuntimeWarning):
        assert main(["validate", *args, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]) == 1
    err = capsys.readouterr().err
    assert (
        "video-gn validate: error:" in err and "val videos failed to decode" in err and "Traceback" not in err
    )


@pytest.mark.parametrize("damage", ["cut", "empty", "state_dict"])
def test_damaged_or_foreign_checkpoint_is_a_one_line_error(tiny_root, tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run)]) == 0
    last = run / "checkpoints" / "last.ckpt"
    if damage == "cut":  # a copy killed half-way (Lightning's cross-file-system move)
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    elif damage == "empty":
        last.write_bytes(b"")
    else:
        torch.save(torch.load(last, weights_only=True)["state_dict"], last)
    capsys.readouterr()
    assert main(["fit", *_quick(tiny_root, run), "--trainer.max_epochs=2", "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err
    assert f"--ckpt_path last: {last}" in err and "Traceback" not in err
    want = {
        "cut": "cut short or corrupt",
        "empty": "is empty (0 bytes)",
        "state_dict": "set model.pretrained",
    }
    assert want[damage] in err
    assert main(["validate", *_quick(tiny_root, run), f"--ckpt_path={last}"]) == 2
    assert want[damage] in capsys.readouterr().err


def test_an_unreadable_checkpoint_error_says_which_kind_of_file_it_is(tmp_path):
    """A text file, a torch file of pickled objects, a cut zip: three causes, three messages, no torch essay."""
    from video_gn.checkpoint_io import read_checkpoint

    text = tmp_path / "config.yaml"
    text.write_text("model:\n  name: r3d_18\n")
    objects = tmp_path / "module.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "model": nn.Linear(2, 2)}, objects)
    cut = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, cut)
    cut.write_bytes(cut.read_bytes()[:600])
    folder = tmp_path / "a_folder.ckpt"
    folder.mkdir()
    want = {
        text: "not a file written by torch.save (it starts with b'model:\\n ')",
        objects: "pickled Python objects besides tensors",
        cut: "cut short or corrupt",
        folder: "it cannot be opened (IsADirectoryError",  # explaining must not raise a second OSError
    }
    for path, reason in want.items():
        with pytest.raises(ValueError) as info:
            read_checkpoint(path)
        message = str(info.value)
        assert f"--ckpt_path {path} could not be read as a checkpoint: " in message and reason in message
        assert "\n" not in message and len(message) < 500, message


def test_checkpoints_are_written_next_to_their_target_and_renamed(tiny_root, tmp_path, monkeypatch):
    """A write that fails half-way (full disk, killed job) leaves the previous checkpoint whole."""
    from video_gn.checkpoint_io import AtomicCheckpointIO

    cli = run_lightning_cli(["fit", *_quick(tiny_root, tmp_path / "run")], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    io, target = AtomicCheckpointIO(), tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary left


def test_a_second_fit_into_a_folder_in_use_is_refused(tiny_root, tmp_path, capsys):
    """Two fits into one folder, the first not yet at its first checkpoint: the second is refused at start."""
    from video_gn.runlock import lock_folder

    run = tmp_path / "run"
    other = subprocess.Popen(
        [sys.executable, "-c", f"from video_gn.runlock import lock_folder; import time; "
         f"f = lock_folder({str(run)!r}, 'video-gn fit'); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "held"
        assert main(["fit", *_quick(tiny_root, run)]) == 2
        err = capsys.readouterr().err
        assert f"trainer.default_root_dir {run} is in use by video-gn fit (pid {other.pid}" in err
    finally:
        other.kill()
        other.wait()
    assert main(["fit", *_quick(tiny_root, run)]) == 0  # the holder is gone: its lock went with it
    assert (
        main(["fit", *_quick(tiny_root, run), "--ckpt_path=last", "--trainer.max_epochs=2"]) == 0
    )  # released
    held = lock_folder(run, "test")  # and after a run, in the same process, the folder is free
    assert held is not None
    held.close()
