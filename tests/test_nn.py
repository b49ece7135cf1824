"""Tests for video_gn.nn layers: WS convs, GroupNorm, frozen BN, the norm factory."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import video_gn.nn.ws as ws_module
from video_gn import nn as vnn

WS_CLASSES = {1: vnn.WSConv1d, 2: vnn.WSConv2d, 3: vnn.WSConv3d}
CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def reference_standardize(w: torch.Tensor, eps: float) -> torch.Tensor:
    """Independent float64 WS: per output filter, biased variance, eps inside the sqrt."""
    w64 = w.detach().double()
    out = torch.empty_like(w64)
    for o in range(w64.shape[0]):
        f = w64[o]
        mu = f.sum() / f.numel()
        var = ((f - mu) ** 2).sum() / f.numel()
        out[o] = (f - mu) / torch.sqrt(var + eps)
    return out


def naive_ws_forward(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """WS with plain autograd ops, used to check the custom backward."""
    w = conv.weight
    dims = tuple(range(1, w.dim()))
    mu = w.mean(dim=dims, keepdim=True)
    var = ((w - mu) ** 2).mean(dim=dims, keepdim=True)
    w_hat = (w - mu) / torch.sqrt(var + conv.eps)
    return CONV_FN[w.dim() - 2](x, w_hat, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


# ----------------------------------------------------------------------------- weight standardization


def spy_weight_domain(monkeypatch) -> list[int]:
    """Count the fused WS conv's weight-domain evaluations (only that path takes the input's box sums)."""
    calls: list[int] = []
    real = ws_module._box_sum
    monkeypatch.setattr(ws_module, "_box_sum", lambda *args: calls.append(1) or real(*args))
    return calls


@pytest.fixture(params=["standardized", "weight"])
def ws_path(request, monkeypatch):
    """Run a test through both exact evaluation orders of the fused WS conv (see ``_WSConvFunction``), and check
    afterwards that the order asked for is the one that ran (the weight-domain order needs groups = 1)."""
    monkeypatch.setattr(ws_module, "_FORCE_PATH", request.param)
    calls = spy_weight_domain(monkeypatch)
    yield request.param
    assert bool(calls) == (request.param == "weight"), f"asked for the {request.param} path, the other ran"


# groups = 2 convs always take the standardized-weight order
PATHS_AND_GROUPS = [("standardized", 1), ("weight", 1), ("standardized", 2)]


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(("ws_path", "groups"), PATHS_AND_GROUPS, indirect=["ws_path"])
def test_ws_conv_matches_float64_reference(dim: int, groups: int, ws_path: str) -> None:
    torch.manual_seed(dim * 10 + groups)
    conv = WS_CLASSES[dim](4, 6, 3, stride=2, padding=1, dilation=1, groups=groups, bias=True, eps=1e-5)
    assert isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1])
    x = torch.randn(2, 4, *([7] * dim))
    w_ref = reference_standardize(conv.weight, 1e-5)
    expected = CONV_FN[dim](x.double(), w_ref, conv.bias.double(), 2, 1, 1, groups)
    torch.testing.assert_close(conv(x).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.standardized_weight().double(), w_ref, rtol=1e-5, atol=1e-5)
    # every filter of ŵ has mean 0 and variance var/(var + eps)
    w_hat = conv.standardized_weight().detach().flatten(1).double()
    raw_var = conv.weight.detach().flatten(1).double().var(1, unbiased=False)
    assert w_hat.mean(1).abs().max() < 1e-6
    torch.testing.assert_close(w_hat.var(1, unbiased=False), raw_var / (raw_var + 1e-5), rtol=1e-5, atol=0)


def test_ws_is_accurate_when_filter_mean_dominates() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3, 3) * 0.02 + 1.0  # mean = 50 σ: one-pass E[w²] − μ² would lose ~1e-3
    torch.testing.assert_close(
        vnn.standardize_weight(w).double(), reference_standardize(w, 1e-6), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(
    ("dim", "stride", "padding", "dilation", "size"),
    [
        (3, (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 7, 7)),  # T = 1 < kernel: padded before pooling
        (3, (2, 2, 2), (1, 0, 2), (1, 1, 1), (4, 9, 8)),
        (3, (1, 2, 1), (1, 1, 1), (2, 1, 1), (5, 6, 7)),  # dilation: the one-channel conv fallback
        (2, (2, 1), (1, 1), (1, 1), (7, 6)),
        (1, (2,), (1,), (1,), (9,)),  # no 1-D sum pool in torch: conv fallback
    ],
)
def test_box_sum_and_its_adjoint_match_the_all_ones_conv(dim, stride, padding, dilation, size) -> None:
    """The weight-domain path's box sums (sum pools where torch has them) equal conv(Σ_c x, ones) and its
    transpose exactly, in float64, for every geometry it can meet."""
    torch.manual_seed(4)
    kernel = (3,) * dim
    x = torch.randn(2, 5, *size, dtype=torch.double, requires_grad=True)
    ones = torch.ones(1, 1, *kernel, dtype=torch.double)
    want = CONV_FN[dim](x.sum(1, keepdim=True), ones, None, stride, padding, dilation)
    got = ws_module._box_sum(x.detach(), kernel, list(stride), list(padding), list(dilation))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    h = torch.randn_like(want)
    (want_grad,) = torch.autograd.grad(want, x, h)  # the same for every channel
    got_grad = ws_module._box_sum_backward(h, x.detach(), kernel, list(stride), list(padding), list(dilation))
    assert got_grad.shape == (2, 1, *size)
    torch.testing.assert_close(got_grad.expand_as(want_grad), want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mean", [0.0, 1.0])
def test_weight_heavy_ws_conv_leaves_the_weight_domain_for_mean_dominated_filters(mean, monkeypatch) -> None:
    """The weight-domain order (conv with raw w, then r·(conv − μ·box)) cancels ~log10(μ/σ) digits, so a
    weight-heavy conv whose filters have μ² > 100·σ² must take the standardized order and stay accurate."""
    calls = spy_weight_domain(monkeypatch)
    torch.manual_seed(0)
    conv = vnn.WSConv3d(32, 64, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.02).add_(mean)  # mean 1.0 = 50 σ
    x = torch.randn(1, 32, 2, 4, 4, requires_grad=True)  # weights 55k values, input 1k: weight-heavy
    y = conv(x)
    assert bool(calls) == (mean == 0.0)  # well-conditioned filters do take the weight-domain order
    want = F.conv3d(x.detach().double(), reference_standardize(conv.weight, conv.eps), padding=1)
    assert ((y.double() - want).norm() / want.norm()).item() < 1e-5
    y.square().sum().backward()
    w = conv.weight.detach().double().requires_grad_()
    ref = F.conv3d(x.detach().double(), _ws_double(w, conv.eps), padding=1)
    ref.square().sum().backward()
    assert ((conv.weight.grad.double() - w.grad).norm() / w.grad.norm()).item() < 1e-4


def _ws_double(w: torch.Tensor, eps: float) -> torch.Tensor:
    """Differentiable float64 WS with plain ops (an independent reference for gradients)."""
    mu = w.mean(dim=tuple(range(1, w.dim())), keepdim=True)
    var = ((w - mu) ** 2).mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return (w - mu) / torch.sqrt(var + eps)


@pytest.fixture
def one_thread():
    """Tiny float64 ops gain nothing from threads, and a busy machine makes each parallel region wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ws_gradcheck_conv3d_double(one_thread, ws_path: str) -> None:
    torch.manual_seed(0)
    conv = vnn.WSConv3d(2, 3, (2, 2, 3), padding=(0, 1, 1), bias=True, eps=1e-5).double()
    x = torch.randn(2, 2, 2, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda inp, w, b: vnn.ws_conv(inp, w, b, 1, (0, 1, 1), 1, 1, 1e-5), (x, conv.weight, conv.bias)
    )
    assert torch.autograd.gradcheck(lambda w: vnn.standardize_weight(w, 1e-5), (conv.weight,))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(("ws_path", "groups"), PATHS_AND_GROUPS, indirect=["ws_path"])
def test_ws_custom_gradient_equals_naive_autograd(dim: int, groups: int, ws_path: str) -> None:
    torch.manual_seed(1)
    conv = WS_CLASSES[dim](4, 6, 3, padding=1, groups=groups, bias=True).double()
    x = torch.randn(3, 4, *([5] * dim), dtype=torch.double, requires_grad=True)
    g = torch.randn_like(conv(x))

    grads = []
    for fwd in (conv, lambda inp: naive_ws_forward(conv, inp)):
        conv.zero_grad(set_to_none=True)
        x.grad = None
        (fwd(x) * g).sum().backward()
        grads.append((x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    for ours, naive in zip(*grads):
        torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-12)


def test_ws_weight_only_function_gradient_equals_naive() -> None:
    torch.manual_seed(2)
    w = torch.randn(5, 3, 2, 2, dtype=torch.double, requires_grad=True)
    g = torch.randn_like(w)
    (gw_ours,) = torch.autograd.grad((vnn.standardize_weight(w, 1e-3) * g).sum(), w)
    mu = w.mean(dim=(1, 2, 3), keepdim=True)
    var = ((w - mu) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    (gw_naive,) = torch.autograd.grad((((w - mu) / torch.sqrt(var + 1e-3)) * g).sum(), w)
    torch.testing.assert_close(gw_ours, gw_naive)
    # the incoming gradient must not be modified in place
    g_before = g.clone()
    torch.autograd.grad(vnn.standardize_weight(w), w, grad_outputs=g)
    torch.testing.assert_close(g, g_before)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize(
    ("padding", "padding_mode", "kernel", "dilation"),
    [
        ("same", "zeros", 4, 1),
        ("same", "zeros", 3, 2),
        ("valid", "zeros", 3, 1),
        (1, "reflect", 3, 1),
        (2, "circular", 3, 1),
    ],
)
def test_ws_conv_padding_variants_match_conv_with_standardized_weight(
    padding, padding_mode, kernel, dilation
) -> None:
    torch.manual_seed(3)
    ws = vnn.WSConv3d(3, 4, kernel, padding=padding, padding_mode=padding_mode, dilation=dilation)
    plain = nn.Conv3d(3, 4, kernel, padding=padding, padding_mode=padding_mode, dilation=dilation)
    with torch.no_grad():
        plain.weight.copy_(reference_standardize(ws.weight, ws.eps).float())
        plain.bias.copy_(ws.bias)
    x = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    torch.testing.assert_close(ws(x), plain(x), rtol=1e-5, atol=1e-5)
    ws(x).sum().backward()  # gradients flow through the padding path
    assert x.grad is not None and ws.weight.grad is not None


def test_ws_conv_state_dict_is_interchangeable_with_conv() -> None:
    plain = nn.Conv3d(3, 8, 3, bias=False)
    ws = vnn.WSConv3d(3, 8, 3, bias=False, eps=1e-8)
    ws.load_state_dict(plain.state_dict())
    torch.testing.assert_close(ws.weight, plain.weight)
    assert set(ws.state_dict()) == {"weight"}
    assert "eps=1e-08" in repr(ws)
    assert pickle.loads(pickle.dumps(ws)).eps == 1e-8


@pytest.mark.parametrize("path", [None, "standardized"])
def test_ws_conv_saves_no_weight_sized_tensor_for_backward(path, monkeypatch) -> None:
    """What makes WS cheap: autograd keeps the input and the raw weight (a parameter), no ŵ or other copies."""
    monkeypatch.setattr(ws_module, "_FORCE_PATH", path)
    conv = vnn.WSConv3d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(1, 64, 2, 3, 3, requires_grad=True)  # weights 110k values, input 1k: weight-heavy
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = conv(x)
    extra = [t for t in saved if t.untyped_storage().data_ptr() != conv.weight.untyped_storage().data_ptr()]
    assert sum(t.numel() for t in extra) <= x.numel() + 2 * y.numel() + 2 * 64
    assert any(t is conv.weight for t in saved)
    y.sum().backward()  # and the graph still differentiates
    assert conv.weight.grad is not None


@pytest.mark.parametrize("eps", [0.0, -1e-6, "1e-6", True])
def test_ws_conv_rejects_bad_eps(eps) -> None:
    with pytest.raises(ValueError, match="eps must be a positive float"):
        vnn.WSConv3d(3, 4, 3, eps=eps)


def test_ws_conv_no_grad_for_frozen_input_and_no_bias(ws_path: str) -> None:
    conv = vnn.WSConv2d(3, 4, 3, bias=False)
    x = torch.randn(1, 3, 6, 6)  # input does not require grad (e.g. the stem)
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.shape == conv.weight.shape
    # WS gradients are orthogonal to the per-filter mean direction
    g = conv.weight.grad.flatten(1).double()
    assert (g.sum(1).abs() / g.abs().sum(1)).max() < 1e-5


def test_ws_conv_under_cpu_autocast_bf16() -> None:
    torch.manual_seed(4)
    conv = vnn.WSConv3d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 4, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = naive_ws_forward(conv, x)
    torch.testing.assert_close(y, ref)
    grad_w = conv.weight.grad.clone()
    conv.weight.grad = None
    ref.float().sum().backward()
    torch.testing.assert_close(grad_w, conv.weight.grad, rtol=2e-2, atol=2e-2)
    # like torch's own ops, autocast leaves float64 alone
    conv64, x64 = copy.deepcopy(conv).double(), x.detach().double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv64(x64).dtype == torch.float64 and nn.Conv3d(4, 8, 3).double()(x64).dtype == torch.float64


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_ws_conv_takes_unbatched_input_as_nn_conv_does(dim: int) -> None:
    conv = {1: vnn.WSConv1d, 2: vnn.WSConv2d, 3: vnn.WSConv3d}[dim](
        2, 3, 3, padding=1, padding_mode="reflect"
    )
    x = torch.randn(2, *[5] * dim)
    y = conv(x)
    assert y.shape == (3, *[5] * dim)
    torch.testing.assert_close(y, conv(x[None])[0])


def test_ws_conv_input_rank_error() -> None:
    with pytest.raises(ValueError, match="needs 5"):
        vnn.ws_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 1, 1, 1))


def test_conv_layer() -> None:
    assert vnn.conv_layer(False) is vnn.SafeConv3d and issubclass(vnn.SafeConv3d, nn.Conv3d)
    assert vnn.conv_layer(False, dim=2) is nn.Conv2d
    conv = vnn.conv_layer(True, eps=1e-8)(in_channels=3, out_channels=4, kernel_size=3)
    assert type(conv) is vnn.WSConv3d and conv.eps == 1e-8
    assert vnn.conv_layer(True, dim=2)(3, 4, 1).__class__ is vnn.WSConv2d
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        vnn.conv_layer(True, dim=4)


# ----------------------------------------------------------------------------- GroupNorm


def manual_group_norm(x: torch.Tensor, groups: int, eps: float, weight, bias) -> torch.Tensor:
    x64 = x.double()
    n, c = x.shape[:2]
    out = torch.empty_like(x64)
    per = c // groups
    for i in range(n):
        for g in range(groups):
            chunk = x64[i, g * per : (g + 1) * per]
            mu = chunk.sum() / chunk.numel()
            var = ((chunk - mu) ** 2).sum() / chunk.numel()
            out[i, g * per : (g + 1) * per] = (chunk - mu) / torch.sqrt(var + eps)
    shape = (1, c) + (1,) * (x.dim() - 2)
    return out * weight.double().view(shape) + bias.double().view(shape)


@pytest.mark.parametrize(("kind", "groups"), [("gn", 4), ("ln", 1), ("in", 8)])
def test_group_norm_kinds_on_5d_match_manual_group_statistics(kind: str, groups: int) -> None:
    torch.manual_seed(5)
    kw = {"num_groups": 4} if kind == "gn" else {}
    norm = vnn.make_norm(kind, 8, eps=1e-5, **kw)
    assert norm.num_groups == groups
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 8, 2, 3, 4) * 3 + 1
    expected = manual_group_norm(x, groups, 1e-5, norm.weight, norm.bias)
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_group_norm_constructed_torch_way_and_batchnorm_way() -> None:
    torch_style = vnn.GroupNorm(4, 16, 1e-3, False)
    assert (torch_style.num_groups, torch_style.num_channels, torch_style.eps, torch_style.affine) == (
        4,
        16,
        1e-3,
        False,
    )
    bn_style = vnn.GroupNorm(num_features=256, eps=1e-4, momentum=0.1)  # what pytorchvideo calls
    assert (bn_style.num_groups, bn_style.num_channels, bn_style.eps) == (32, 256, 1e-4)
    assert isinstance(bn_style, nn.GroupNorm)
    assert vnn.GroupNorm(num_features=64, channels_per_group=16).num_groups == 4
    assert vnn.GroupNorm(num_features=64, num_groups=8).num_groups == 8
    mixed = vnn.GroupNorm(8, num_channels=64)  # torch's order, channels by keyword
    assert (mixed.num_groups, mixed.num_channels) == (8, 64)


@pytest.mark.parametrize("channels", [32, 64, 2048])
def test_default_group_policy(channels: int) -> None:
    assert vnn.GroupNorm(num_features=channels).num_groups == 32
    assert vnn.resolve_num_groups(channels) == 32
    assert vnn.resolve_num_groups(channels, "min32") == 32


@pytest.mark.parametrize(("channels", "valid"), [(16, "[1, 2, 4, 8, 16]"), (3, "[1, 3]")])
def test_narrow_layer_fails_by_default_and_min32_gives_one_group_per_channel(
    channels: int, valid: str
) -> None:
    # Fewer channels than the default 32 groups: an error, not a silent InstanceNorm...
    with pytest.raises(ValueError) as err:
        vnn.make_norm("gn", channels)
    assert f"num_channels={channels}" in str(err.value) and valid in str(err.value)
    assert "min32" in str(err.value)
    # ... unless asked for by name, as the model registry does for its CPU-sized widths.
    assert vnn.make_norm("gn", channels, num_groups="min32").num_groups == channels
    with pytest.raises(ValueError, match="num_channels=48"):
        vnn.resolve_num_groups(48, "min32")  # min32 still refuses a wide layer that 32 does not divide


def test_batchnorm_positional_form_as_torchvision_calls_it() -> None:
    gn = vnn.GroupNorm(64)  # torchvision's norm_layer(planes)
    assert (gn.num_groups, gn.num_channels) == (32, 64)
    gn = vnn.GroupNorm(64, 1e-4, 0.1)  # BatchNorm's (num_features, eps, momentum)
    assert (gn.num_groups, gn.num_channels, gn.eps) == (32, 64, 1e-4)
    assert vnn.GroupNorm(8, 64).num_groups == 8  # torch's (num_groups, num_channels) is unchanged
    model = torchvision.models.resnet18(num_classes=5, norm_layer=vnn.GroupNorm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_default_group_count_that_does_not_divide_fails_unless_auto() -> None:
    # 32 groups do not divide 48 channels: no silent fallback to another normalisation.
    with pytest.raises(ValueError) as err:
        vnn.GroupNorm(num_features=48)
    msg = str(err.value)
    assert "num_channels=48" in msg and "[1, 2, 3, 4, 6, 8, 12, 16, 24, 48]" in msg
    with pytest.raises(ValueError, match="num_channels=48"):
        vnn.make_norm("gn", 48)
    # The explicit opt-in for third-party models with odd widths: largest divisor <= 32.
    assert vnn.GroupNorm(num_features=48, num_groups="auto").num_groups == 24
    assert vnn.resolve_num_groups(230, "auto") == 23
    assert vnn.make_norm("gn", 100, num_groups="auto").num_groups == 25


def test_group_count_error_names_channels_and_valid_counts() -> None:
    with pytest.raises(ValueError) as err:
        vnn.GroupNorm(num_features=48, num_groups=32)
    msg = str(err.value)
    assert "num_channels=48" in msg and "num_groups=32" in msg
    assert "[1, 2, 3, 4, 6, 8, 12, 16, 24, 48]" in msg
    with pytest.raises(ValueError, match=r"channels_per_group=5 does not divide num_channels=48.*\[1, 2, 3"):
        vnn.GroupNorm(num_features=48, channels_per_group=5)
    with pytest.raises(ValueError, match="not both"):
        vnn.GroupNorm(num_features=48, num_groups=4, channels_per_group=12)
    with pytest.raises(ValueError, match="num_groups=32 does not divide num_channels=48"):
        vnn.make_norm("gn", 48, num_groups=32)
    with pytest.raises(TypeError, match="needs the channel count"):
        vnn.GroupNorm(num_groups=32)


# ----------------------------------------------------------------------------- factory


KIND_TYPES = {
    "bn": nn.BatchNorm3d,
    "syncbn": nn.SyncBatchNorm,
    "frozen_bn": vnn.FrozenBatchNorm3d,
    "gn": vnn.GroupNorm,
    "ln": vnn.GroupNorm,
    "in": vnn.GroupNorm,
    "none": nn.Identity,
}


@pytest.mark.parametrize("kind", vnn.NORM_KINDS)
def test_make_norm_every_kind(kind: str) -> None:
    assert set(KIND_TYPES) == set(vnn.NORM_KINDS)
    norm = vnn.make_norm(kind, 64, eps=1e-3)
    assert type(norm) is KIND_TYPES[kind]
    assert vnn.is_norm(norm) == (kind != "none")
    if kind != "none":
        assert norm.eps == 1e-3
    x = torch.randn(2, 64, 2, 3, 3)
    y = norm.train()(x)  # syncbn runs as a plain BN outside DDP
    assert y.shape == x.shape
    # pytorchvideo calls norm(num_features=, eps=, momentum=) by keyword, torchvision norm_layer(C) positionally
    factory = vnn.norm_layer(kind)
    assert type(factory(num_features=64, eps=1e-5, momentum=0.1)) is KIND_TYPES[kind]
    assert type(factory(64)) is KIND_TYPES[kind]
    assert type(pickle.loads(pickle.dumps(factory))(64)) is KIND_TYPES[kind]


def test_make_norm_dim_selects_bn_flavour() -> None:
    assert type(vnn.make_norm("bn", 4, dim=2)) is nn.BatchNorm2d
    assert type(vnn.make_norm("frozen_bn", 4, dim=1)) is vnn.FrozenBatchNorm1d
    assert vnn.make_norm("bn", 4, momentum=0.3).momentum == 0.3


def test_unknown_kind_and_keyword_errors() -> None:
    with pytest.raises(ValueError) as err:
        vnn.make_norm("batchnorm", 8)
    for kind in vnn.NORM_KINDS:
        assert kind in str(err.value)
    assert "'batchnorm'" in str(err.value)
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['num_groups'\]"):
        vnn.norm_layer("bn", num_groups=4)


def test_is_norm() -> None:
    for m in (
        nn.BatchNorm1d(3),
        nn.GroupNorm(1, 3),
        nn.LayerNorm(3),
        nn.InstanceNorm3d(3),
        vnn.FrozenBatchNorm2d(3),
    ):
        assert vnn.is_norm(m)
    for m in (nn.Identity(), nn.Conv3d(3, 3, 1), nn.Linear(3, 3), vnn.WSConv3d(3, 3, 3)):
        assert not vnn.is_norm(m)


# ----------------------------------------------------------------------------- frozen BN


def test_frozen_bn_matches_bn_eval_and_never_changes() -> None:
    torch.manual_seed(6)
    bn = nn.BatchNorm3d(6)
    bn.train()(torch.randn(4, 6, 2, 3, 3) * 2 + 1)  # non-trivial running stats
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    frozen = vnn.FrozenBatchNorm3d(6)
    frozen.load_state_dict(bn.state_dict())  # BN checkpoints (with num_batches_tracked) load
    assert list(frozen.parameters()) == []
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    x = torch.randn(3, 6, 2, 3, 3)
    y = frozen.train()(x)
    torch.testing.assert_close(y, bn.eval()(x))
    for k, v in frozen.state_dict().items():
        torch.testing.assert_close(v, before[k])
    # one sample alone gives the same output as inside the batch
    torch.testing.assert_close(frozen(x[:1]), y[:1])
    with pytest.raises(ValueError, match=r"expected input \(N, 6, \.\.\.\) with 5 dims"):
        frozen(torch.randn(3, 6, 4, 4))


# ----------------------------------------------------------------------------- the central claim, layer level


def conv_norm_stack(kind: str, ws: bool) -> nn.Sequential:
    conv = vnn.conv_layer(ws)
    return nn.Sequential(
        conv(3, 16, 3, padding=1, bias=False),
        vnn.make_norm(kind, 16, num_groups=4) if kind == "gn" else vnn.make_norm(kind, 16),
        nn.ReLU(),
        conv(16, 16, 3, padding=1, bias=False),
        vnn.make_norm(kind, 16, num_groups=4) if kind == "gn" else vnn.make_norm(kind, 16),
    )


def test_gn_ws_output_independent_of_batch_but_bn_is_not() -> None:
    torch.manual_seed(7)
    x = torch.randn(8, 3, 4, 8, 8)
    gn = conv_norm_stack("gn", ws=True).train()
    batched = gn(x)
    for i in (0, 5):
        torch.testing.assert_close(gn(x[i : i + 1]), batched[i : i + 1], rtol=1e-5, atol=1e-5)
    bn = conv_norm_stack("bn", ws=False).train()
    batched = bn(x)
    assert (bn(x[:1]) - batched[:1]).abs().max() > 1e-2


def test_ws_conv_under_bf16_autocast_is_finite_and_close_to_reference():
    torch.manual_seed(0)
    conv = vnn.WSConv3d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(2, 8, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.float().square().mean().backward()
    ref = F.conv3d(x.double(), reference_standardize(conv.weight, conv.eps), padding=1)
    assert y.dtype == torch.bfloat16 and torch.isfinite(conv.weight.grad).all()
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-2  # bf16 keeps 8 bits: ~0.4 % per value


# ------------------------------------------------ CPU bf16 conv3d weight gradients (video_gn/nn/conv.py)
def _bf16_weight_grad_error(conv: nn.Module, x: torch.Tensor, *, autocast: bool) -> float:
    """Relative max error of the bf16 weight gradient against a float64 computation of the same conv."""
    g_seed = torch.Generator().manual_seed(1)
    conv.weight.grad = None
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        assert y.dtype == torch.bfloat16
    else:
        y = conv(x)
        assert y.dtype == x.dtype
    g = torch.randn(y.shape, generator=g_seed)
    y.backward(g.to(y.dtype))
    w = conv.weight.detach().double().requires_grad_()
    w_eff = vnn.standardize_weight(w, conv.eps) if isinstance(conv, vnn.WSConv3d) else w
    ref = torch.nn.functional.conv3d(
        x.detach().double(), w_eff, None, conv.stride, conv.padding, conv.dilation
    )
    ref.backward(g.to(y.dtype).double())
    got = conv.weight.grad.double()
    assert torch.isfinite(got).all()
    return ((got - w.grad).abs().max() / w.grad.abs().max()).item()


@pytest.mark.parametrize("cls", ["plain", "ws"])
@pytest.mark.parametrize("k_t", [1, 3, 5])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 6])
def test_cpu_bf16_conv3d_weight_grads_are_right_for_short_clips(cls, k_t, t):
    """oneDNN's bf16 weight gradient is garbage when the temporal kernel is longer than T (> 1); ours are not."""
    torch.manual_seed(0)
    make = vnn.conv_layer(cls == "ws")
    conv = make(16, 16, kernel_size=(k_t, 3, 3), padding=(k_t // 2, 1, 1), bias=False)
    x = torch.randn(4, 16, t, 4, 4)
    assert _bf16_weight_grad_error(conv, x, autocast=True) < 0.05


def test_cpu_bf16_guard_also_covers_bf16_models_without_autocast():
    torch.manual_seed(0)
    for conv in (vnn.SafeConv3d(16, 16, 3, padding=1, bias=True), vnn.WSConv3d(16, 16, 3, padding=1)):
        conv = conv.to(torch.bfloat16)
        x = torch.randn(4, 16, 2, 4, 4).to(torch.bfloat16)
        assert _bf16_weight_grad_error(conv, x, autocast=False) < 0.05


@pytest.mark.parametrize("cls", [vnn.SafeConv3d, vnn.WSConv3d])
def test_cpu_bf16_autocast_leaves_float64_convs_alone(cls):
    """Autocast never lowers float64 (torch's conv keeps it); neither does the short-clip guard."""
    conv = cls(3, 4, 3, padding=1).double()
    x = torch.randn(1, 3, 2, 8, 8, dtype=torch.float64)  # T = 2 < the kernel's 3: the guarded case
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, conv(x))


def test_bf16_ws_conv_without_autocast_is_as_accurate_as_bf16_rounding():
    """A model cast to bf16 (no autocast) with weight-heavy layers, where the fp32 path would convolve with the
    raw weights and cancel (r·conv(x, w) − r·μ·box(x)): it must not do that in bf16 (it lost every digit)."""
    for seed in range(4):
        torch.manual_seed(seed)
        ref = vnn.WSConv3d(32, 64, 3, padding=1, bias=False)
        with torch.no_grad():
            ref.weight.add_(0.01)  # a small per-filter mean, as trained filters have
        x = torch.randn(1, 32, 1, 4, 4)  # weights 4x larger than the input
        conv = copy.deepcopy(ref).to(torch.bfloat16)
        xb = x.to(torch.bfloat16).requires_grad_()
        y = conv(xb)
        y.float().square().sum().backward()
        want = F.conv3d(x.double(), reference_standardize(ref.weight, ref.eps), padding=1)
        err = (y.double() - want).norm() / want.norm()
        assert err < 0.01, (seed, err.item())  # bf16 rounding alone: ~0.35 %
        assert torch.isfinite(conv.weight.grad.float()).all() and torch.isfinite(xb.grad.float()).all()


def test_cpu_bf16_guard_condition():
    x = torch.empty(1, 1, 2, 4, 4)
    assert vnn.cpu_bf16_conv3d_unsafe(x, (3, 3, 3), (1, 1, 1), torch.bfloat16)
    assert not vnn.cpu_bf16_conv3d_unsafe(x, (3, 3, 3), (1, 1, 1), torch.float32)
    assert not vnn.cpu_bf16_conv3d_unsafe(x, (1, 3, 3), (1, 1, 1), torch.bfloat16)
    assert not vnn.cpu_bf16_conv3d_unsafe(torch.empty(1, 1, 3, 4, 4), (3, 3, 3), (1, 1, 1), torch.bfloat16)
    assert not vnn.cpu_bf16_conv3d_unsafe(torch.empty(1, 1, 1, 4, 4), (3, 3, 3), (1, 1, 1), torch.bfloat16)
    assert vnn.cpu_bf16_conv3d_unsafe(torch.empty(1, 1, 3, 4, 4), (3, 3, 3), (2, 1, 1), torch.bfloat16)


def test_use_safe_conv3d_protects_a_torchvision_model_in_bf16():
    import torchvision

    torch.manual_seed(0)
    model = vnn.convert_norm(torchvision.models.video.r3d_18(num_classes=4), "gn")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    vnn.use_safe_conv3d(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(type(m) is vnn.SafeConv3d for m in convs)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # same keys, same tensors
    # layer3 of r3d_18 sees T = 2 on 8-frame clips: the conv whose bf16 weight gradient torch gets wrong.
    conv = model.layer3[1].conv1[0]
    x = torch.randn(2, 256, 2, 4, 4)
    assert _bf16_weight_grad_error(conv, x, autocast=True) < 0.05


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs torch built with oneDNN")
@pytest.mark.parametrize("layer", ["safe", "ws_weight", "ws_standardized"])
@pytest.mark.parametrize(
    ("c_in", "c_out", "thw"),
    [(16, 24, (8, 10, 12)), (64, 64, (2, 6, 6))],
    ids=["activation_heavy", "weight_heavy"],
)
def test_batch1_cpu_conv3d_runs_on_onednn_with_the_same_results(
    layer: str, c_in, c_out, thw, monkeypatch
) -> None:
    """torch runs a float32 batch-1 3D conv with N·C·T·H ≤ 20480 on its slow im2col kernels (3-6× slower than
    oneDNN here); our convs route it to oneDNN. Same outputs and gradients as float64, and as torch's own path."""
    import video_gn.nn.conv as conv_module

    routed = []
    check = conv_module.cpu_batch1_conv3d_slow
    monkeypatch.setattr(
        conv_module, "cpu_batch1_conv3d_slow", lambda *a: routed.append(check(*a)) or routed[-1]
    )
    if layer != "safe":
        monkeypatch.setattr(ws_module, "_FORCE_PATH", layer.removeprefix("ws_"))
    cls = vnn.conv.SafeConv3d if layer == "safe" else vnn.WSConv3d
    torch.manual_seed(0)
    m = cls(c_in, c_out, 3, padding=1, bias=True)
    ref = copy.deepcopy(m).double()
    x = torch.randn(1, c_in, *thw, requires_grad=True)  # N·C·T·H ≤ 1280: torch would pick slow3d
    if hasattr(torch._C, "_select_conv_backend"):
        assert check(x, m.weight, m.stride, m.padding, m.dilation, m.groups)
        assert not check(torch.cat([x, x]), m.weight, m.stride, m.padding, m.dilation, m.groups)

    def after_backward(onednn: bool) -> None:
        assert any(routed) == onednn
        routed.clear()

    _check_routing_against_torch_and_float64(
        m, ref, x, conv_module, "BATCH1_ONEDNN", after_backward, 1e-5, monkeypatch
    )


def _check_routing_against_torch_and_float64(
    m, ref, x, conv_module, flag, after_backward, tol, monkeypatch
) -> None:
    """Run m on x with conv_module.<flag> on and off (``after_backward(setting)`` after each); both must match
    the float64 ``ref`` within ``tol`` of each tensor's scale, and each other within 1e-5."""
    results = {}
    for setting in (True, False):
        monkeypatch.setattr(conv_module, flag, setting)
        m.zero_grad()
        x.grad = None
        y = m(x)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        after_backward(setting)
        results[setting] = (y.detach(), x.grad.clone(), m.weight.grad.clone(), m.bias.grad.clone())
    xd = x.detach().double().requires_grad_(True)
    yd = ref(xd)
    yd.backward(torch.linspace(-1, 1, yd.numel(), dtype=torch.float64).view_as(yd))
    for got, torch_path, want in zip(
        results[True], results[False], (yd, xd.grad, ref.weight.grad, ref.bias.grad)
    ):
        scale = want.abs().max()
        assert (got.double() - want).abs().max() <= tol * scale
        assert (got - torch_path).abs().max() <= 1e-5 * scale


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs torch built with oneDNN")
@pytest.mark.parametrize("layer", ["safe", "ws_weight", "ws_standardized"])
@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "thw", "expected"),
    [
        # temporal kernel overhangs T = 2, weights ≫ input (on T = 1 kernel_trim drops the overhanging taps first)
        (256, 256, 3, 1, (2, 4, 4), (False, True)),
        (192, 256, 3, 2, (2, 4, 4), (False, True)),  # the same, strided (r3d_18's layer4 entry conv)
        (16, 24, 1, 2, (8, 64, 64), (True, True)),  # strided 1×1×1 (shortcut downsampling)
        (16, 24, 1, 1, (8, 64, 64), (False, True)),  # 1×1×1 (bottleneck projection)
        (8, 8, 3, 1, (8, 96, 96), (False, False)),  # ordinary 3×3×3: all on oneDNN
    ],
    ids=["overhang", "overhang_strided", "pointwise_strided", "pointwise", "ordinary"],
)
def test_backward_on_slow3d_routes_the_slow_onednn_gradients_with_the_same_results(
    layer: str, c_in, c_out, kernel, stride, thw, expected, monkeypatch
) -> None:
    """At batch 2 torch runs every float32 3D conv on oneDNN, whose weight gradient is 2-6× slower than slow3d's
    when the temporal kernel overhangs the clip, and whose 1×1×1 gradients are slower too; our convs compute
    exactly those on slow3d. Same outputs and gradients as float64 and as torch's own path, and oneDNN is
    switched back on afterwards."""
    import video_gn.nn.conv as conv_module

    split = []
    real_split = conv_module._split_backward
    monkeypatch.setattr(
        conv_module, "_split_backward", lambda *a: split.append(tuple(a[-1])) or real_split(*a)
    )
    if layer != "safe":
        monkeypatch.setattr(ws_module, "_FORCE_PATH", layer.removeprefix("ws_"))
    cls = vnn.conv.SafeConv3d if layer == "safe" else vnn.WSConv3d
    torch.manual_seed(0)
    m = cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=True)
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, c_in, *thw, requires_grad=True)
    if hasattr(torch._C, "_select_conv_backend"):
        assert conv_module.backward_on_slow3d(x, m.weight, m.stride, m.padding, m.dilation, 1) == expected

    def after_backward(route: bool) -> None:
        assert torch.backends.mkldnn.enabled
        assert split == ([expected] if route and any(expected) else [])
        split.clear()

    # 1e-4: a float32 bias gradient summed over 10⁵ outputs is off by ~2e-5 on torch's own path too
    _check_routing_against_torch_and_float64(
        m, ref, x, conv_module, "BACKWARD_SLOW3D", after_backward, 1e-4, monkeypatch
    )


def test_backward_on_slow3d_leaves_other_convs_alone(monkeypatch) -> None:
    """Only float32 CPU convs with groups = 1 that torch runs on oneDNN are considered, and only while the
    backend flags may be set."""
    import video_gn.nn.conv as conv_module

    w = torch.randn(128, 128, 3, 3, 3)
    x = torch.randn(2, 128, 1, 4, 4)
    args = ([1, 1, 1], [1, 1, 1], [1, 1, 1])
    assert conv_module.backward_on_slow3d(x, w, *args, 1) == (False, True)
    assert conv_module.backward_on_slow3d(x.double(), w.double(), *args, 1) == (False, False)
    assert conv_module.backward_on_slow3d(x.bfloat16(), w.bfloat16(), *args, 1) == (False, False)
    assert conv_module.backward_on_slow3d(x, w[:, :64], *args, 2) == (False, False)
    assert conv_module.backward_on_slow3d(torch.randn(2, 128, 1, 64, 64), w, *args, 1) == (
        False,
        False,
    )  # 4:1
    assert conv_module.backward_on_slow3d(x[:, :64], w[:64, :64], *args, 1) == (
        False,
        False,
    )  # too small to pay
    with torch.backends.mkldnn.flags(enabled=False):
        assert conv_module.backward_on_slow3d(x, w, *args, 1) == (False, False)
    monkeypatch.setattr(torch.backends, "flags_frozen", lambda: True)  # as after disable_global_flags()
    assert conv_module.backward_on_slow3d(x, w, *args, 1) == (False, False)


@pytest.mark.parametrize(
    ("flag", "kernel", "shape"),
    [
        ("BATCH1_ONEDNN", 3, (1, 4, 4, 6, 6)),
        ("BACKWARD_SLOW3D", 1, (2, 4, 8, 128, 128)),
        ("TRIM_KERNEL", 3, (2, 4, 1, 5, 5)),
    ],
    ids=["batch1_onednn", "backward_slow3d", "trim_kernel"],
)
def test_conv_routing_keeps_double_backward_forward_ad_and_torch_func(
    flag, kernel, shape, monkeypatch
) -> None:
    """The backend routing (batch-1 convs to oneDNN, slow oneDNN gradients to slow3d) must not take away what a
    plain conv supports: double backward (through a differentiable recomputation), forward-mode AD and
    torch.func (not routed)."""
    import video_gn.nn.conv as conv_module

    torch.manual_seed(0)
    m = vnn.conv.SafeConv3d(4, 6, kernel, padding=kernel // 2)
    x = torch.randn(*shape, requires_grad=True)
    if flag == "TRIM_KERNEL":
        assert conv_module.kernel_trim(x, m.weight, m.stride, m.padding, m.dilation) is not None
    elif hasattr(torch._C, "_select_conv_backend"):
        routed = (
            conv_module.cpu_batch1_conv3d_slow if flag == "BATCH1_ONEDNN" else conv_module.backward_on_slow3d
        )
        decision = routed(x, m.weight, m.stride, m.padding, m.dilation, m.groups)
        assert any(decision) if isinstance(decision, tuple) else decision
    results = {}
    for onednn in (True, False):
        monkeypatch.setattr(conv_module, flag, onednn)
        (gx,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
        (ggw,) = torch.autograd.grad(gx.square().sum(), m.weight)  # a gradient-penalty style double backward
        with torch.autograd.forward_ad.dual_level():
            tangent = torch.autograd.forward_ad.unpack_dual(
                m(torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x)))
            ).tangent
        params = dict(m.named_parameters())
        fgrad = torch.func.grad(lambda p, xx: torch.func.functional_call(m, p, (xx,)).sum())(
            params, x.detach()
        )
        results[onednn] = (gx.detach(), ggw, tangent, fgrad["weight"])
    for routed, plain in zip(results[True], results[False]):
        torch.testing.assert_close(routed, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("thw", "kernel", "stride", "padding", "dilation"),
    [
        ((1, 5, 5), 3, 1, 1, 1),  # T = 1: the middle temporal slice only (r3d_18's layer4 on 8 frames)
        ((1, 1, 1), 3, 1, 1, 1),  # a 1×1×1 map: the centre tap only
        ((1, 2, 2), 3, 1, 1, 1),
        ((1, 6, 6), 5, 1, 2, 1),
        ((2, 6, 6), 5, 1, 2, 1),  # T = 2, k 5, pad 2: the outer taps only meet padding
        ((1, 6, 6), 3, 1, 2, 2),  # dilated
        ((3, 3, 3), 3, 2, 1, 1),  # strided: every tap meets data somewhere
        ((2, 4, 4), 3, 2, 1, 1),  # strided: only the first tap is idle, an asymmetric cut: kept whole
        ((2, 4, 4), 3, 1, 1, 1),  # every tap meets data
        ((1, 4, 4), 1, 1, 0, 1),
    ],
)
def test_kernel_trim_drops_exactly_the_taps_that_only_meet_padding(thw, kernel, stride, padding, dilation):
    """Against brute force: a tap meets data iff the weight gradient for an all-ones input is non-zero there.
    The trimmed conv gives the same output; the cut is the largest symmetric one."""
    import video_gn.nn.conv as conv_module

    torch.manual_seed(0)
    x = torch.randn(2, 3, *thw, dtype=torch.float64)
    w = torch.randn(4, 3, kernel, kernel, kernel, dtype=torch.float64)
    args = ([stride] * 3, [padding] * 3, [dilation] * 3)
    ones = torch.ones(1, 1, *thw, dtype=torch.float64)
    probe = torch.zeros(1, 1, kernel, kernel, kernel, dtype=torch.float64, requires_grad=True)
    y = F.conv3d(ones, probe, None, *args)
    (meets,) = torch.autograd.grad(y.sum(), probe)
    meets = meets[0, 0] != 0
    trim = conv_module.kernel_trim(x, w, *args)
    expected_cut = []
    for dim in range(3):
        used = meets.any(dim=tuple(d for d in range(3) if d != dim)).nonzero().flatten().tolist()
        first, last = used[0], used[-1]
        expected_cut.append(first if first > 0 and last == kernel - 1 - first else 0)
    if not any(expected_cut):
        assert trim is None
        return
    assert trim is not None
    assert [(s.start or 0) for s in trim.index[2:]] == expected_cut
    kept = torch.zeros_like(meets)
    kept[trim.index[2:]] = True
    assert not (meets & ~kept).any()  # nothing that meets data is dropped
    torch.testing.assert_close(
        F.conv3d(x, w[trim.index], None, args[0], trim.padding, args[2]), F.conv3d(x, w, None, *args)
    )


@pytest.mark.parametrize("layer", ["safe", "ws_weight", "ws_standardized"])
@pytest.mark.parametrize("thw", [(1, 7, 7), (1, 1, 1)], ids=["T1", "1x1x1_map"])
def test_trimmed_kernel_convs_match_float64_and_the_untrimmed_path(layer, thw, monkeypatch) -> None:
    """SafeConv3d and both WS paths convolve with only the taps that meet data; output and all gradients as
    float64 and as with the whole kernel (the weight gradient exactly 0 on the dropped taps for plain convs)."""
    import video_gn.nn.conv as conv_module

    trimmed = []
    real_untrim = conv_module.untrim_weight_grad
    for module in (conv_module, ws_module):
        monkeypatch.setattr(module, "untrim_weight_grad", lambda *a: trimmed.append(1) or real_untrim(*a))
    if layer != "safe":
        monkeypatch.setattr(ws_module, "_FORCE_PATH", layer.removeprefix("ws_"))
    cls = vnn.conv.SafeConv3d if layer == "safe" else vnn.WSConv3d
    torch.manual_seed(0)
    m = cls(96, 128, 3, padding=1, bias=True)
    ref = copy.deepcopy(m).double()
    x = torch.randn(2, 96, *thw, requires_grad=True)

    def after_backward(trim: bool) -> None:
        assert bool(trimmed) == trim
        trimmed.clear()
        if layer == "safe":
            centre = [slice(None), slice(None), 1] + [1 if n == 1 else slice(None) for n in thw[1:]]
            outside = torch.ones_like(m.weight.grad, dtype=torch.bool)
            outside[tuple(centre)] = False
            assert (m.weight.grad[outside] == 0).all()

    _check_routing_against_torch_and_float64(
        m, ref, x, conv_module, "TRIM_KERNEL", after_backward, 1e-5, monkeypatch
    )


def test_flop_counter_sees_batch1_convs_that_would_be_routed() -> None:
    """Lightning's model summary counts FLOPs with FlopCounterMode on one clip: a batch-1 conv routed to
    aten.mkldnn_convolution was invisible to it (29 M instead of 229 M for the quick-start model)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 16, 4, 8, 8)
    counts = []
    for conv in (
        vnn.SafeConv3d(16, 16, 3, padding=1),
        vnn.WSConv3d(16, 16, 3, padding=1),
        nn.Conv3d(16, 16, 3, padding=1),
    ):
        with FlopCounterMode(display=False) as counter:
            conv(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == counts[2] > 0
