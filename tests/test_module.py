"""Tests for VideoClassifier's optimiser set-up: lr scaling rules, schedule shape, no decay on norms/biases."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from video_gn.module import VideoClassifier, lr_factor_fn
from video_gn.nn import is_norm


def _attached(model: VideoClassifier, *, devices: int, batch: int, accumulate: int) -> VideoClassifier:
    """Attach a stand-in trainer exposing what global_batch_size() reads."""
    trainer = SimpleNamespace(
        world_size=devices,
        accumulate_grad_batches=accumulate,
        datamodule=SimpleNamespace(batch_size=batch),
        estimated_stepping_batches=100,
        optimizers=[],
    )
    model._trainer = trainer  # what Lightning sets when it attaches a trainer
    return model


def _tiny(**kw) -> VideoClassifier:
    return VideoClassifier(name="r3d_18", num_classes=3, width=4, **kw)


@pytest.mark.parametrize(
    ("rule", "devices", "batch", "accumulate", "expected"),
    [
        ("linear", 8, 8, 1, 0.1),  # the reference batch: lr as given
        ("linear", 1, 2, 1, 0.1 * 2 / 64),
        ("linear", 2, 4, 2, 0.1 * 16 / 64),  # devices x batch x accumulation
        ("sqrt", 1, 2, 1, 0.1 * math.sqrt(2 / 64)),
        ("sqrt", 4, 4, 4, 0.1),  # 64 clips per step
        ("none", 1, 2, 1, 0.1),
    ],
)
def test_lr_scaling_rules(rule, devices, batch, accumulate, expected):
    model = _attached(_tiny(lr=0.1, lr_scaling=rule), devices=devices, batch=batch, accumulate=accumulate)
    assert model.global_batch_size() == devices * batch * accumulate
    assert model.scaled_lr() == pytest.approx(expected, rel=1e-12)
    opt = model.configure_optimizers()["optimizer"]  # the scheduler keeps the peak lr as initial_lr
    assert all(g["initial_lr"] == pytest.approx(expected, rel=1e-12) for g in opt.param_groups)


def test_unknown_lr_scaling_is_rejected_by_the_cli(capsys):
    from video_gn.cli import main

    quickstart = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(quickstart), "--model.lr_scaling", "cube", "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model.lr_scaling" in err and "cube" in err and "'linear', 'sqrt', 'none'" in err


def test_no_weight_decay_on_norm_parameters_and_biases():
    model = _tiny(norm="gn", ws=True, weight_decay=0.05)
    decay, no_decay = model._param_groups()
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    norm_ids = {id(p) for m in model.model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    assert norm_ids and norm_ids <= {id(p) for p in no_decay["params"]}
    assert all(p.ndim > 1 for p in decay["params"])  # conv and linear weights only
    n_all = sum(1 for p in model.model.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(no_decay["params"]) == n_all


def test_schedule_warmup_then_cosine_to_zero():
    hp = SimpleNamespace(schedule="cosine", warmup_fraction=0.1, milestones=None, gamma=0.1)
    f = lr_factor_fn(100, hp)
    assert [f(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    values = [f(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay after warm-up
    assert f(55) == pytest.approx(0.5, abs=1e-12)  # half-way through the cosine
    assert f(100) == pytest.approx(0.0, abs=1e-12)


def test_schedule_multistep_fractions_and_absolute_steps():
    hp = SimpleNamespace(schedule="multistep", warmup_fraction=0.0, milestones=[0.5, 80], gamma=0.1)
    f = lr_factor_fn(100, hp)
    assert f(0) == 1.0 and f(49) == 1.0
    assert f(50) == pytest.approx(0.1) and f(79) == pytest.approx(0.1)
    assert f(80) == pytest.approx(0.01)


class _RandomClips(L.LightningDataModule):
    """12 random 4-frame clips of 3 classes; ``batch_size`` is what VideoClassifier.global_batch_size reads."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        clips = [
            {"video": torch.randn(3, 4, 16, 16, generator=g), "label": torch.tensor(i % 3)} for i in range(12)
        ]
        return DataLoader(clips, batch_size=self.batch_size)


class _LrAtStep(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("linear", 0.1 * 6 / 64), ("sqrt", 0.1 * math.sqrt(6 / 64)), ("none", 0.1)],
)
def test_the_lr_a_real_trainer_steps_with_is_scaled_by_batch_times_accumulation(rule, expected):
    # lr 0.1 is per 64 clips; batch 2 x accumulation 3 on one device = 6 clips per optimiser step.
    model = _tiny(lr=0.1, lr_scaling=rule, schedule="multistep", milestones=[100], warmup_fraction=0.0)
    seen = _LrAtStep()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        accumulate_grad_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[seen],
    )
    trainer.fit(model, datamodule=_RandomClips(batch_size=2))
    assert trainer.global_step == 2 and len(seen.lrs) == 2
    for (
        lrs
    ) in seen.lrs:  # both parameter groups (decay / no decay), both steps (no warm-up, milestone at 100)
        assert lrs == pytest.approx([expected, expected], rel=1e-12)


def test_optimiser_choice():
    sgd = _attached(_tiny(optimizer="sgd", momentum=0.9, nesterov=True), devices=1, batch=8, accumulate=1)
    opt = sgd.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    adamw = _attached(_tiny(optimizer="adamw"), devices=1, batch=8, accumulate=1)
    assert isinstance(adamw.configure_optimizers()["optimizer"], torch.optim.AdamW)


def _views_batch(probs: list[list[float]], labels: list[int], videos: list[int]) -> dict[str, torch.Tensor]:
    # The model's forward is replaced by the identity below: "video" carries the logits, log(p), so that the
    # softmax the module takes gives back exactly p.
    return {
        "video": torch.tensor(probs, dtype=torch.float64).log(),
        "label": torch.tensor(labels),
        "video_index": torch.tensor(videos),
    }


def test_multi_view_averaging_gives_video_level_accuracy_by_hand():
    """2 videos x 3 views over 6 classes, split across two batches; expected numbers worked out by hand.

    video 0 (label 0): views a, b = [.40 .30 .10 .10 .05 .05] (right), c = [.01 .90 .03 .02 .02 .02] (wrong, and
        the label is its least likely class). Mean [.27 .50 .077 .073 .04 .04]: predicts class 1, wrong;
        the label is 2nd, so in the top 5.
    video 1 (label 5): view a = [.50 .05 .05 .05 .05 .30] (wrong), b, c = [.05 .05 .05 .05 .05 .75] (right).
        Mean [.20 .05 .05 .05 .05 .60]: right.
    clip top-1 = 4/6 (v0: a, b; v1: b, c), clip top-5 = 5/6 (all but v0 c), video top-1 = 1/2, video top-5 = 1.
    """
    model = VideoClassifier(name="r3d_18", num_classes=6, width=4).double()
    model.forward = lambda video: video
    logged: dict[str, object] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    v0ab, v0c = [0.40, 0.30, 0.10, 0.10, 0.05, 0.05], [0.01, 0.90, 0.03, 0.02, 0.02, 0.02]
    v1a, v1bc = [0.50, 0.05, 0.05, 0.05, 0.05, 0.30], [0.05, 0.05, 0.05, 0.05, 0.05, 0.75]

    model.on_validation_epoch_start()
    # Views of one video in different batches and interleaved with the other video's.
    model.validation_step(_views_batch([v0ab, v1a, v0ab, v1bc], [0, 5, 0, 5], [0, 1, 0, 1]), 0)
    model.validation_step(_views_batch([v0c, v1bc], [0, 5], [0, 1]), 1)
    model.on_validation_epoch_end()

    assert model.val_clip_top1.compute().item() == pytest.approx(4 / 6, abs=1e-7)
    assert model.val_clip_top5.compute().item() == pytest.approx(5 / 6, abs=1e-7)
    assert float(logged["val/video_top1"]) == pytest.approx(1 / 2, abs=1e-7)
    assert float(logged["val/video_top5"]) == pytest.approx(1.0, abs=1e-7)
    assert model._views == {}  # reset for the next epoch


def test_pretrained_method_reaches_the_inflation(tmp_path) -> None:
    import torchvision

    torch.save(torchvision.models.resnet50(num_classes=5).state_dict(), tmp_path / "r50.pth")
    kernels = {}
    for method in ("mean", "center"):
        module = VideoClassifier(name="i3d_r50", num_classes=5, norm="bn", ws=False, width=64,
                                 pretrained=str(tmp_path / "r50.pth"), pretrained_method=method)  # fmt: skip
        assert module.pretrained_report.method == method
        conv = next(
            m for m in module.model.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size[0] == 3
        )
        kernels[method] = conv.weight.detach()
    # "center": the 2D kernel on the middle frame only; "mean": the same kernel / 3 on every frame.
    assert kernels["center"][:, :, 0].abs().sum() == 0 and kernels["center"][:, :, 1].abs().sum() > 0
    torch.testing.assert_close(kernels["mean"][:, :, 0] * 3, kernels["center"][:, :, 1])


def test_ws_eps_defaults_to_the_models_registered_value() -> None:
    from video_gn.nn import WSConv3d

    def eps(**kw) -> set[float]:
        module = VideoClassifier(num_classes=3, width=8, **kw)
        return {m.eps for m in module.model.modules() if isinstance(m, WSConv3d)}

    assert eps(name="r3d_18") == {1e-6}
    assert eps(name="bit_c2d_r50x1") == {1e-8}  # BiT checkpoints were trained with eps 1e-8
    assert eps(name="bit_c2d_r50x1", ws_eps=1e-6) == {1e-6}


def test_frozen_bn_from_scratch_warns() -> None:
    with pytest.warns(UserWarning, match="frozen_bn without model.pretrained"):
        VideoClassifier(name="r3d_18", num_classes=3, width=8, norm="frozen_bn", ws=False)


def test_pretrained_gn_groups_tells_the_inflation_report_the_2d_group_count(tmp_path) -> None:
    """A state dict does not record GroupNorm's group count: model.pretrained_gn_groups does."""
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("resnetv2_50x1_bit", num_classes=4).state_dict(), tmp_path / "bit.pth")

    def notes(source_groups: int | None) -> list[str]:
        # The 3D model normalises with 16 groups; the 2D network is declared to have used `source_groups`.
        module = VideoClassifier(name="bit_c2d_r50x1", num_classes=3, width=64, gn_groups=16, ws_eps=1e-8,
                                 pretrained=str(tmp_path / "bit.pth"), pretrained_gn_groups=source_groups)  # fmt: skip
        return module.pretrained_report.notes

    assert any("group counts differ" in n for n in notes(None))  # BiT's 32 assumed: the mismatch is reported
    assert any("group counts differ" in n for n in notes(32))
    assert not any("group counts differ" in n for n in notes(16))


def test_model_summary_counts_the_flops_of_one_training_clip():
    # The data module's clip shape (T=4, crop 16) reaches the summary, which then counts real FLOPs, not 0.
    from lightning.pytorch.utilities.model_summary import ModelSummary
    from torch.utils.flop_counter import FlopCounterMode

    data = _RandomClips(batch_size=2)
    data.num_frames, data.crop_size = 4, 16
    model = VideoClassifier(name="r3d_18", num_classes=3, width=8)  # width 4: one channel per GN group
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=data)
    assert tuple(model.example_input_array.shape) == (1, 3, 4, 16, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 4, 16, 16))
    assert counter.get_total_flops() > 0
    assert ModelSummary(model).total_flops == counter.get_total_flops()


def test_model_summary_skips_the_example_clip_when_a_norm_group_holds_one_channel():
    # Instance norm (one channel per group) cannot normalise the 1x1x1 last stage of a small clip at batch 1.
    data = _RandomClips(batch_size=2)
    data.num_frames, data.crop_size = 4, 16
    model = VideoClassifier(name="r3d_18", num_classes=3, width=8, norm="in", ws=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    assert model.example_input_array is None and trainer.global_step == 1


def test_lr_is_scaled_by_the_batch_of_a_plain_dataloader():
    # No data module with a batch_size: the loader's batch size counts (it was taken as 1 before).
    model = _tiny(lr=0.1, schedule="multistep", milestones=[100], warmup_fraction=0.0)
    seen = _LrAtStep()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[seen],
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=_RandomClips(batch_size=4).train_dataloader())
    assert seen.lrs == [[pytest.approx(0.1 * 4 / 64)] * 2]
