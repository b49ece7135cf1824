"""Tests for VideoClassifier's optimiser set-up: lr scaling rules, schedule shape, no decay on norms/biases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from video_gn.module import LR_REFERENCE_BATCH, VideoClassifier, lr_factor_fn
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


def test_unknown_lr_scaling_is_rejected_by_the_cli_type():
    # The Literal annotation is what LightningCLI validates; make sure it lists the three rules.
    import typing

    hint = typing.get_type_hints(VideoClassifier.__init__)["lr_scaling"]
    assert set(typing.get_args(hint)) == {"linear", "sqrt", "none"}


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


def test_lr_reference_batch_is_64():
    assert LR_REFERENCE_BATCH == 64


def test_optimiser_choice():
    sgd = _attached(_tiny(optimizer="sgd", momentum=0.9, nesterov=True), devices=1, batch=8, accumulate=1)
    opt = sgd.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    adamw = _attached(_tiny(optimizer="adamw"), devices=1, batch=8, accumulate=1)
    assert isinstance(adamw.configure_optimizers()["optimizer"], torch.optim.AdamW)
