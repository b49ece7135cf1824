"""What :func:`~video_gn.models.inflate` checks beyond tensor names and shapes, and the report's notes.

A state dict shows names and shapes only. Two 2D and 3D networks with the same tensors can still compute
different functions:

- the spatial geometry (every conv's spatial stride, padding and dilation, the stem's pool) differs, e.g.
  ``r3d_*`` has no stem max-pool: :func:`_geometry_differences` compares it with the 2D family's (torchvision /
  timm ResNet v1.5, timm ResNetV2), and ``inflate`` refuses a difference unless ``check_architecture=False``;
- the norm kind (BN statistics vs GroupNorm-like), GroupNorm's group count, or the WS eps differ:
  :func:`_add_notes` writes each such difference to :attr:`~video_gn.models.inflate.InflationReport.notes`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import Tensor, nn

from video_gn.models.inflate_maps import _owner, _shape
from video_gn.nn import WSConv3d

if TYPE_CHECKING:
    from video_gn.models.inflate import InflationReport

# ------------------------------------------------------------------------------------ spatial geometry


def _pair(v: object) -> tuple[int, int]:
    """The (H, W) part of a 3D conv/pool argument (int or (t, h, w) tuple)."""
    return (v, v) if isinstance(v, int) else (int(v[-2]), int(v[-1]))  # type: ignore[index]


def _expected_conv_2d(family: str, key: str, kernel_hw: tuple[int, int], bottleneck: bool) -> tuple:
    """(stride, padding) of 2D conv ``key`` in its family (torchvision/timm ResNet v1.5, timm ResNetV2).

    The stem conv has stride 2; the first block of stages 2-4 strides by 2 in its 3x3 conv (``conv2`` of a
    bottleneck, ``conv1`` of a basic block) and in its projection; every conv pads k // 2.
    """
    stride = 1
    if key in ("conv1.weight", "stem.conv.weight"):
        stride = 2
    elif m := re.fullmatch(r"layer(\d+)\.(\d+)\.(conv\d|downsample\.0)\.weight", key):
        first = int(m.group(1)) > 1 and m.group(2) == "0"
        strided = m.group(3) in ("downsample.0", "conv2" if bottleneck else "conv1")
        stride = 2 if first and strided else 1
    elif m := re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(conv\d|downsample\.conv)\.weight", key):
        first = int(m.group(1)) > 0 and m.group(2) == "0"
        stride = 2 if first and m.group(3) in ("conv2", "downsample.conv") else 1
    return (stride, stride), (kernel_hw[0] // 2, kernel_hw[1] // 2)


#: The 2D stems' pooling: (kind, kernel, stride, padding, zero padding before the pool).
_STEM_POOL_2D = {
    "resnet": ("max-pool", (3, 3), (2, 2), (1, 1), (0, 0)),  # conv, norm, ReLU, max-pool 3x3 /2 pad 1
    "bit": ("max-pool", (3, 3), (2, 2), (0, 0), (1, 1)),  # conv, zero pad 1, max-pool 3x3 /2 (BiT "fixed")
}


def _pool_desc(pool: tuple | None) -> str:
    if pool is None:
        return "no pool"
    kind, kernel, stride, padding, zero_pad = pool
    pad = f", zero pad {zero_pad} before it" if any(zero_pad) else ""
    return f"{kind} {kernel} stride {stride} padding {padding}{pad}"


def _stem_pool_3d(stem: nn.Module) -> tuple | None:
    """The spatial part of the 3D stem's pooling, in the form of :data:`_STEM_POOL_2D` (None: no pool)."""
    pools = [m for m in stem.modules() if isinstance(m, (nn.MaxPool3d, nn.AvgPool3d))]
    if not pools:
        return None
    pads = [m.padding for m in stem.modules() if isinstance(m, nn.ConstantPad3d)]
    zero_pad = (int(pads[0][2]), int(pads[0][0])) if pads else (0, 0)  # (W_l, W_r, H_t, H_b, T_f, T_b)
    pool = pools[0]
    kind = "max-pool" if isinstance(pool, nn.MaxPool3d) else "avg-pool"
    return (
        kind,
        _pair(pool.kernel_size),
        _pair(pool.stride or pool.kernel_size),
        _pair(pool.padding),
        zero_pad,
    )


def _geometry_differences(
    model3d: nn.Module, family: str, convs: list[tuple[str, str, Tensor]], bottleneck: bool
) -> list[str]:
    """Where the 3D network's spatial processing differs from the 2D network's (empty: it corresponds).

    Only the spatial (H, W) geometry is compared: temporal strides, temporal pools and temporal padding act on
    the time axis alone, so on a constant clip they do not change what "center" inflation computes.

    Args:
        model3d: the 3D model.
        family: the 2D family (``"resnet"`` or ``"bit"``).
        convs: (2D key, 3D key, 2D kernel) for every conv to be inflated.
        bottleneck: whether the 2D ResNet has bottleneck blocks (stride on ``conv2``) or basic ones (``conv1``).
    """
    diffs = []
    for key, tkey, w2 in convs:
        conv = _owner(model3d, tkey)
        stride2, pad2 = _expected_conv_2d(family, key, (w2.shape[2], w2.shape[3]), bottleneck)
        stride3, pad3, dil3 = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
        if (stride3, pad3, dil3) != (stride2, pad2, (1, 1)):
            dil = f" dilation {dil3}" if dil3 != (1, 1) else ""
            diffs.append(
                f"2D {key} {_shape(w2)} spatial stride {stride2} padding {pad2} vs 3D {tkey} "
                f"{_shape(conv.weight)} spatial stride {stride3} padding {pad3}{dil}"
            )
    stem_name = "blocks.0"
    pool2, pool3 = _STEM_POOL_2D[family], _stem_pool_3d(model3d.get_submodule(stem_name))
    if pool2 != pool3:
        first = "conv1" if family == "resnet" else "stem.conv"
        why = " (so every later layer sees feature maps 2x larger than in 2D)" if pool3 is None else ""
        diffs.append(
            f"2D stem: {first}, then {_pool_desc(pool2)} vs 3D {stem_name}: {_pool_desc(pool3)}{why}"
        )
    for name, m in model3d.named_modules():
        if name == stem_name or name.startswith(stem_name + "."):
            continue
        if isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)):  # adaptive (global) pools: both sides have the same
            kernel, stride = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
            if kernel != (1, 1) or stride != (1, 1):
                diffs.append(f"3D {name} pools spatially ({kernel} stride {stride}); the 2D network does not")
    return diffs


# ------------------------------------------------------------------------------------------------ notes


def _is_bn(module: nn.Module) -> bool:
    """BatchNorm-like: normalises with stored running statistics (BN, SyncBN, frozen BN)."""
    return isinstance(getattr(module, "running_mean", None), Tensor)


def _norm_kind(module: nn.Module) -> str:
    if _is_bn(module):
        return "BatchNorm"
    if isinstance(module, nn.GroupNorm):
        groups, channels = module.num_groups, module.num_channels
        return "LayerNorm" if groups == 1 else "InstanceNorm" if groups == channels else "GroupNorm"
    return type(module).__name__


def _add_notes(
    report: InflationReport,
    model3d: nn.Module,
    state_dict_2d: Mapping[str, Tensor],
    norms: dict[str, str],
    ws_eps: float | None,
    source_gn_groups: int | None,
    groups_origin: str,
) -> None:
    """Add a note for everything that keeps the inflated 3D network from computing the 2D one.

    Args:
        report: the report to extend.
        model3d: the loaded 3D model.
        state_dict_2d: the 2D checkpoint.
        norms: 3D norm module name -> 2D norm module name, for every norm whose affine was copied.
        ws_eps: WS eps of the 2D convs (None: plain).
        source_gn_groups: group count G of the 2D GroupNorms (a layer of C < G channels: C groups), or None.
        groups_origin: where ``source_gn_groups`` comes from, for the message.
    """
    convs3 = [(n, m) for n, m in model3d.named_modules() if isinstance(m, nn.Conv3d)]
    target_ws = any(isinstance(m, WSConv3d) for _, m in convs3)
    if target_ws and ws_eps is None:
        report.notes.append(
            "The 3D convs are weight-standardized but the checkpoint's were not: the 3D network computes a "
            "different function from the 2D one (a starting point for fine-tuning, not a copy)"
        )
    if any(not isinstance(m, WSConv3d) for _, m in convs3) and ws_eps:
        report.notes.append(
            f"WS folded: the checkpoint's standardized kernels (eps {ws_eps:g}) were inflated"
        )
    if ws_eps is not None:
        wrong = sorted(
            {m.eps for _, m in convs3 if isinstance(m, WSConv3d) and not math.isclose(m.eps, ws_eps)}
        )
        if wrong:
            report.notes.append(
                f"The 3D convs standardize with WS eps {', '.join(f'{e:g}' for e in wrong)} but the checkpoint's "
                f"with {ws_eps:g} (check_ws_eps=False): small filters standardize differently, so the 3D network "
                "does not compute the 2D function"
            )
    raw = [k for k in report.scaled if k.endswith(("conv3.weight", "downsample.weight"))]
    if raw:
        report.notes.append(
            f"WS convs with a temporal kernel feed the residual sum without a norm ({raw[:3]}): their k_T-fold "
            "scale is not cancelled, so the 3D network does not reproduce the 2D one"
        )

    # Norms: a state dict records BN statistics but not the norm kind or GroupNorm's group count.
    modules3 = dict(model3d.named_modules())
    pairs = [(n3, n2, modules3[n3]) for n3, n2 in norms.items()]
    bn_to_other = [
        (n3, n2, m) for n3, n2, m in pairs if f"{n2}.running_mean" in state_dict_2d and not _is_bn(m)
    ]
    other_to_bn = [
        (n3, n2, m) for n3, n2, m in pairs if f"{n2}.running_mean" not in state_dict_2d and _is_bn(m)
    ]
    if bn_to_other:
        kinds = sorted({_norm_kind(m) for _, _, m in bn_to_other})
        n3, n2, _ = bn_to_other[0]
        report.notes.append(
            f"{len(bn_to_other)} of the checkpoint's norms are BatchNorm but the 3D model's are "
            f"{'/'.join(kinds)} (e.g. 2D {n2} -> 3D {n3}): their running statistics were dropped and their "
            f"affine (γ, β) copied onto norms that normalise with each clip's own statistics instead, so the 3D "
            "network does not compute the 2D function (an initialisation for fine-tuning, not a copy)"
        )
    if other_to_bn:
        n3, n2, _ = other_to_bn[0]
        report.notes.append(
            f"{len(other_to_bn)} of the checkpoint's norms keep no running statistics (GroupNorm-like) but the "
            f"3D model's are BatchNorm (e.g. 2D {n2} -> 3D {n3}): the affine was copied and the running "
            "statistics stay at their initial values (mean 0, variance 1), so the 3D network does not compute "
            "the 2D function"
        )
    gn = [
        (n3, m)
        for n3, n2, m in pairs
        if isinstance(m, nn.GroupNorm) and f"{n2}.running_mean" not in state_dict_2d
    ]
    if gn and source_gn_groups is not None:
        differ = [(n3, m) for n3, m in gn if m.num_groups != min(source_gn_groups, m.num_channels)]
        if differ:
            n3, m = differ[0]
            report.notes.append(
                f"GroupNorm group counts differ in {len(differ)} of {len(gn)} norms: the checkpoint's use "
                f"{source_gn_groups} groups ({groups_origin}; C groups where C < {source_gn_groups}), the 3D "
                f"model's e.g. {n3}: {m.num_groups} groups of {m.num_channels} channels "
                f"(3D groups: {sorted({x.num_groups for _, x in differ})}); GroupNorm then normalises over "
                "other channel groups, so the 3D network does not compute the 2D function. Build it with the "
                "2D count (gn_groups / norm_kwargs={'num_groups': G}), or pass source_gn_groups if the "
                "checkpoint used another"
            )
    elif gn:
        report.notes.append(
            f"The checkpoint's norms are GroupNorm-like (no running statistics) and a state dict does not record "
            f"their group count; the 3D model's use {sorted({m.num_groups for _, m in gn})} groups. The 3D "
            "network computes the 2D function only if the 2D network used the same (pass source_gn_groups=G to "
            "check)"
        )
