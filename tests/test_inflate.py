"""Tests for 2D -> 3D inflation: exact reproductions of random 2D ResNets (torchvision, timm, BiT) by the 3D models.

Every identity is checked in eval mode against the 2D network itself (the independent reference), with random
weights and randomised norm statistics/affine so that nothing is trivially zero. Relative errors are max |Δ| over
max |logit|.
"""

from __future__ import annotations

import dataclasses
import math
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from video_gn.models import LAYOUTS, build, create_video_resnet
from video_gn.models.bit import BIT_WS_EPS, PreActResNet3d, create_bit_resnet
from video_gn.models.inflate import InflationReport, detect_family, inflate, inflate_kernel
from video_gn.models.pretrained import load_pretrained
from video_gn.models.registry import default_ws_eps
from video_gn.nn import (
    GroupNorm,
    WSConv3d,
    conv_layer,
    convert_norm,
    norm_layer,
    use_weight_standardization,
)

try:
    import timm
    from timm.layers import GroupNormAct, StdConv2d
    from timm.models.resnetv2 import ResNetV2
except ImportError:  # optional extra: pip install "video_gn[timm]"
    timm = None

needs_timm = pytest.mark.skipif(timm is None, reason="timm not installed (pip install 'video_gn[timm]')")
TOL = 1e-4
ROOT = str(Path(__file__).resolve().parents[1])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _constant_clip(images: torch.Tensor, t: int) -> torch.Tensor:
    return images[:, :, None].expand(-1, -1, t, -1, -1).contiguous()  # (N, C, T, H, W)


@torch.no_grad()
def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.7 + 0.3)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@torch.no_grad()
def _small_filters(model: nn.Module, seed: int = 0) -> nn.Module:
    """Per-filter std log-uniform in [1e-4, 1e-2], like trained WS filters that weight decay shrank."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            std = torch.exp(
                torch.rand(m.weight.shape[0], 1, 1, 1, generator=g) * math.log(100) + math.log(1e-4)
            )
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
    return model


def _torchvision_r50(
    norm: str = "bn", ws_eps: float | None = None, depths: tuple[int, ...] = (1, 1, 1, 1)
) -> nn.Module:
    """torchvision's ResNet-50 class (full width) with ``depths`` blocks per stage (fast), random weights."""
    torch.manual_seed(0)
    model = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, list(depths), num_classes=10
    )
    if norm == "gn":
        model = convert_norm(model, "gn")
    if ws_eps is not None:
        model = use_weight_standardization(model, eps=ws_eps)
    return _randomise_norms(model)


def _video(
    name: str, *, norm: str = "bn", ws: bool = False, ws_eps: float = 1e-6, depths=(1, 1, 1, 1), **layout
) -> nn.Module:
    """The registry layout ``name`` with ``depths`` blocks per stage (matches :func:`_torchvision_r50`)."""
    layout = dataclasses.replace(LAYOUTS[name], depths=depths, **layout)
    return create_video_resnet(
        layout, num_classes=10, width=64, norm=norm_layer(norm), conv=conv_layer(ws, ws_eps)
    ).eval()


def _temporal_replicate_padding(model: nn.Module) -> nn.Module:
    """Pad every temporal conv by repeating the border frames instead of zeros (spatial padding unchanged)."""
    for conv in model.modules():
        if isinstance(conv, nn.Conv3d) and conv.padding[0] > 0:
            p = conv.padding[0]
            conv.padding = (0, *conv.padding[1:])
            conv.register_forward_pre_hook(
                lambda _, args, p=p: (F.pad(args[0], (0, 0, 0, 0, p, p), "replicate"),)
            )
    return model


# ------------------------------------------------------------------------------------------- kernel rule


@pytest.mark.parametrize("method", ["mean", "center"])
@pytest.mark.parametrize("kernel_t", [1, 3, 5])
def test_kernel_rule_plain_and_ws(method: str, kernel_t: int) -> None:
    torch.manual_seed(0)
    w2 = torch.randn(4, 3, 3, 3, dtype=torch.float64) * 0.1 + 0.05  # non-zero filter means
    w3, c = inflate_kernel(w2, kernel_t, method=method)
    assert w3.shape == (4, 3, kernel_t, 3, 3) and c == 1.0
    torch.testing.assert_close(w3.sum(2), w2)  # a constant clip sees the 2D kernel
    if method == "center":
        assert torch.count_nonzero(w3[:, :, [t for t in range(kernel_t) if t != kernel_t // 2]]) == 0

    def std(w: torch.Tensor, eps: float) -> torch.Tensor:  # independent float64 reference
        flat = w.flatten(1)
        mu, var = flat.mean(1, keepdim=True), flat.var(1, unbiased=False, keepdim=True)
        return ((flat - mu) / (var + eps).sqrt()).view_as(w)

    eps = 1e-3  # large on purpose: any eps mismatch shows
    w3_ws, c = inflate_kernel(w2, kernel_t, method=method, source_ws_eps=eps, target_ws=True)
    target, _ = inflate_kernel(std(w2, eps), kernel_t, method=method)  # inflate the standardized 2D kernel
    assert c == pytest.approx({"mean": kernel_t, "center": math.sqrt(kernel_t)}[method])
    torch.testing.assert_close(std(w3_ws, eps), c * target, rtol=1e-10, atol=1e-10)
    folded, c = inflate_kernel(w2, kernel_t, method=method, source_ws_eps=eps, target_ws=False)
    torch.testing.assert_close(folded, target)
    assert c == 1.0
    # The naive rule (inflate w2, standardize in 3D) is NOT the inflated standardized kernel once k_T > 1.
    if kernel_t > 1:
        naive, _ = inflate_kernel(w2, kernel_t, method=method)
        ratio = std(naive, eps) / target
        assert not torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-3)


# ------------------------------------------------------------------------------- torchvision (always run)


def test_torchvision_c2d_constant_clip_and_frame_average() -> None:
    """C2D layout: constant clip == 2D logits; without the temporal pool, any clip == mean of 2D logits."""
    m2 = _torchvision_r50("bn", depths=(3, 4, 6, 3))  # the real ResNet-50: the name map is complete
    m3 = build("c2d_r50", num_classes=10, norm="bn", ws=False).eval()
    report = inflate(m3, m2.state_dict())
    assert len(report.inflated) == 53 and not report.missing and not report.skipped
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 4)), m2(x)) <= TOL
        m2 = _torchvision_r50("bn")
        m3 = _video("c2d_r50", stage1_pool=False)
        inflate(m3, m2.state_dict())
        clip = torch.randn(2, 3, 3, 32, 32)
        frames = torch.stack([m2(clip[:, :, t]) for t in range(3)]).mean(0)
        assert _rel(m3(clip), frames) <= TOL


@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("name", ["i3d_r50", "slow_r50"])
def test_center_inflation_constant_clip(name: str, norm: str) -> None:
    m3 = _video(name, norm=norm, depths=(2, 2, 2, 2))  # block 2 of each stage: I3D's other temporal kernel
    m2 = _torchvision_r50(norm, depths=(2, 2, 2, 2))
    report = inflate(m3, m2.state_dict(), method="center")
    assert not report.missing and (norm == "bn" or not report.skipped)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
        for t in (4, 8):
            assert _rel(m3(_constant_clip(x, t)), y2) <= TOL, t


def test_mean_inflation_bn_is_exact_away_from_the_borders() -> None:
    """BN (eval) is local: in the middle of a long constant clip the I3D features equal the 2D features."""
    m2 = _torchvision_r50("bn")
    m3 = _video("i3d_r50")
    inflate(m3, m2.state_dict(), method="mean")
    x = torch.randn(1, 3, 32, 32)
    feats = {}
    m3.blocks[-2].register_forward_hook(lambda _m, _i, out: feats.setdefault("3d", out))
    with torch.no_grad():
        f2 = m2.layer4(m2.layer3(m2.layer2(m2.layer1(m2.maxpool(m2.relu(m2.bn1(m2.conv1(x))))))))
        m3(_constant_clip(x, 64))
    f3 = feats["3d"]  # (1, 2048, 32, 1, 1): 64 frames, halved by the stage-1 pool
    middle = f3[:, :, 12:20]  # receptive field of the depth-1 I3D: < 12 pooled steps
    assert _rel(middle, f2[:, :, None].expand_as(middle)) <= TOL
    border = f3[:, :, :1]
    assert _rel(border, f2[:, :, None]) > 1e-2  # zero padding: the first step sees fewer frames


def test_gn_ws_post_activation_inflation() -> None:
    """GN + WS ResNet (2D) into the GN + WS I3D: the WS-aware rule keeps the function, the naive one does not."""
    eps = 1e-6
    m2 = _small_filters(_torchvision_r50("gn", ws_eps=eps))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)

    def run(method: str, *, padding: str = "zeros", **kw) -> float:
        m3 = _video("i3d_r50", norm="gn", ws=True, ws_eps=eps)
        report = inflate(m3, m2.state_dict(), method=method, **kw)
        if padding == "replicate":
            _temporal_replicate_padding(m3)
        with torch.no_grad():
            return _rel(m3(_constant_clip(x, 8)), y2), report

    err, report = run("center", source_ws_eps=eps, source_gn_groups=32)
    assert err <= TOL and report.scaled["blocks.0.conv.weight"] == pytest.approx(math.sqrt(5))
    assert not report.notes
    err, _ = run("mean", source_ws_eps=eps, padding="replicate")  # border effect removed: exact
    assert err <= TOL
    err_zero_pad, _ = run("mean", source_ws_eps=eps)
    assert err_zero_pad > 1e-3  # the border effect reaches every step through the GN statistics
    naive, report = run("center", source_ws_eps=None)  # plain rule: zero taps standardize to non-zero values
    assert naive > 1e-2 and report.notes
    with pytest.raises(
        ValueError,
        match=r"standardizes its weight with eps=1e-06 but the .* checkpoint was trained with WS eps=1e-05; "
        r"a different eps changes the network\. Build the model with ws_eps=1e-05",
    ):
        run("center", source_ws_eps=1e-5)


def test_bn_ws_inflation_carries_the_scale_into_running_statistics() -> None:
    """BN + WS (2D) into BN + WS I3D: eval-mode BN is not scale invariant, so its statistics absorb c."""
    eps = 1e-6
    m2 = _torchvision_r50("bn", ws_eps=eps, depths=(2, 2, 2, 2))
    for m in m2.modules():  # statistics a WS network really has (unit-variance filters grow activations)
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        m2.train()(torch.randn(8, 3, 32, 32))
    m2.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
    m3 = _video("i3d_r50", norm="bn", ws=True, ws_eps=eps, depths=(2, 2, 2, 2))
    report = inflate(m3, m2.state_dict(), method="center", source_ws_eps=eps)
    c = report.scaled["blocks.0.conv.weight"]
    assert c == pytest.approx(math.sqrt(5)) and not report.notes
    torch.testing.assert_close(m3.blocks[0].norm.running_var, m2.bn1.running_var * c * c)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 8)), y2) <= TOL
        for name, scale in report.scaled.items():  # undo the rescaling: the statistics no longer fit
            norm = m3.get_submodule(name.rpartition(".")[0].replace("conv", "norm"))
            norm.running_mean.div_(scale)
            norm.running_var.div_(scale**2)
        assert _rel(m3(_constant_clip(x, 8)), y2) > 1e-1


def _gn_video(groups: int, *, ws: bool = False, ws_eps: float = 1e-6) -> nn.Module:
    """``c2d_r50`` with one block per stage and ``groups`` GroupNorm groups in every norm."""
    layout = dataclasses.replace(LAYOUTS["c2d_r50"], depths=(1, 1, 1, 1))
    norm = norm_layer("gn", num_groups=groups)
    return create_video_resnet(
        layout, num_classes=10, width=64, norm=norm, conv=conv_layer(ws, ws_eps)
    ).eval()


def test_notes_for_every_function_change() -> None:
    """Whatever keeps the 3D network from computing the 2D one is noted, and each note is true (error > 5 %)."""
    x = torch.randn(2, 3, 32, 32)

    def load(m2: nn.Module, m3: nn.Module, **kw) -> tuple[float, list[str]]:
        report = inflate(m3, m2.state_dict(), method="center", **kw)
        with torch.no_grad():
            return _rel(m3(_constant_clip(x, 4)), m2(x)), report.notes

    bn2d, gn2d = _torchvision_r50("bn"), _torchvision_r50("gn")  # GN: 32 groups (min(32, C))
    err, notes = load(bn2d, _video("c2d_r50", norm="gn"))  # BN -> GN
    assert err > 0.05 and len(notes) == 1
    assert "17 of the checkpoint's norms are BatchNorm but the 3D model's are GroupNorm" in notes[0]
    assert "running statistics were dropped" in notes[0] and "affine" in notes[0]
    err, notes = load(bn2d, _video("c2d_r50", norm="ln"))
    assert err > 0.05 and "are LayerNorm" in notes[0]
    err, notes = load(gn2d, _video("c2d_r50", norm="bn"), strict=False)  # GN -> BN: statistics at 0 / 1
    assert err > 0.05 and "running statistics stay at their initial values" in notes[0]
    with pytest.raises(ValueError, match="no BatchNorm statistics"):
        load(gn2d, _video("c2d_r50", norm="bn"))
    # GroupNorm's group count is not in the state dict: checked when the source's is known, flagged otherwise.
    err, notes = load(gn2d, _gn_video(32), source_gn_groups=32)
    assert err <= TOL and notes == []
    err, notes = load(gn2d, _gn_video(16), source_gn_groups=32)
    assert err > 0.05 and len(notes) == 1
    assert "group counts differ in 17 of 17 norms" in notes[0] and "16 groups of 64 channels" in notes[0]
    _, notes = load(gn2d, _gn_video(16))  # "auto": a resnet-family checkpoint does not fix its group count
    assert len(notes) == 1 and "does not record their group count" in notes[0] and "[16]" in notes[0]
    # WS on the 3D side only, and a 3D WS eps other than the checkpoint's (forced).
    ws2d = _small_filters(_torchvision_r50("gn", ws_eps=1e-6))
    err, notes = load(gn2d, _gn_video(32, ws=True, ws_eps=1e-6), source_gn_groups=32)
    assert err > 0.05 and any("weight-standardized but the checkpoint's were not" in n for n in notes)
    kw = {"source_ws_eps": 1e-6, "source_gn_groups": 32}
    err, notes = load(ws2d, _gn_video(32, ws=True, ws_eps=1e-6), **kw)
    assert err <= TOL and notes == []
    err, notes = load(ws2d, _gn_video(32, ws=True, ws_eps=1e-3), check_ws_eps=False, **kw)
    assert err > 0.05 and any("WS eps 0.001 but the checkpoint's with 1e-06" in n for n in notes)


def test_folding_ws_checkpoint_into_plain_convs() -> None:
    m2 = _small_filters(_torchvision_r50("gn", ws_eps=1e-6))
    m3 = _video("i3d_r50", norm="gn")
    report = inflate(m3, m2.state_dict(), method="center", source_ws_eps=1e-6)
    assert any("folded" in n for n in report.notes)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 4)), m2(x)) <= TOL


def test_report_head_and_architecture_errors() -> None:
    m2 = _torchvision_r50("bn")
    sd = m2.state_dict()
    layout = dataclasses.replace(LAYOUTS["c2d_r50"], depths=(1, 1, 1, 1))
    m3 = create_video_resnet(layout, num_classes=7, width=64, norm=norm_layer("gn"), conv=nn.Conv3d)
    report = inflate(m3, sd)
    assert isinstance(report, InflationReport) and report.source == "resnet"
    assert report.missing == ["blocks.6.proj.weight", "blocks.6.proj.bias"]
    assert any("fc.weight" in s and "(10, 2048)" in s for s in report.skipped)
    assert sum("BN statistics" in s for s in report.skipped) == 3 * 17  # BN -> GN: affine only
    assert "17 conv kernels inflated" in str(report)
    with pytest.raises(ValueError, match=r"\(64, 3, 7, 7\).*\(32, 3, 1, 7, 7\)"):
        inflate(build("c2d_r50", width=32, norm="bn", ws=False), sd)
    # Every "does not correspond" error names both sides' keys with their shapes (and the depths per stage).
    deeper = _torchvision_r50("bn", depths=(1, 2, 1, 1)).state_dict()
    with pytest.raises(
        ValueError, match=r"\(1, 2, 1, 1\) -> VideoResNet, blocks per stage \(1, 1, 1, 1\)"
    ) as err:
        inflate(_video("i3d_r50"), deeper)
    assert (
        "layer2.1.conv1.weight (128, 512, 1, 1) -> blocks.3.res_blocks.1.branch2.conv_a.weight (not in"
        in str(err.value)
    )
    with pytest.raises(
        ValueError, match=r"per stage \(1, 1, 1, 1\) -> VideoResNet, blocks per stage \(1, 2, 1, 1\)"
    ) as err:
        inflate(_video("i3d_r50", depths=(1, 2, 1, 1)), sd)
    assert (
        "blocks.3.res_blocks.1.branch2.conv_a.weight (128, 512, 1, 1, 1) <- layer2.1.conv1.weight (not in the "
        "checkpoint)" in str(err.value)
    )
    with pytest.raises(ValueError, match="post-activation ResNet.*pre-activation") as err:
        inflate(build("bit_c2d_r50x1", width=8), sd)
    assert "conv1.weight (64, 3, 7, 7)" in str(err.value) and "blocks.0.conv.weight (8, 3, 1, 7, 7)" in str(
        err.value
    )
    with pytest.raises(ValueError, match="Unrecognised"):
        detect_family({"features.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="method"):
        inflate(m3, sd, method="repeat")


def test_architecture_that_does_not_correspond_is_refused() -> None:
    """resnet18 has every tensor r3d_18 needs, but r3d_18's stem has no max-pool: refused, or loaded with a note."""
    torch.manual_seed(0)
    m2 = _randomise_norms(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y2 = m2(x)
    m3 = build("r3d_18", num_classes=10, norm="bn", ws=False).eval()
    before = {k: v.clone() for k, v in m3.state_dict().items()}
    with pytest.raises(ValueError, match=r"max-pool \(3, 3\) stride \(2, 2\).*3D blocks\.0: no pool.*r3d_"):
        inflate(m3, m2.state_dict(), method="center")
    assert all(torch.equal(v, before[k]) for k, v in m3.state_dict().items())  # untouched on error
    report = inflate(m3, m2.state_dict(), method="center", check_architecture=False)
    assert len(report.inflated) == 20 and not report.missing
    assert any("spatial geometry differs" in n and "no pool" in n for n in report.notes)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 8)), y2) > 0.05  # what the note says: not the 2D function
    # The r3d_18 layout with the 2D stem pool: its temporal strides (1, 2, 2, 2) act on time only, so the
    # constant-clip identity holds and nothing is refused.
    m3 = _video("r3d_18", depths=(2, 2, 2, 2), stem_pool=True)
    report = inflate(m3, m2.state_dict(), method="center")
    assert not report.notes
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 8)), y2) <= TOL
    # A spatial stride in the wrong conv (ResNet v1 puts it in conv1, torchvision's v1.5 in conv2) is named.
    m3 = _video("c2d_r50")
    m3.blocks[3].res_blocks[0].branch2.conv_a.stride = (1, 2, 2)
    m3.blocks[3].res_blocks[0].branch2.conv_b.stride = (1, 1, 1)
    with pytest.raises(
        ValueError, match=r"2D layer2\.0\.conv1\.weight \(128, 256, 1, 1\) spatial stride \(1, 1\)"
    ):
        inflate(m3, _torchvision_r50("bn").state_dict())


def test_load_pretrained_files(tmp_path) -> None:
    m2 = _torchvision_r50("bn")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in m2.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "r50.pth")
    m3 = _video("c2d_r50")
    report = load_pretrained(m3, tmp_path / "r50.pth")
    assert report.source == "resnet"
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 2)), y2) <= TOL
    # the inflation method is chosen by the caller ("center": the 2D kernel at the centre tap only)
    m3 = _video("i3d_r50")
    report = load_pretrained(m3, tmp_path / "r50.pth", method="center")
    stem = m3.blocks[0].conv.weight  # (64, 3, 5, 7, 7)
    assert report.method == "center" and torch.count_nonzero(stem[:, :, [0, 1, 3, 4]]) == 0
    torch.testing.assert_close(stem[:, :, 2], m2.conv1.weight)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 4)), y2) <= TOL
    assert load_pretrained(_video("i3d_r50"), tmp_path / "r50.pth").method == "mean"  # the default
    with pytest.raises(ValueError, match="'mean' or 'center', got 'repeat'"):
        load_pretrained(m3, tmp_path / "missing.pth", method="repeat")  # checked before the file
    m3 = _video("c2d_r50")
    load_pretrained(m3, tmp_path / "r50.pth")
    # a 3D checkpoint of the same model is copied as is
    torch.save(m3.state_dict(), tmp_path / "c2d.pt")
    again = _video("c2d_r50")
    assert load_pretrained(again, str(tmp_path / "c2d.pt")).source == "3d"
    with torch.no_grad():
        torch.testing.assert_close(again(_constant_clip(x, 2)), m3(_constant_clip(x, 2)))
    # a 3D checkpoint of another model: both sides' shapes
    with pytest.raises(
        ValueError, match=r"blocks.0.conv.weight: file \(64, 3, 1, 7, 7\) vs model \(64, 3, 5, 7, 7\)"
    ):
        load_pretrained(_video("i3d_r50"), tmp_path / "c2d.pt")
    # a 3D checkpoint lacking model tensors (a GN model's file into a BN model: no running statistics)
    gn_r3d, bn_r3d = (build("r3d_18", norm=n, width=8, num_classes=5) for n in ("gn", "bn"))
    torch.save(gn_r3d.state_dict(), tmp_path / "r3d_gn.pt")
    with pytest.raises(ValueError, match=r"running_mean \(8,\) \(not in the file\)"):
        load_pretrained(bn_r3d, tmp_path / "r3d_gn.pt")
    torch.save({**m3.state_dict(), "extra.weight": torch.zeros(3)}, tmp_path / "c2d_extra.pt")
    with pytest.raises(ValueError, match=r"extra.weight \(3,\) \(not in the model\)"):
        load_pretrained(_video("c2d_r50"), tmp_path / "c2d_extra.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(m3, tmp_path / "nope.pth")
    torch.save({"opt": object.__new__(_Opaque)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only=True.*pickled Python objects besides tensors") as info:
        load_pretrained(m3, tmp_path / "pickled.pth")
    assert "\n" not in str(info.value)  # torch's multi-paragraph explanation is not pasted in
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth could not be read .*: it is empty \(0 bytes\)"):
        load_pretrained(m3, tmp_path / "empty.pth")
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in m2.state_dict().items()}, str(tmp_path / "r50.safetensors"))
    m3 = _video("c2d_r50")
    load_pretrained(m3, tmp_path / "r50.safetensors")
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 2)), y2) <= TOL


class _Opaque:
    pass


def test_damaged_or_wrong_files_are_value_errors_that_name_the_file(tmp_path) -> None:
    # The CLI turns a ValueError/FileNotFoundError into a one-line error; safetensors' own SafetensorError and
    # numpy's messages named neither the file nor what was wrong with it (a traceback in `video-gn fit`).
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    m3 = _video("c2d_r50")
    save_file(
        {k: v.contiguous() for k, v in _torchvision_r50().state_dict().items()},
        str(tmp_path / "a.safetensors"),
    )
    data = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.safetensors").write_text("not a checkpoint " * 20)
    for name in ("cut.safetensors", "text.safetensors"):
        with pytest.raises(ValueError, match=rf"{name} could not be read as a \.safetensors file"):
            load_pretrained(m3, tmp_path / name)
    np.savez(tmp_path / "ok.npz", a=np.zeros(3))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match=r"cut\.npz could not be read as an \.npz archive"):
        load_pretrained(m3, tmp_path / "cut.npz")
    with pytest.raises(ValueError, match=r"ok\.npz: Not an official BiT \.npz"):
        load_pretrained(m3, tmp_path / "ok.npz")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_pretrained(m3, tmp_path)


def test_non_float_tensors_for_float_weights_are_refused(tmp_path) -> None:
    # An integer tensor was silently cast into the float weights (a quantized or damaged export).
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    sd = {
        k: (v * 100).long() if v.is_floating_point() else v
        for k, v in _torchvision_r50().state_dict().items()
    }
    save_file(sd, str(tmp_path / "int.safetensors"))
    with pytest.raises(
        ValueError, match=r"holds torch\.int64 values but 3D blocks\.0\.\S+ is a torch\.float32"
    ):
        load_pretrained(_video("c2d_r50"), tmp_path / "int.safetensors")
    m3 = build("r3d_18", norm="bn", width=8, num_classes=5)
    torch.save(
        {k: v.long() if v.is_floating_point() else v for k, v in m3.state_dict().items()}, tmp_path / "3d.pt"
    )
    with pytest.raises(ValueError, match=r"non-float tensors .*blocks\.0\.conv\.weight \(torch\.int64\)"):
        load_pretrained(m3, tmp_path / "3d.pt")


def test_nested_wrapper_prefixes_are_removed_in_any_order(tmp_path) -> None:
    # torch.compile of a DDP model inside a LightningModule: model._orig_mod.module.<key>
    m2 = _torchvision_r50()
    nested = {f"model._orig_mod.module.{k}": v for k, v in m2.state_dict().items()}
    torch.save({"state_dict": nested}, tmp_path / "nested.ckpt")
    m3 = _video("c2d_r50")
    assert load_pretrained(m3, tmp_path / "nested.ckpt").source == "resnet"
    torch.testing.assert_close(m3.blocks[0].conv.weight[:, :, 0], m2.conv1.weight)


def test_unrecognised_keys_name_the_prefix_to_remove() -> None:
    # inflate() takes a bare state dict: a DDP/Lightning prefix got only "Unrecognised 2D checkpoint".
    sd = _torchvision_r50().state_dict()
    for prefix in ("module.", "model.module.", "backbone."):
        with pytest.raises(ValueError, match=rf"carry the prefix '{re.escape(prefix)}': remove it"):
            inflate(_video("c2d_r50"), {prefix + k: v for k, v in sd.items()})
    with pytest.raises(ValueError, match="Unrecognised 2D checkpoint") as err:
        inflate(_video("c2d_r50"), {"features.0.weight": torch.zeros(3)})
    assert "prefix" not in str(err.value)


def test_half_precision_checkpoint_is_inflated_in_the_model_precision() -> None:
    # w / k_T was rounded to float16 before the copy: errors of ~1e-4 relative on every "mean" kernel.
    m2 = _torchvision_r50()
    half = {k: v.half() if v.is_floating_point() else v for k, v in m2.state_dict().items()}
    m3 = _video("i3d_r50")
    inflate(m3, half, method="mean")
    stem = m3.blocks[0].conv.weight.detach()  # (64, 3, 5, 7, 7)
    expected = half["conv1.weight"].double() / stem.shape[2]
    assert (stem.double() - expected.unsqueeze(2)).abs().max() <= 1e-7 * expected.abs().max()


def test_missing_file_error_says_what_to_download_and_where(tmp_path, monkeypatch) -> None:
    """Offline: a missing model.pretrained file is not fetched; the error names the download and the path."""
    import yaml

    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(open(f"{ROOT}/configs/kinetics400/i3d_r50_gnws_bit.yaml"))["model"]
    bit = build(config["name"], num_classes=10)
    with pytest.raises(FileNotFoundError) as err:  # the shipped BiT config, file not downloaded yet
        load_pretrained(bit, config["pretrained"])
    message = str(err.value)
    assert config["pretrained"] == "checkpoints/resnetv2_50x1_bit.goog_in21k.safetensors"
    assert "timm/resnetv2_50x1_bit.goog_in21k" in message
    url = "https://huggingface.co/timm/resnetv2_50x1_bit.goog_in21k/resolve/main/model.safetensors"
    assert url in message and f"save it as '{config['pretrained']}'" in message
    assert str(tmp_path / config["pretrained"]) in message
    with pytest.raises(
        FileNotFoundError,
        match=r"download https://storage\.googleapis\.com/bit_models/BiT-M-R50x1\.npz and save it as 'w/BiT-M-R50x1\.npz'",
    ):
        load_pretrained(bit, "w/BiT-M-R50x1.npz")
    with pytest.raises(FileNotFoundError) as err:  # a name that says nothing: what fits the model
        load_pretrained(bit, "w/init.pth")
    assert (
        url in str(err.value)
        and "bit_models/BiT-M-R50x1.npz" in str(err.value)
        and "'w/init.pth'" in str(err.value)
    )
    r101 = build("i3d_r101", num_classes=10, norm="bn", ws=False)
    with pytest.raises(FileNotFoundError, match=r"resnet101-cd907fc2\.pth.*save it as 'w/init\.pth'"):
        load_pretrained(r101, "w/init.pth")
    with pytest.raises(
        FileNotFoundError,
        match=r"download https://download\.pytorch\.org/models/resnet50-11ad3fa6\.pth and save",
    ):
        load_pretrained(r101, "resnet50-11ad3fa6.pth")
    with pytest.raises(FileNotFoundError, match="no public 2D checkpoint fits"):
        load_pretrained(
            build("r3d_18", num_classes=10), "w/init.pth"
        )  # no stem pool: nothing inflates into it


@needs_timm
def test_timm_names_resolve_to_real_hub_repositories(monkeypatch) -> None:
    """An untagged timm name gets timm's default tag (from timm's offline pretrained configs), offline."""

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    model = build("c2d_r50", width=8)
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained(model, "timm:resnet50")
    message = str(err.value)
    assert (
        "repository timm/resnet50.a1_in1k (https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/"
        in message
    )
    assert "model.pretrained: checkpoints/resnet50.a1_in1k.safetensors" in message
    with pytest.raises(ValueError, match="timm has no pretrained weights named 'resnet50_nope'"):
        load_pretrained(model, "timm:resnet50_nope")
    with pytest.raises(
        FileNotFoundError, match=r"timm/resnet50\.a1_in1k .*save it as 'resnet50\.safetensors'"
    ):
        load_pretrained(model, "resnet50.safetensors")


@needs_timm
def test_timm_offline_error_keeps_the_file_suffix_of_a_url_checkpoint(monkeypatch) -> None:
    """timm models released as a .pth URL (no Hugging Face repository) are saved under that suffix."""
    import video_gn.models.pretrained as pretrained

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    url = "https://example.org/weights/resnet50_old.pth"
    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(pretrained, "_timm_download", lambda name: ("resnet50.old", url, ".pth"))
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained(build("c2d_r50", width=8), "timm:resnet50.old")
    assert f"download {url}, save it as checkpoints/resnet50.old.pth" in str(err.value)
    assert ".safetensors" not in str(err.value)


def test_hub_name_offline_error_says_what_to_download(monkeypatch) -> None:
    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(FileNotFoundError, match=r"resnet50-.*\.pth.*checkpoints"):
        load_pretrained(build("c2d_r50", width=8), "torchvision:ResNet50_Weights.IMAGENET1K_V2")


# ----------------------------------------------------------------------------------------- timm families


@needs_timm
def test_timm_resnet50_c2d_constant_clip() -> None:
    torch.manual_seed(0)
    m2 = _randomise_norms(timm.create_model("resnet50", pretrained=False, num_classes=10))
    m3 = build("c2d_r50", num_classes=10, norm="bn", ws=False).eval()  # the real ResNet-50 layout
    assert inflate(m3, m2.state_dict()).source == "resnet"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 4)), m2(x)) <= TOL
        # without the temporal pool, C2D is the 2D network per frame: any clip gives the mean of the frames'
        # 2D logits (eval-mode BN is per position)
        m3 = _video("c2d_r50", depths=(3, 4, 6, 3), stage1_pool=False)
        inflate(m3, m2.state_dict())
        clip = torch.randn(2, 3, 3, 32, 32)
        frames = torch.stack([m2(clip[:, :, t]) for t in range(3)]).mean(0)
        assert _rel(m3(clip), frames) <= TOL


def _timm_bit(*, small: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if small:  # width 8, one block per stage: a CPU-sized ResNetV2 with BiT's stem, GN + StdConv2d(eps=1e-8)
        model = ResNetV2(
            layers=[1, 1, 1, 1],
            channels=(32, 64, 128, 256),
            stem_chs=8,
            stem_type="fixed",
            num_classes=10,
            conv_layer=partial(StdConv2d, eps=1e-8),
            norm_layer=lambda c, **kw: GroupNormAct(c, num_groups=min(32, c), **kw),
        )
    else:
        model = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=10)
    return _randomise_norms(_small_filters(model, seed))


def _bit3d(name: str, *, ws_eps: float = 1e-8, ws: bool = True) -> PreActResNet3d:
    """The small 3D counterpart of ``_timm_bit(small=True)``: BiT layout ``name`` with one block per stage."""
    layout = dataclasses.replace(LAYOUTS[name], depths=(1, 1, 1, 1))
    return create_bit_resnet(
        layout,
        num_classes=10,
        width=8,
        norm=norm_layer("gn", num_groups="min32"),
        conv=conv_layer(ws, ws_eps),
    ).eval()


@needs_timm
def test_bit_r50x1_c2d_constant_clip() -> None:
    m2 = _timm_bit(small=False)
    assert isinstance(m2.stem.conv, StdConv2d) and m2.stem.conv.eps == 1e-8
    m3 = build("bit_c2d_r50x1", num_classes=10).eval()  # the registry's default WS eps is BiT's 1e-8
    report = inflate(m3, m2.state_dict())
    assert report.source == "bit" and len(report.inflated) == 53 and not report.missing
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(m3(_constant_clip(x, 3)), m2(x)) <= TOL
        # The frame-average identity of BN networks does not hold for GroupNorm, and is not expected to: a 3D
        # GroupNorm's statistics span all T frames of the clip, a 2D one's a single frame. Shown without the
        # temporal pool, so that GN is the only difference (the constant clip still matches).
        layout = dataclasses.replace(LAYOUTS["c2d_r50"], stage1_pool=False)
        m3 = create_bit_resnet(
            layout, num_classes=10, width=64, norm=norm_layer("gn"), conv=conv_layer(True, 1e-8)
        ).eval()
        inflate(m3, m2.state_dict())
        assert _rel(m3(_constant_clip(x, 3)), m2(x)) <= TOL
        clip = torch.randn(2, 3, 3, 32, 32)
        frames = torch.stack([m2(clip[:, :, t]) for t in range(3)]).mean(0)
        assert _rel(m3(clip), frames) > 1e-2


@needs_timm
def test_bit_i3d_inflation_and_the_border_effect() -> None:
    m2 = _timm_bit(small=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
        for name in ("c2d_r50", "i3d_r50", "slow_r50"):
            m3 = _bit3d(name)
            inflate(m3, m2.state_dict(), method="center")
            assert _rel(m3(_constant_clip(x, 8)), y2) <= TOL, name
        errors = {}
        for t in (4, 16, 64):
            m3 = _bit3d("i3d_r50")
            report = inflate(m3, m2.state_dict(), method="mean")
            errors[t] = _rel(m3(_constant_clip(x, t)), y2)
        assert report.scaled["blocks.0.conv.weight"] == 5.0 and not report.notes
        # BiT checkpoints use 32 groups: a 3D model with 4 is noted, and the note is true
        layout = dataclasses.replace(LAYOUTS["c2d_r50"], depths=(1, 1, 1, 1))
        norm = norm_layer("gn", num_groups=4)
        m4 = create_bit_resnet(layout, num_classes=10, width=8, norm=norm, conv=conv_layer(True, 1e-8)).eval()
        notes = inflate(m4, m2.state_dict(), method="center").notes
        assert any("the bit family's" in n and "4 groups of 8 channels" in n for n in notes)
        assert _rel(m4(_constant_clip(x, 2)), y2) > 0.05
        assert not inflate(m4, m2.state_dict(), source_gn_groups=4).notes  # a 4-group "BiT" (quickstart)
        # GN mixes every time step into its statistics: the border effect shrinks with T but reaches all steps.
        assert errors[4] > errors[16] > errors[64] > 1e-3
        _temporal_replicate_padding(m3)  # border frames see what interior frames see: exact again
        assert _rel(m3(_constant_clip(x, 4)), y2) <= TOL


@needs_timm
def test_bit_wrong_ws_eps_is_refused_and_breaks_the_identity() -> None:
    m2 = _timm_bit(small=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
        with pytest.raises(ValueError, match=r"eps=1e-06.*eps=1e-08.*ws_eps=1e-08"):
            inflate(_bit3d("c2d_r50", ws_eps=1e-6), m2.state_dict())
        for eps in (1e-6, 1e-10):
            m3 = _bit3d("i3d_r50", ws_eps=eps)
            inflate(m3, m2.state_dict(), method="center", check_ws_eps=False)
            assert _rel(m3(_constant_clip(x, 4)), y2) > 0.05, eps
        # plain 3D convs: the BiT standardization (eps 1e-8) is folded into the weights
        m3 = _bit3d("i3d_r50", ws=False)
        inflate(m3, m2.state_dict(), method="center")
        assert _rel(m3(_constant_clip(x, 4)), y2) <= TOL


@needs_timm
def test_bit_checkpoint_into_post_activation_model_names_both_sides() -> None:
    sd = _timm_bit(small=True).state_dict()
    with pytest.raises(ValueError, match="pre-activation BiT ResNetV2 but the model is a VideoResNet") as err:
        inflate(_video("c2d_r50", norm="gn", ws=True), sd)
    message = str(err.value)
    assert "stem.conv.weight (8, 3, 7, 7)" in message and "blocks.0.conv.weight (64, 3, 1, 7, 7)" in message


@needs_timm
def test_bit_official_npz_format(tmp_path) -> None:
    """Write the official BiT .npz naming (TF, HWIO) by hand and load it through load_pretrained."""
    m2 = _timm_bit(small=True)
    sd = m2.state_dict()
    hwio = lambda t: t.permute(2, 3, 1, 0).numpy() if t.ndim == 4 else t.numpy()  # noqa: E731
    arrays = {
        "resnet/root_block/standardized_conv2d/kernel": hwio(sd["stem.conv.weight"]),
        "resnet/group_norm/gamma": hwio(sd["norm.weight"]),
        "resnet/group_norm/beta": hwio(sd["norm.bias"]),
        "resnet/head/conv2d/kernel": hwio(sd["head.fc.weight"]),
        "resnet/head/conv2d/bias": hwio(sd["head.fc.bias"]),
    }
    for s in range(4):
        unit = f"resnet/block{s + 1}/unit01/"
        block = f"stages.{s}.blocks.0."
        for i, letter in enumerate("abc", start=1):
            arrays[f"{unit}{letter}/standardized_conv2d/kernel"] = hwio(sd[f"{block}conv{i}.weight"])
            arrays[f"{unit}{letter}/group_norm/gamma"] = hwio(sd[f"{block}norm{i}.weight"])
            arrays[f"{unit}{letter}/group_norm/beta"] = hwio(sd[f"{block}norm{i}.bias"])
        arrays[f"{unit}a/proj/standardized_conv2d/kernel"] = hwio(sd[f"{block}downsample.conv.weight"])
    np.savez(tmp_path / "BiT-M-R50x1.npz", **arrays)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y2 = m2(x)
        with pytest.raises(ValueError, match="1e-10"):  # the official code standardizes with eps 1e-10
            load_pretrained(_bit3d("c2d_r50"), tmp_path / "BiT-M-R50x1.npz")
        m3 = _bit3d("c2d_r50")
        report = load_pretrained(m3, tmp_path / "BiT-M-R50x1.npz", source_ws_eps=1e-8)
        assert not report.missing and not report.skipped
        assert _rel(m3(_constant_clip(x, 2)), y2) <= TOL


def test_bit_registry_default_ws_eps_is_the_checkpoints() -> None:
    """``build("bit_*")`` standardizes with BiT's eps 1e-8 unless told otherwise; other models keep 1e-6."""

    def eps_of(model: nn.Module) -> set[float]:
        return {m.eps for m in model.modules() if isinstance(m, WSConv3d)}

    for name in ("bit_c2d_r50x1", "bit_i3d_r50x1"):
        assert default_ws_eps(name) == BIT_WS_EPS == 1e-8
        assert eps_of(build(name, width=8)) == {1e-8}
        assert eps_of(build(name, width=8, ws_eps=1e-10)) == {1e-10}  # an explicit eps still wins
    assert default_ws_eps("i3d_r50") == 1e-6 and eps_of(build("i3d_r50", width=8)) == {1e-6}
    with pytest.raises(ValueError, match="Unknown model"):
        default_ws_eps("bit_r50")


def test_bit_models_registered_and_trainable() -> None:
    for name in ("bit_c2d_r50x1", "bit_i3d_r50x1"):
        model = build(name, num_classes=3, width=8, ws_eps=1e-8)
        assert isinstance(model, PreActResNet3d) and model.last_norms() == []
        assert isinstance(model.blocks[-2].norm, GroupNorm)
        y = model(torch.randn(2, 3, 4, 32, 32))
        y.sum().backward()
        assert y.shape == (2, 3) and model.blocks[0].conv.weight.grad.abs().sum() > 0
    plain = build("bit_i3d_r50x1", width=8, ws=False)
    assert all(torch.count_nonzero(b.conv3.weight) == 0 for b in plain.modules() if hasattr(b, "conv3"))


def test_video_classifier_pretrained_option(tmp_path) -> None:
    """``model.pretrained: PATH`` in a config reaches load_pretrained through VideoClassifier."""
    from video_gn.module import VideoClassifier

    m2 = _torchvision_r50("bn", depths=(3, 4, 6, 3))
    torch.save(m2.state_dict(), tmp_path / "resnet50.pth")
    module = VideoClassifier(
        name="c2d_r50",
        num_classes=10,
        norm="bn",
        ws=False,
        width=64,
        pretrained=str(tmp_path / "resnet50.pth"),
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert _rel(module(_constant_clip(x, 2)), m2(x)) <= TOL


def test_missing_quickstart_inflated_checkpoint_names_the_command_that_makes_it(
    tmp_path, monkeypatch
) -> None:
    import yaml

    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(open(f"{ROOT}/configs/quickstart_inflated.yaml"))["model"]
    model = build(config["name"], num_classes=6, width=config["width"], norm_kwargs={"num_groups": 4})
    with pytest.raises(
        FileNotFoundError, match=r"python benchmarks/inflation\.py --pretrain-only --out runs/inflation"
    ):
        load_pretrained(model, config["pretrained"])


@needs_timm
def test_a_batchnorm_resnetv2_is_not_taken_for_bit() -> None:
    # timm's resnetv2_50 has BiT's key layout but BatchNorm and plain convs: "auto" must not standardize its
    # kernels with BiT's eps (that gave NaN logits).
    torch.manual_seed(0)
    m2 = timm.create_model("resnetv2_50", num_classes=10).eval()
    with torch.no_grad():
        for name, p in m2.named_parameters():
            if p.ndim > 1:
                p.normal_(0, 0.05)
            elif name.endswith("weight"):
                p.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    m3 = build("bit_c2d_r50x1", num_classes=10, norm="bn", ws=False, dropout=0.0).eval()
    report = inflate(m3, m2.state_dict(), method="center")
    assert not any("WS folded" in n for n in report.notes), report.notes
    assert any("is not BiT" in n for n in report.notes), report.notes
    with torch.no_grad():
        y2, y3 = m2(x), m3(_constant_clip(x, 2))
    # the 3D stem pool pads like BiT's (timm's resnetv2_50 pads its max-pool by 1): close, not identical
    assert torch.isfinite(y3).all() and _rel(y3, y2) < 5e-3


def test_bit_layout_with_batchnorm_and_ws_reproduces_the_2d_network() -> None:
    """A BiT-layout model built with BN: the WS convs with temporal kernels (stem, conv1) scale their outputs,
    and the BatchNorms they feed (the first block's norm1, each block's norm2) get their statistics rescaled."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmarks_inflation", Path(__file__).resolve().parent.parent / "benchmarks" / "inflation.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    kw = dict(num_classes=10, width=16, norm="bn", ws=True, ws_eps=1e-6, dropout=0.0)
    src = build("bit_c2d_r50x1", **kw)
    for m in src.modules():  # running statistics of real data, not the initial 0 / 1
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        src.train()(torch.randn(8, 3, 4, 32, 32))
    state_2d = bench.to_bit_2d_state_dict(src.eval())
    x = torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        want = src(x)
        m3 = build("bit_i3d_r50x1", **kw)
        report = inflate(m3, state_2d, method="center", source_ws_eps=1e-6)
        assert report.scaled and not any("temporal kernel" in n for n in report.notes)
        assert _rel(m3.eval()(x.repeat(1, 1, 8, 1, 1)), want) <= TOL  # was 43 (statistics not rescaled)


def test_download_hints_match_the_models_norm_and_the_files_format(tmp_path, monkeypatch) -> None:
    """A GN model is offered a GN checkpoint; a source of another format is not to be saved under the given
    name (the reader picks the format from the suffix); timm model.tag names are resolved without timm."""
    import video_gn.models.pretrained as pretrained

    monkeypatch.chdir(tmp_path)
    gn = build("i3d_r50", num_classes=10, norm="gn")
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained(gn, "w/init.pth")
    message = str(err.value)
    assert "timm/resnet50_gn.a1h_in1k" in message and "torchvision" not in message
    assert "so not as 'w/init.pth'" in message
    monkeypatch.setattr(pretrained, "_timm_download", lambda name: None)  # as without timm installed
    url = "https://huggingface.co/timm/resnet50_gn.a1h_in1k/resolve/main/model.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(url) + r"\) and save it as 'c/resnet50_gn"):
        load_pretrained(gn, "c/resnet50_gn.a1h_in1k.safetensors")
    with pytest.raises(
        ValueError, match=r"torchvision has no weights named 'ResNet50_Weights\.NOPE'.*IMAGENET1K_V2"
    ):
        load_pretrained(gn, "torchvision:ResNet50_Weights.NOPE")


def test_a_fit_checkpoint_loaded_into_a_differently_built_model_gets_notes(tmp_path) -> None:
    """WS on/off, its eps, the norm kind and the group count do not show in the tensors: a `video-gn fit`
    checkpoint's hyper-parameters tell them, and a model built otherwise is noted."""
    kw = dict(num_classes=5, width=8, norm="gn", ws=True, ws_eps=1e-8, norm_kwargs={"num_groups": 4})
    source = build("r3d_18", **kw)
    ckpt = tmp_path / "last.ckpt"
    hp = {"name": "r3d_18", "norm": "gn", "ws": True, "ws_eps": 1e-8, "gn_groups": 4, "width": 8}
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}, "hyper_parameters": hp},
        ckpt,
    )
    assert load_pretrained(build("r3d_18", **kw), str(ckpt)).notes == []
    cases = {
        "WS eps differs": {**kw, "ws_eps": 1e-5},
        "GroupNorm groups differ": {**kw, "norm_kwargs": {"num_groups": 2}},
        "trained with weight standardization and this model is built without": {**kw, "ws": False},
    }
    for words, other in cases.items():
        notes = load_pretrained(build("r3d_18", **other), str(ckpt)).notes
        assert any(words in n for n in notes), (words, notes)
