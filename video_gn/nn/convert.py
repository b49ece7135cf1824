"""Module surgery on any model (ours, pytorchvideo's, torchvision's): BN -> other norms, conv -> WS conv, folding.

Each converter walks the module tree once, builds the replacement, copies parameters and buffers explicitly
(same device, dtype, ``requires_grad`` and train/eval mode), swaps it in, logs at INFO what it changed, and
returns the model (a new object only when the root itself is replaced). ``nn.Linear`` heads are never touched.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from video_gn.nn.conv import SafeConv3d
from video_gn.nn.norm import _KIND_KWARGS, BN_LIKE_TYPES, norm_layer, resolve_num_groups
from video_gn.nn.ws import (
    CONV_BY_DIM,
    DEFAULT_WS_EPS,
    PLAIN_CONV_BY_DIM,
    WS_CONV_BY_DIM,
    _standardize,
    _WSConvMixin,
)

__all__ = ["convert_norm", "fold_weight_standardization", "use_safe_conv3d", "use_weight_standardization"]

log = logging.getLogger(__name__)

# Attributes other code reads off norm layers and that must survive a swap (pytorchvideo's zero-init flag).
_CARRIED_ATTRS = ("block_final_bn",)


def _swap(
    model: nn.Module, make: Callable[[str, nn.Module], nn.Module | None], job: str
) -> tuple[nn.Module, Counter]:
    """Replace every module for which ``make(qualified_name, module)`` returns a module; do not recurse into it."""
    changes: Counter = Counter()

    def visit(prefix: str, module: nn.Module) -> nn.Module:
        new = make(prefix, module)
        if new is not None:
            new.train(module.training)
            changes[f"{type(module).__name__} -> {type(new).__name__}"] += 1
            return new
        for name, child in list(module.named_children()):
            replaced = visit(f"{prefix}.{name}" if prefix else name, child)
            if replaced is not child:
                setattr(module, name, replaced)
        return module

    model = visit("", model)
    if changes:
        summary = ", ".join(f"{k} x{v}" for k, v in sorted(changes.items()))
        log.info("%s: replaced %d modules (%s)", job, sum(changes.values()), summary)
    else:
        log.warning("%s: nothing to replace in %s", job, type(model).__name__)
    return model, changes


def _reference_tensor(module: nn.Module) -> torch.Tensor | None:
    for t in module.parameters(recurse=False):
        return t
    for t in module.buffers(recurse=False):
        if t.is_floating_point():
            return t
    return None


@torch.no_grad()
def _copy_tensor(dst: nn.Module, name: str, src_tensor: torch.Tensor | None) -> bool:
    target = getattr(dst, name, None)
    if src_tensor is None or not isinstance(target, torch.Tensor) or target.shape != src_tensor.shape:
        return False
    target.copy_(src_tensor)
    if isinstance(target, nn.Parameter) and isinstance(src_tensor, nn.Parameter):
        target.requires_grad_(src_tensor.requires_grad)
    return True


def _bn_dim(module: nn.Module, default: int) -> int:
    for dim, classes in {1: (nn.BatchNorm1d,), 2: (nn.BatchNorm2d,), 3: (nn.BatchNorm3d,)}.items():
        if isinstance(module, classes):
            return dim
    for dim in (1, 2, 3):
        if type(module).__name__.endswith(f"{dim}d"):
            return dim
    return default


def _num_features(module: nn.Module) -> int:
    """Channels of a BN-like layer (torchvision's FrozenBatchNorm2d has no ``num_features``, only its weight)."""
    n = getattr(module, "num_features", None)
    return int(n) if n is not None else int(module.weight.shape[0])


def convert_norm(model: nn.Module, kind: str, **kw) -> nn.Module:
    """Replace every BatchNorm-like layer (BatchNorm1d/2d/3d, SyncBatchNorm, frozen BN) by a norm of ``kind``.

    γ/β are copied whenever the new layer has tensors of the same shape (all kinds but ``"none"``); running
    statistics are copied into BN / SyncBN / frozen-BN targets (so ``convert_norm(m, "frozen_bn")`` freezes a
    pretrained BN model, and ``"syncbn"`` prepares one for DDP). ``eps`` and ``momentum`` default to the source
    layer's. pytorchvideo's ``block_final_bn`` flag is carried over.

    Args:
        model: any ``nn.Module``; modified in place.
        kind: one of :data:`video_gn.nn.NORM_KINDS` (``"gn"``: GroupNorm, Wu & He 2018,
            https://arxiv.org/abs/1803.08494).
        **kw: the kind's extra arguments (see :func:`video_gn.nn.norm_layer`), plus optional ``eps`` /
            ``momentum`` overriding the source layer's, and ``dim`` (1, 2 or 3): the flavour of BN / frozen
            BN that replaces a ``SyncBatchNorm``, which has none of its own (default: the dimensionality of the
            model's convs when they all agree, else 3).

    Returns:
        The model (a new object only if ``model`` itself is a BN layer).
    """
    eps_override = kw.pop("eps", None)
    momentum_override = kw.pop("momentum", None)
    default_dim = kw.pop("dim", None)
    if default_dim is None:
        conv_dims = {len(m.kernel_size) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)}
        default_dim = conv_dims.pop() if len(conv_dims) == 1 else 3
    norm_layer(kind, dim=default_dim, **kw)  # validate kind and keywords once, before touching the model
    if kind == "gn":  # and every layer's group count, so a failure never leaves a half-converted model
        for name, module in model.named_modules():
            if isinstance(module, BN_LIKE_TYPES):
                try:
                    resolve_num_groups(
                        _num_features(module), kw.get("num_groups"), kw.get("channels_per_group")
                    )
                except ValueError as err:
                    raise ValueError(f"convert_norm(kind='gn'): layer {name!r}: {err}") from None

    def make(_: str, module: nn.Module) -> nn.Module | None:
        if not isinstance(module, BN_LIKE_TYPES):
            return None
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            raise ValueError(
                f"convert_norm: {type(module).__name__} is not initialised yet; run one forward pass first"
            )
        eps = module.eps if eps_override is None else eps_override
        momentum = getattr(module, "momentum", 0.1) if momentum_override is None else momentum_override
        flags = {}  # a BN without affine parameters / running statistics keeps that where the kind can
        if "affine" in _KIND_KWARGS[kind] and "affine" not in kw:
            flags["affine"] = bool(getattr(module, "affine", True))
        if "track_running_stats" in _KIND_KWARGS[kind] and "track_running_stats" not in kw:
            flags["track_running_stats"] = bool(getattr(module, "track_running_stats", True))
        factory = norm_layer(kind, dim=_bn_dim(module, default_dim), **kw, **flags)
        new = factory(num_features=_num_features(module), eps=eps, momentum=momentum)
        ref = _reference_tensor(module)
        if ref is not None:
            new.to(device=ref.device, dtype=ref.dtype)
        for name in ("weight", "bias"):
            _copy_tensor(new, name, getattr(module, name, None))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            _copy_tensor(new, name, getattr(module, name, None))
        for attr in _CARRIED_ATTRS:
            if hasattr(module, attr):
                setattr(new, attr, getattr(module, attr))
        return new

    model, _ = _swap(model, make, f"convert_norm(kind={kind!r})")
    return model


def use_weight_standardization(
    model: nn.Module,
    eps: float = DEFAULT_WS_EPS,
    *,
    exclude: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """Replace every ``nn.Conv1d/2d/3d`` (and subclasses) by the matching WS conv, keeping weight and bias.

    Weight Standardization: Qiao et al., 2019, https://arxiv.org/abs/1903.10520.

    Linear layers, transposed convs, and conv subclasses that compute their own ``forward`` (timm's
    ``Conv2dSame``, ``StdConv2d`` which already standardizes; with a warning) are left alone; video_gn's
    :class:`~video_gn.nn.SafeConv3d` is replaced (WS convs carry its guard). A conv whose filters
    hold a single weight (fan-in 1, e.g. a 1×1 depthwise conv) is skipped with a warning: standardizing a
    single number gives 0 and would silence the layer.

    Args:
        model: any ``nn.Module``; modified in place.
        eps: WS epsilon for the new layers.
        exclude: optional ``(qualified_name, conv) -> bool``; True keeps that conv plain (e.g. the stem).

    Returns:
        The model (a new object only if ``model`` itself is a conv).
    """

    def make(name: str, module: nn.Module) -> nn.Module | None:
        dim = next((d for d, cls in CONV_BY_DIM.items() if isinstance(module, cls)), None)
        if dim is None or isinstance(module, _WSConvMixin):
            return None
        if exclude is not None and exclude(name, module):
            return None
        if not isinstance(module, SafeConv3d) and _own_computation(module, CONV_BY_DIM[dim]):
            log.warning(
                "use_weight_standardization: kept %s (%s) as it is: it computes its own forward (e.g. timm's "
                "Conv2dSame padding, or StdConv2d, which already standardizes)",
                name or "<root>",
                type(module).__name__,
            )
            return None
        if module.weight[0].numel() == 1:
            log.warning("use_weight_standardization: kept %s plain (fan-in 1 per filter)", name or "<root>")
            return None
        new = _conv_like(WS_CONV_BY_DIM[dim], module, eps=eps)
        _copy_tensor(new, "weight", module.weight)
        _copy_tensor(new, "bias", module.bias)
        return new

    model, _ = _swap(model, make, "use_weight_standardization")
    return model


def _own_computation(conv: nn.Module, base: type[nn.Module]) -> bool:
    """True when ``conv``'s class overrides how ``base`` computes (``forward`` or ``_conv_forward``)."""
    return type(conv).forward is not base.forward or type(conv)._conv_forward is not base._conv_forward


def _conv_like(cls: type[nn.Module], conv: nn.Module, **extra: Any) -> nn.Module:
    """A new ``cls`` conv with ``conv``'s geometry, device and dtype (weights not copied)."""
    return cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
        **extra,
    )


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """Fold every WS conv into a plain conv whose weight is the standardized weight (for inference).

    The plain conv is ``nn.Conv1d`` / ``nn.Conv2d``, or :class:`SafeConv3d` for 3D; bias, geometry, device, dtype,
    ``requires_grad`` and train/eval mode are kept. Outputs are unchanged (up to float rounding; ŵ is computed in
    float64) and the forward pass no longer pays for the standardization. Training the folded model is *not* WS
    training any more.

    Args:
        model: any ``nn.Module``; modified in place.

    Returns:
        The model (a new object only if ``model`` itself is a WS conv).
    """

    def make(_: str, module: nn.Module) -> nn.Module | None:
        if not isinstance(module, _WSConvMixin):
            return None
        w = module.weight
        # 3D: SafeConv3d, so the folded model keeps the bf16 guard and the batch-1 routing (video_gn/nn/conv.py)
        new = _conv_like(PLAIN_CONV_BY_DIM[len(module.kernel_size)], module)
        with torch.no_grad():
            new.weight.copy_(_standardize(w.detach().double(), module.eps)[0])
            new.weight.requires_grad_(w.requires_grad)
        _copy_tensor(new, "bias", module.bias)
        return new

    model, _ = _swap(model, make, "fold_weight_standardization")
    return model


def use_safe_conv3d(model: nn.Module) -> nn.Module:
    """Replace every plain ``nn.Conv3d`` by :class:`~video_gn.nn.SafeConv3d`, keeping weight and bias.

    For 3D models built outside :func:`video_gn.models.build` (e.g. torchvision's ``r3d_18`` after
    :func:`convert_norm`) that will train in bf16 on CPU: it applies the guard against torch's wrong bf16 Conv3d
    weight gradients (``video_gn/nn/conv.py``). Same state dict; nothing changes in fp32 or on GPU. Subclasses
    that only add helpers (torchvision's ``Conv3DSimple``) are replaced too; WS convs (they carry the guard)
    and subclasses with their own ``forward`` are left alone.

    Args:
        model: any ``nn.Module``; modified in place.

    Returns:
        The model (a new object only if ``model`` itself is a conv).
    """

    def make(_: str, module: nn.Module) -> nn.Module | None:
        if not isinstance(module, nn.Conv3d) or isinstance(module, (SafeConv3d, _WSConvMixin)):
            return None
        if _own_computation(module, nn.Conv3d):
            return None  # not ours to replace
        new = _conv_like(SafeConv3d, module)
        _copy_tensor(new, "weight", module.weight)
        _copy_tensor(new, "bias", module.bias)
        return new

    model, _ = _swap(model, make, "use_safe_conv3d")
    return model
