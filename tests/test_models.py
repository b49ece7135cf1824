"""Tests for video_gn.models: registry, shapes for any clip size, zero-γ init, exact sizes, batch independence."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from video_gn._pytorchvideo import ptv_hub_resnet, ptv_resnet
from video_gn.models import LAYOUTS, AdaptiveHead, BasicBlock, block_final_norms, build, names
from video_gn.nn import FrozenBatchNorm3d, GroupNorm, SafeConv3d, WSConv3d, is_norm

REQUIRED = ["r3d_18", "r3d_34", "c2d_r50", "i3d_r50", "slow_r50"]
# Norm kinds whose γ is trained; frozen BN keeps a fixed γ (see test_frozen_bn_keeps_residual_branches_trainable).
TRAINABLE_GAMMA_KINDS = ["bn", "syncbn", "gn", "ln", "in"]
# The post-activation ResNets; BiT's pre-activation blocks have no block-final norm (tested in test_inflate.py).
POST_ACT = [n for n in names() if not n.startswith("bit_")]
# (T, H, W) clip sizes every model must accept; T = 32 only at 32x32 to stay fast.
CLIP_SIZES = [(1, 32, 32), (3, 33, 35), (4, 32, 32), (8, 40, 48), (16, 32, 32), (32, 32, 32)]


def _num_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _residual_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, ptv_resnet.ResBlock)]


# --------------------------------------------------------------------------------------------- registry


def test_registry_lists_required_models() -> None:
    assert set(REQUIRED) <= set(names())
    assert names() == sorted(names())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="r3d_18") as info:
        build("resnet_3d_18")
    assert "resnet_3d_18" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # build's own checks, before any layer exists (GroupNorm would refuse width 0 too, less clearly)
        ({"width": 0}, ValueError, r"^width must be a positive int \(64 = published size\), got 0\.$"),
        ({"num_classes": 0}, ValueError, r"^num_classes must be a positive int, got 0\.$"),
        ({"dropout": 1.0}, ValueError, r"^dropout must be in \[0, 1\), got 1\.0\.$"),
        ({"norm": "batchnorm"}, ValueError, r"^unknown norm kind 'batchnorm'; valid kinds: bn, .*gn"),
        ({"ws": "yes"}, TypeError, r"^ws must be a bool, got str 'yes'\.$"),
        (
            {"no_such_option": 1},
            TypeError,
            r"^Model 'r3d_18' got unexpected keyword\(s\) \['no_such_option'\]; it accepts extras",
        ),
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build("r3d_18", **{"width": 8, **kwargs})


# ------------------------------------------------------------------------------------- forward/backward


@pytest.mark.parametrize("name", names())
def test_forward_backward_any_clip_size(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=5, width=8, zero_init_residual=False).train()
    for t, h, w in CLIP_SIZES:
        model.zero_grad()
        y = model(torch.randn(2, 3, t, h, w))
        assert y.shape == (2, 5), (name, t, h, w)
        assert torch.isfinite(y).all()
        y.square().sum().backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, pname, t)
        # Gradients reach the stem, i.e. back through every stage.
        stem_conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
        assert stem_conv.weight.grad.abs().sum() > 0, (name, t)


@pytest.mark.parametrize("norm", ["bn", "syncbn", "frozen_bn", "ln", "in", "none"])
def test_other_norm_kinds_forward(norm: str) -> None:
    ws = norm not in ("bn", "frozen_bn", "none")  # WS needs a normalising layer after it (build warns)
    model = build("r3d_18", num_classes=3, norm=norm, ws=ws, width=8).train()
    y = model(torch.randn(2, 3, 4, 32, 32))
    y.sum().backward()
    assert y.shape == (2, 3)


def test_width_scales_channels() -> None:
    basic, bottleneck = build("r3d_18", width=16), build("i3d_r50", width=8)
    assert basic.blocks[0].conv.out_channels == 16
    assert [s.res_blocks[-1].branch2.conv_b.out_channels for s in basic.blocks[1:5]] == [16, 32, 64, 128]
    stages = [b for b in bottleneck.blocks if isinstance(b, ptv_resnet.ResStage)]
    assert bottleneck.blocks[0].conv.out_channels == 8
    assert [s.res_blocks[0].branch2.conv_a.out_channels for s in stages] == [8, 16, 32, 64]
    assert [s.res_blocks[0].branch2.conv_c.out_channels for s in stages] == [32, 64, 128, 256]
    assert bottleneck.blocks[-1].proj.in_features == 256


def test_head_pools_adaptively() -> None:
    head = AdaptiveHead(in_features=4, num_classes=3, dropout=0.0)
    x = torch.randn(2, 4, 3, 5, 7, dtype=torch.float64)
    head = head.double()
    expected = x.mean(dim=(2, 3, 4)) @ head.proj.weight.T + head.proj.bias
    torch.testing.assert_close(head(x), expected)
    with pytest.raises(ValueError, match="dropout"):
        AdaptiveHead(in_features=4, num_classes=3, dropout=1.5)


# ------------------------------------------------------------------------------------------ init / γ = 0


@pytest.mark.parametrize("norm", TRAINABLE_GAMMA_KINDS)
@pytest.mark.parametrize("name", POST_ACT)
def test_block_final_gamma_is_zero_for_every_norm_kind(name: str, norm: str) -> None:
    model = build(name, norm=norm, width=8)
    finals = block_final_norms(model)
    assert finals == model.last_norms()
    assert len(finals) == sum(LAYOUTS[name].depths) == len(_residual_blocks(model))
    final_ids = {id(m) for m in finals}
    others = [m for m in model.modules() if is_norm(m) and id(m) not in final_ids]
    assert others  # stem, inner and shortcut norms
    for m in finals:
        assert is_norm(m) and torch.count_nonzero(m.weight) == 0
        assert torch.count_nonzero(m.bias) == 0
    for m in others:
        assert torch.equal(m.weight, torch.ones_like(m.weight))
    # Disabled: every γ is 1.
    for m in block_final_norms(build(name, norm=norm, width=8, zero_init_residual=False)):
        assert torch.equal(m.weight, torch.ones_like(m.weight))


@pytest.mark.parametrize("name", ["r3d_18", "i3d_r50"])
def test_frozen_bn_keeps_residual_branches_trainable(name: str) -> None:
    """A frozen γ = 0 would block every residual branch's gradient forever: frozen BN keeps γ = 1."""
    torch.manual_seed(0)
    # Frozen BN is for fine-tuning a BN checkpoint (its statistics frozen); from scratch it is an identity, and
    # with WS and no activation norm the activations grow with depth, so the check uses plain convs.
    model = build(name, norm="frozen_bn", ws=False, width=8).train()
    for m in block_final_norms(model):
        assert isinstance(m, FrozenBatchNorm3d) and torch.equal(m.weight, torch.ones_like(m.weight))
    model(torch.randn(2, 3, 4, 32, 32)).square().sum().backward()
    branch_convs = [b.branch2.conv_a for b in _residual_blocks(model)]
    assert branch_convs and all(c.weight.grad.abs().sum() > 0 for c in branch_convs)


def test_zero_gamma_blocks_start_as_identity() -> None:
    """With γ = 0 every residual block without a projection shortcut computes relu(x) = x (x >= 0)."""
    torch.manual_seed(0)
    model = build("r3d_18", norm="gn", width=8).train()
    identity_blocks = [b for b in _residual_blocks(model) if b.branch1_conv is None]
    assert len(identity_blocks) == 5  # both blocks of stage 1, the second of stages 2-4
    for block in identity_blocks:
        c = block.branch2.conv_a.in_channels
        x = torch.rand(2, c, 2, 4, 4)
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)


def test_weight_init() -> None:
    torch.manual_seed(0)
    model = build("r3d_18", num_classes=400, width=64)
    proj = model.blocks[-1].proj
    assert abs(proj.weight.std().item() - 0.01) < 0.001 and torch.count_nonzero(proj.bias) == 0
    conv = model.blocks[4].res_blocks[1].branch2.conv_b  # 512 -> 512, 3x3x3
    fan_out = conv.out_channels * math.prod(conv.kernel_size)
    assert abs(conv.weight.std().item() / math.sqrt(2.0 / fan_out) - 1) < 0.02


# ------------------------------------------------------------------------------------- module types


@pytest.mark.parametrize("name", ["r3d_18", "slow_r50"])
def test_ws_flag_controls_every_conv(name: str) -> None:
    convs = [m for m in build(name, width=8, ws=True, ws_eps=1e-8).modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(type(m) is WSConv3d and m.eps == 1e-8 for m in convs)  # stem and shortcuts too
    plain = [m for m in build(name, width=8, ws=False).modules() if isinstance(m, nn.Conv3d)]
    assert len(plain) == len(convs) and all(type(m) in (nn.Conv3d, SafeConv3d) for m in plain)


@pytest.mark.parametrize(
    ("norm", "expected_type", "groups"),
    [
        ("bn", nn.BatchNorm3d, None),
        ("syncbn", nn.SyncBatchNorm, None),
        ("frozen_bn", FrozenBatchNorm3d, None),
        ("gn", GroupNorm, lambda c: min(32, c)),
        ("ln", GroupNorm, lambda c: 1),
        ("in", GroupNorm, lambda c: c),
    ],
)
def test_norm_kinds_build_expected_modules(norm: str, expected_type: type, groups) -> None:
    model = build("i3d_r50", norm=norm, ws=norm != "frozen_bn", width=8)
    norms = [m for m in model.modules() if is_norm(m)]
    # stem + 3 per bottleneck block + 1 per projection shortcut (first block of each stage)
    assert len(norms) == 1 + 3 * 16 + 4
    for m in norms:
        assert type(m) is expected_type, (norm, type(m))
        if groups is not None:
            assert m.num_groups == groups(m.num_channels)
    assert not any(isinstance(m, nn.Identity) for m in model.modules())


def test_norm_none_and_norm_kwargs() -> None:
    model = build("r3d_18", norm="none", ws=False, width=8)
    assert not any(is_norm(m) for m in model.modules())
    model = build("r3d_18", norm="gn", width=16, norm_kwargs={"num_groups": 4})
    assert {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)} == {4}
    with pytest.raises(ValueError, match="16"):
        build("r3d_18", norm="gn", width=16, norm_kwargs={"num_groups": 5})


# ---------------------------------------------------------------------------------------- exact sizes


def test_i3d_r50_parameter_count_matches_pytorchvideo() -> None:
    reference = _num_params(ptv_hub_resnet.i3d_r50(pretrained=False))
    assert reference == 28_043_472
    assert _num_params(build("i3d_r50", norm="bn", ws=False, num_classes=400, width=64)) == reference
    for ws in (False, True):
        gn = build("i3d_r50", norm="gn", ws=ws)
        assert _num_params(gn, trainable_only=True) == reference
        assert not any(isinstance(m, nn.BatchNorm3d) for m in gn.modules())


@pytest.mark.parametrize(
    ("name", "hub", "pool"),
    [
        ("i3d_r50", ptv_hub_resnet.i3d_r50, (4, 1, 1)),
        ("slow_r50", ptv_hub_resnet.slow_r50, (8, 1, 1)),
        ("c2d_r50", ptv_hub_resnet.c2d_r50, (4, 1, 1)),
    ],
)
def test_pytorchvideo_checkpoint_loads_with_identical_keys(
    name: str, hub, pool: tuple[int, int, int]
) -> None:
    """Same state_dict keys and shapes as the hub model; same outputs once its weights are loaded."""
    torch.manual_seed(0)
    # The hub head pools with a fixed kernel: size it for a 8x32x32 clip (features T'x1x1).
    reference = hub(pretrained=False).eval()
    reference.blocks[-1].pool.kernel_size = pool
    ours = build(name, norm="bn", ws=False).eval()
    ref_sd, our_sd = reference.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd)
    assert all(ref_sd[k].shape == our_sd[k].shape for k in ref_sd)
    with torch.no_grad():  # randomise the BN statistics and affine so the comparison is not trivial
        for k, v in ref_sd.items():
            if "norm" in k and v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5)
    ours.load_state_dict(ref_sd)
    # float64: in float32 our batch-1 CPU convs run on oneDNN and torch's on its own kernels (video_gn/nn/conv.py),
    # which round differently through 50 layers
    x = torch.randn(1, 3, 8, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours.double()(x), reference.double()(x), rtol=1e-9, atol=1e-10)


def test_r3d_18_matches_torchvision() -> None:
    """r3d_18 (bn, no WS) is torchvision's R3D-18: same parameter count and, with its weights, same outputs."""
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18(num_classes=400).eval()
    ours = build("r3d_18", norm="bn", ws=False).eval()
    assert _num_params(ours) == _num_params(reference) == 33_371_472
    # torchvision key -> our key
    mapping = {"stem.0": "blocks.0.conv", "stem.1": "blocks.0.norm", "fc": "blocks.5.proj"}
    for layer in range(1, 5):
        for block in range(2):
            src, dst = f"layer{layer}.{block}", f"blocks.{layer}.res_blocks.{block}"
            mapping |= {
                f"{src}.conv1.0": f"{dst}.branch2.conv_a",
                f"{src}.conv1.1": f"{dst}.branch2.norm_a",
                f"{src}.conv2.0": f"{dst}.branch2.conv_b",
                f"{src}.conv2.1": f"{dst}.branch2.norm_b",
                f"{src}.downsample.0": f"{dst}.branch1_conv",
                f"{src}.downsample.1": f"{dst}.branch1_norm",
            }
    converted = {}
    for key, value in reference.state_dict().items():
        module, _, leaf = key.rpartition(".")
        converted[f"{mapping[module]}.{leaf}"] = value
    ours.load_state_dict(converted)
    x = torch.randn(1, 3, 5, 33, 40)  # odd sizes exercise the strides / padding
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- the central claim


def _batch_vs_alone(norm: str, ws: bool) -> float:
    torch.manual_seed(0)
    model = build("r3d_18", num_classes=7, norm=norm, ws=ws, width=8, dropout=0.0, zero_init_residual=False)
    model.train()
    clips = torch.randn(8, 3, 4, 32, 32)
    with torch.no_grad():
        batched = model(clips)
        alone = torch.cat([model(clips[i : i + 1]) for i in range(8)])
    return (batched - alone).abs().max().item()


def test_gn_ws_output_does_not_depend_on_the_batch() -> None:
    assert _batch_vs_alone("gn", ws=True) <= 1e-5


def test_bn_output_depends_on_the_batch() -> None:
    assert _batch_vs_alone("bn", ws=False) > 1e-2


def test_basic_block_type() -> None:
    model = build("r3d_34", width=8)
    assert all(isinstance(b.branch2, BasicBlock) for b in _residual_blocks(model))
    assert len(_residual_blocks(model)) == 16


@pytest.mark.parametrize("norm", ["none", "frozen_bn"])
def test_ws_without_a_normalising_layer_warns(norm: str) -> None:
    with pytest.warns(UserWarning, match=r"weight standardization needs a normalising layer"):
        build("r3d_18", num_classes=4, width=8, norm=norm, ws=True)
