"""Tests for video_gn.nn converters on torchvision's, pytorchvideo's and hand-made models."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models.video import r3d_18

from video_gn import nn as vnn
from video_gn._pytorchvideo import ptv_resnet


def randomize_norms(model: nn.Module) -> None:
    """Give every BN distinct γ/β and running stats so copying can be checked."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def bn_params(model: nn.Module) -> dict[str, tuple[torch.Tensor, ...]]:
    return {
        n: (m.weight.clone(), m.bias.clone(), m.running_mean.clone(), m.running_var.clone())
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm)
    }


def small_ptv_resnet() -> nn.Module:
    """pytorchvideo's create_resnet (ResNet-50 layout, bottleneck blocks) at 1/8 width."""
    return ptv_resnet.create_resnet(
        model_depth=50, model_num_class=5, stem_dim_out=8, head_pool_kernel_size=(2, 1, 1), dropout_rate=0.0
    )


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    # (N, C, T, H, W): small enough for full-width r3d_18 on 2 CPU cores, still 2×2 at its last stage
    return torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("source", ["torchvision", "pytorchvideo"])
def test_convert_bn_model_to_gn_then_gn_ws(source: str, clip: torch.Tensor, caplog) -> None:
    torch.manual_seed(0)
    model = r3d_18(num_classes=7) if source == "torchvision" else small_ptv_resnet()
    randomize_norms(model)
    before = bn_params(model)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    linear_weights = {n: m.weight.clone() for n, m in linears.items()}
    convs = {n: m.weight.clone() for n, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    final_flags = {n for n, m in model.named_modules() if getattr(m, "block_final_bn", False)}
    assert linears and convs and before
    assert source == "torchvision" or final_flags  # pytorchvideo flags each block's last BN for zero-init

    def check(ws: bool) -> None:
        modules = dict(model.named_modules())
        assert not any(isinstance(m, _BatchNorm) for m in modules.values())
        for name, (w, b, _, _) in before.items():
            gn = modules[name]
            assert type(gn) is vnn.GroupNorm and gn.num_channels == w.numel()
            assert gn.num_groups == min(32, w.numel())
            torch.testing.assert_close(gn.weight.detach(), w)  # γ/β kept
            torch.testing.assert_close(gn.bias.detach(), b)
        assert final_flags == {n for n, m in modules.items() if getattr(m, "block_final_bn", False)}
        for name, w in convs.items():
            conv = modules[name]
            assert isinstance(conv, vnn.WSConv3d) == ws and isinstance(conv, nn.Conv3d)
            torch.testing.assert_close(conv.weight.detach(), w)
        for name, lin in linears.items():  # heads untouched: same objects, same weights
            assert modules[name] is lin and type(lin) is nn.Linear
            torch.testing.assert_close(lin.weight, linear_weights[name])

    with caplog.at_level(logging.INFO, logger="video_gn.nn.convert"):
        assert vnn.convert_norm(model, "gn", num_groups="min32") is model
        assert f"replaced {len(before)} modules" in caplog.text
        check(ws=False)
        assert vnn.use_weight_standardization(model) is model
        assert (
            f"replaced {len(convs)} modules (Conv3d" in caplog.text
            or "Conv3DSimple -> WSConv3d" in caplog.text
        )
        check(ws=True)

    model.train()
    logits = model(clip)
    assert logits.shape[0] == 2 and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_convert_to_frozen_bn_keeps_running_stats_and_eval_output(clip: torch.Tensor) -> None:
    model = small_ptv_resnet()
    n_bn = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    randomize_norms(model)
    model.eval()
    with torch.no_grad():
        expected = model(clip)
    vnn.convert_norm(model, "frozen_bn")
    frozen = [m for m in model.modules() if isinstance(m, vnn.FrozenBatchNorm3d)]
    assert len(frozen) == n_bn and not any(isinstance(m, _BatchNorm) for m in model.modules())
    model.train()  # frozen BN ignores train mode
    with torch.no_grad():
        torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-4)
    # and it converts back to BN with the statistics intact
    vnn.convert_norm(model, "bn")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", vnn.NORM_KINDS)
def test_convert_every_kind_on_mixed_dims(kind: str) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.Flatten(2),
        nn.BatchNorm1d(8),
        nn.Flatten(1),
        nn.Linear(8 * 36, 4),
    )
    randomize_norms(model)
    before = bn_params(model)
    vnn.convert_norm(model, kind, **({"num_groups": "min32"} if kind == "gn" else {}))
    x = torch.randn(2, 3, 8, 8)
    if kind == "none":
        assert type(model[1]) is nn.Identity and type(model[3]) is nn.Identity
        assert model(x).shape == (2, 4)
        return
    expected_types = {
        "bn": (nn.BatchNorm2d, nn.BatchNorm1d),
        "syncbn": (nn.SyncBatchNorm, nn.SyncBatchNorm),
        "frozen_bn": (vnn.FrozenBatchNorm2d, vnn.FrozenBatchNorm1d),
        "gn": (vnn.GroupNorm, vnn.GroupNorm),
        "ln": (vnn.GroupNorm, vnn.GroupNorm),
        "in": (vnn.GroupNorm, vnn.GroupNorm),
    }[kind]
    assert (type(model[1]), type(model[3])) == expected_types
    for idx, name in ((1, "1"), (3, "3")):
        torch.testing.assert_close(model[idx].weight.detach(), before[name][0])
        torch.testing.assert_close(model[idx].bias.detach(), before[name][1])
        if kind in ("bn", "syncbn", "frozen_bn"):
            torch.testing.assert_close(model[idx].running_mean, before[name][2])
            torch.testing.assert_close(model[idx].running_var, before[name][3])
    assert model(x).shape == (2, 4)


def test_convert_norm_options_dtype_requires_grad_and_root() -> None:
    model = nn.Sequential(nn.Conv3d(3, 16, 1), nn.BatchNorm3d(16, eps=1e-3, momentum=0.2)).double()
    model[1].weight.requires_grad_(False)
    model.eval()
    vnn.convert_norm(model, "gn", num_groups=4)
    gn = model[1]
    assert (gn.num_groups, gn.eps, gn.weight.dtype, gn.training) == (4, 1e-3, torch.float64, False)
    assert not gn.weight.requires_grad and gn.bias.requires_grad
    assert type(vnn.convert_norm(model, "bn")[1]) is vnn.GroupNorm  # only BatchNorm-like layers are replaced
    model[1] = nn.BatchNorm3d(16, eps=1e-3, momentum=0.2)
    frozen = vnn.convert_norm(model, "frozen_bn")[1]
    assert (type(frozen), frozen.eps) == (vnn.FrozenBatchNorm3d, 1e-3)
    bn = vnn.convert_norm(model, "bn", momentum=0.05)[1]
    assert (type(bn), bn.eps, bn.momentum) == (nn.BatchNorm3d, 1e-3, 0.05)
    # the root itself can be a BN layer: a new object is returned
    root = nn.BatchNorm3d(8)
    with pytest.raises(ValueError, match="num_channels=8.*min32"):  # 8 channels: no silent InstanceNorm
        vnn.convert_norm(root, "gn")
    new_root = vnn.convert_norm(root, "gn", eps=1e-4, num_groups="min32")
    assert type(new_root) is vnn.GroupNorm and new_root.eps == 1e-4


def test_convert_norm_validates_before_touching_the_model() -> None:
    model = nn.Sequential(nn.BatchNorm3d(48))
    with pytest.raises(ValueError, match="unknown norm kind 'group'"):
        vnn.convert_norm(model, "group")
    with pytest.raises(ValueError, match="num_groups=32 does not divide num_channels=48"):
        vnn.convert_norm(model, "gn", num_groups=32)
    assert type(model[0]) is nn.BatchNorm3d
    two = nn.Sequential(nn.BatchNorm3d(64), nn.BatchNorm3d(48))
    with pytest.raises(ValueError, match=r"layer '1'.*default 32 groups do not divide num_channels=48"):
        vnn.convert_norm(two, "gn")
    assert [type(m) for m in two] == [nn.BatchNorm3d, nn.BatchNorm3d]  # nothing half-converted
    assert [m.num_groups for m in vnn.convert_norm(two, "gn", num_groups="auto")] == [32, 24]


def test_use_weight_standardization_options(caplog) -> None:
    model = nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1, bias=True),
        nn.Conv3d(8, 8, 1, groups=8),  # depthwise 1×1: fan-in 1, must stay plain
        nn.Conv3d(8, 8, 3, padding="same", padding_mode="replicate"),
        nn.ConvTranspose3d(8, 4, 2),
    )
    bias = model[0].bias.clone()
    with caplog.at_level(logging.WARNING, logger="video_gn.nn.convert"):
        vnn.use_weight_standardization(model, eps=1e-8, exclude=lambda name, m: name == "0")
    assert type(model[0]) is nn.Conv3d  # excluded
    assert type(model[1]) is nn.Conv3d and "fan-in 1" in caplog.text
    assert type(model[2]) is vnn.WSConv3d and model[2].eps == 1e-8
    assert (model[2].padding, model[2].padding_mode) == ("same", "replicate")
    assert type(model[3]) is nn.ConvTranspose3d
    vnn.use_weight_standardization(model)
    assert type(model[0]) is vnn.WSConv3d and model[2].eps == 1e-8  # already-WS convs are left alone
    torch.testing.assert_close(model[0].bias.detach(), bias)
    assert model(torch.randn(1, 3, 4, 5, 5)).shape == (1, 4, 5, 6, 6)


def test_fold_weight_standardization_is_equivalent_and_removes_ws(clip: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = vnn.use_weight_standardization(
        vnn.convert_norm(small_ptv_resnet(), "gn", num_groups="min32"), eps=1e-5
    )
    extra = vnn.WSConv2d(3, 4, 3, bias=True)
    model.eval()
    with torch.no_grad():
        # pytorchvideo's init zeroes γ of every block-final norm, which would switch the residual branches
        # (48 of the 53 convs) off and let a wrong fold of them pass: use non-zero γ/β everywhere.
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        expected = model(clip)
        expected_extra = extra(clip[:, :, 0])
    n_ws = sum(isinstance(m, vnn.WSConv3d) for m in model.modules())
    assert n_ws == 53  # ResNet-50 layout: stem + 16 blocks × 3 + 4 shortcut convs
    folded = vnn.fold_weight_standardization(model)
    assert not any(isinstance(m, (vnn.WSConv1d, vnn.WSConv2d, vnn.WSConv3d)) for m in folded.modules())
    assert sum(type(m) is vnn.SafeConv3d for m in folded.modules()) == n_ws  # the bf16 guard, batch-1 routing
    with torch.no_grad():
        # float32 through 53 layers: folded and unfolded are each ~3e-5 from the float64 result (max |y| ~0.4).
        torch.testing.assert_close(folded(clip), expected, rtol=0, atol=1e-4)
        # In float64 the fold is exact.
        model64 = copy.deepcopy(model).double()
        expected64 = model64(clip.double())
        torch.testing.assert_close(
            vnn.fold_weight_standardization(model64)(clip.double()), expected64, rtol=0, atol=1e-10
        )
        # The residual branches really contribute to the output checked above.
        branch_conv = next(m for name, m in folded.named_modules() if name.endswith("branch2.conv_b"))
        branch_conv.weight.add_(torch.randn_like(branch_conv.weight))  # (a scale would be undone by its GN)
        assert (folded(clip) - expected).abs().max() > 1e-3
    folded_extra = vnn.fold_weight_standardization(extra)  # root module replaced
    assert type(folded_extra) is nn.Conv2d
    with torch.no_grad():
        torch.testing.assert_close(folded_extra(clip[:, :, 0]), expected_extra, rtol=0, atol=1e-5)


def test_convert_norm_keeps_a_bn_without_affine_or_running_stats_so() -> None:
    bn = nn.BatchNorm3d(8, affine=False, track_running_stats=False)
    x = torch.randn(2, 8, 2, 3, 3) * 3 + 1
    for kind in ("bn", "syncbn"):
        new = vnn.convert_norm(copy.deepcopy(bn), kind).eval()
        assert not new.affine and not new.track_running_stats and not list(new.parameters()), kind
        torch.testing.assert_close(new(x), bn.eval()(x))  # batch statistics in eval, as the source
    gn = vnn.convert_norm(nn.BatchNorm3d(64, affine=False), "gn")
    assert not gn.affine and not list(gn.parameters())
    assert vnn.convert_norm(nn.BatchNorm3d(64, affine=False), "gn", affine=True).affine  # unless asked


def test_convert_norm_replaces_torchvision_frozen_batchnorm() -> None:
    # The frozen BN of torchvision's detection backbones (no num_features, statistics as buffers).
    from torchvision.models import resnet18
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = resnet18(norm_layer=FrozenBatchNorm2d, num_classes=4).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    ref = model(x)
    assert vnn.is_norm(model.bn1)
    converted = vnn.convert_norm(model, "frozen_bn", dim=2).eval()
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in converted.modules())
    torch.testing.assert_close(converted(x), ref)
    assert vnn.convert_norm(resnet18(norm_layer=FrozenBatchNorm2d), "gn", dim=2).bn1.num_groups == 32


def test_sync_batchnorm_conversion_takes_over_every_bn_and_its_tensors() -> None:
    # torch's nn.SyncBatchNorm (what norm="syncbn" builds) refuses CPU tensors under DDP: it is converted too.
    from video_gn.models import build
    from video_gn.nn.syncbn import SyncBatchNorm, convert_sync_batchnorm

    model = build("r3d_18", norm="syncbn", ws=False, width=8)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    model.blocks[0].norm.weight.requires_grad_(False)
    model.blocks[0].norm.block_final_bn = True  # pytorchvideo's zero-init flag is a plain attribute
    converted = convert_sync_batchnorm(model)
    assert not any(type(m) is nn.SyncBatchNorm for m in converted.modules())
    assert sum(isinstance(m, SyncBatchNorm) for m in converted.modules()) == 20
    assert not converted.blocks[0].norm.weight.requires_grad  # the same Parameter objects
    assert converted.blocks[0].norm.block_final_bn is True
    bn = convert_sync_batchnorm(nn.BatchNorm3d(4).double())
    assert isinstance(bn, SyncBatchNorm) and bn.weight.dtype == bn.running_mean.dtype == torch.float64


def test_sync_batchnorm_plugin_reverts_to_the_original_classes() -> None:
    """After DDP, Lightning calls the plugin's revert: the model comes back with its BatchNorm3d layers."""
    from video_gn.models import build
    from video_gn.nn.syncbn import SyncBatchNorm, SyncBatchNormPlugin

    model = build("r3d_18", norm="bn", ws=False, width=8)
    types = [type(m) for m in model.modules()]
    model.blocks[0].norm.block_final_bn = True
    weight = model.blocks[0].norm.weight
    plugin = SyncBatchNormPlugin()
    synced = plugin.apply(model)
    assert sum(isinstance(m, SyncBatchNorm) for m in synced.modules()) == 20
    reverted = plugin.revert(synced)
    assert [type(m) for m in reverted.modules()] == types
    assert reverted.blocks[0].norm.weight is weight and reverted.blocks[0].norm.block_final_bn is True
    assert not hasattr(reverted.blocks[0].norm, "process_group")
    fresh = build("r3d_18", norm="bn", ws=False, width=8)
    fresh.load_state_dict(reverted.state_dict())  # same keys as plain BatchNorm
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(reverted.eval()(x), fresh.eval()(x))


def test_use_weight_standardization_leaves_convs_with_their_own_forward(caplog) -> None:
    class PadSame(nn.Conv2d):  # like timm's Conv2dSame: its own padding in forward
        def forward(self, x):
            return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))

    model = nn.Sequential(PadSame(3, 4, 3, stride=2), nn.Conv2d(4, 4, 3))
    with caplog.at_level(logging.WARNING, logger="video_gn.nn.convert"):
        vnn.use_weight_standardization(model)
    assert type(model[0]) is PadSame and isinstance(model[1], vnn.WSConv2d)
    assert "kept 0 (PadSame)" in caplog.text
    from video_gn.models import build

    plain = build("r3d_18", ws=False, width=8)  # video_gn's SafeConv3d is replaced (WS carries its guard)
    vnn.use_weight_standardization(plain)
    assert not any(type(m) is vnn.SafeConv3d for m in plain.modules())


@pytest.mark.parametrize("kind", ["bn", "frozen_bn"])
def test_syncbn_converts_to_the_dimensionality_of_the_models_convs(kind: str) -> None:
    """SyncBatchNorm has no dimensionality of its own: a 2-D model's becomes a 2-D BN, a 3-D model's a 3-D one."""
    import torchvision

    torch.manual_seed(0)
    resnet = nn.SyncBatchNorm.convert_sync_batchnorm(torchvision.models.resnet18()).eval()
    converted = vnn.convert_norm(resnet, kind)
    assert converted(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
    assert type(converted.bn1).__name__.endswith("2d")
    video = vnn.convert_norm(nn.SyncBatchNorm.convert_sync_batchnorm(r3d_18()).eval(), kind)
    assert video(torch.randn(1, 3, 4, 32, 32)).shape == (1, 400)
    one = vnn.convert_norm(nn.Sequential(nn.Conv1d(2, 4, 3), nn.SyncBatchNorm(4)).eval(), kind, dim=1)
    assert one(torch.randn(2, 2, 9)).shape == (2, 4, 7)  # an explicit dim wins
