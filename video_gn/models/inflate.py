"""Inflate 2D ImageNet ResNet checkpoints into the 3D models (I3D, Carreira & Zisserman 2017; Non-local, Wang 2018).

A 2D kernel w₂ (O, I, k, k) becomes a 3D kernel w₃ (O, I, k_T, k, k):

- ``"mean"``: w₂ repeated over time and divided by k_T. On a constant clip (every frame the same image) a conv
  with w₃ gives the 2D output at every time step whose window is inside the clip; at the k_T // 2 border steps
  zero padding removes part of the sum (the border effect).
- ``"center"``: w₂ at the centre tap (the one the temporal padding aligns with the output step), zeros
  elsewhere. Every frame is then processed by the 2D network on its own, at every time step.

Norm affine parameters are copied (and BN running statistics when both sides keep them); the classifier is
copied when its shape matches, else left to the model's initialisation.

The two networks must correspond: the same tensors (names and shapes) and the same spatial geometry (every
conv's spatial stride and padding, the stem's max-pool). Anything else is refused with an error that names both
sides' keys and shapes or strides (e.g. ``r3d_*``, whose stem has no max-pool), unless ``check_architecture=False``.
What a state dict cannot show (the norm kind behind the affine parameters, GroupNorm's group count, a forced WS
eps) is checked where it can be and written to :attr:`InflationReport.notes`.

Weight Standardization (WS) changes the story. A WS conv computes with ŵ = (w − μ)/sqrt(σ² + ε), per output
filter, so what must correspond is the *standardized* kernel, and standardizing an inflated kernel does not give
the inflated standardized kernel:

- "mean": every time slice of w₃ = w₂/k_T has mean μ/k_T and variance σ²/k_T², so
  ŵ₃ = (w₂ − μ)/sqrt(σ² + k_T² ε): each slice is ŵ₂ (not ŵ₂/k_T), the conv is k_T times too large, and the eps
  is effectively k_T² ε. Division is pointless under WS. We store w₃[t] = w₂ (no division): then each slice
  standardizes to exactly ŵ₂ with the *same* eps, i.e. ŵ₃ = k_T · mean-inflate(ŵ₂).
- "center": w₂ at the centre, zeros elsewhere, has filter mean μ/k_T: the zero taps standardize to the non-zero
  constant −μ/(k_T σ₃), so the 3D filter also sums the neighbouring frames. Centring first fixes that: we store
  w₃[centre] = sqrt(k_T) · (w₂ − μ), zeros elsewhere. Its mean is 0 and its variance σ² (so the same eps), and
  ŵ₃ = sqrt(k_T) · centre-inflate(ŵ₂) exactly.

Either way the WS conv is a fixed positive multiple c (k_T or sqrt(k_T); 1 when k_T = 1) of the conv with the
inflated standardized kernel; no stored weight can remove c, because ŵ₃ has unit variance per filter by
construction. c is harmless where the conv output goes into a GroupNorm, which is scale invariant
(GN(c·y; ε) = GN(y; ε/c²): only its eps moves), also through a max-pool or a ReLU (both commute with c > 0). It
is not harmless where the conv output meets the residual sum unnormalised. In a post-activation ResNet every conv
is followed by its norm, so nothing is left. In a pre-activation (BiT) ResNet ``conv3`` and the ``downsample``
projection feed the sum raw, but they are 1x1x1 in every registered layout (c = 1); the temporally inflated convs
are the stem (pad, max-pool, then the first block's ``norm1``; its shortcut is the projection of the
*normalised* input, so the raw stem output never reaches a sum) and ``conv1`` (followed by ``norm2``). So a BiT
network inflated this way keeps its function up to the GN-eps effect (measured in the tests: ≤ 1e-4 on constant
clips). :attr:`InflationReport.scaled` lists every WS conv with c ≠ 1, and a note is added if one of them feeds a
residual sum.

This requires the 3D WS eps to equal the checkpoint's: with small filters (weight decay shrinks them, and WS
does not care) eps is not negligible, so ``inflate`` refuses a mismatch unless told otherwise.
When the checkpoint is WS but the 3D convs are plain, ŵ₂ is computed once and inflated (the WS is folded), which
keeps the function exactly as for plain networks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from video_gn.models.bit import PreActResNet3d, PreActStage
from video_gn.nn import WSConv3d, is_norm

__all__ = [
    "SOURCE_FAMILIES",
    "SOURCE_GN_GROUPS",
    "InflationReport",
    "detect_family",
    "inflate",
    "inflate_kernel",
]

Method = Literal["mean", "center"]

#: Supported 2D checkpoint families and their WS eps (None: plain convs).
SOURCE_FAMILIES: dict[str, float | None] = {
    "resnet": None,  # torchvision resnet18/34/50/101/152, timm resnet* (same key names), BN or GN
    "bit": 1e-8,  # timm resnetv2_*_bit (ResNetV2: GN + StdConv2d(eps=1e-8), pre-activation)
    "bit_npz": 1e-10,  # official BiT .npz (converted to "bit" keys by load_pretrained; official eps 1e-10)
}
#: GroupNorm groups of each family's checkpoints (None: the family does not fix it; its checkpoints are BN or any GN).
SOURCE_GN_GROUPS: dict[str, int | None] = {"resnet": None, "bit": 32}
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class InflationReport:
    """What :func:`inflate` did, key by key (3D model keys unless said otherwise).

    Attributes:
        source: detected 2D family (``"resnet"``, ``"bit"``, ...).
        method: ``"mean"`` or ``"center"``.
        inflated: conv weights built from a 2D kernel.
        loaded: tensors copied as they are (norm affine, BN statistics, classifier, 1-D tensors).
        skipped: 2D keys not used, each with the reason.
        missing: 3D keys left at their initial values (the classifier when its shape differs).
        scaled: WS convs whose standardized kernel is c × the inflated standardized 2D kernel, with c.
        notes: anything that keeps the 3D network from reproducing the 2D one.
    """

    source: str
    method: str
    inflated: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    scaled: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [
            f"{self.source} checkpoint, {self.method} inflation: {len(self.inflated)} conv kernels inflated, "
            f"{len(self.loaded)} tensors loaded, {len(self.skipped)} skipped, {len(self.missing)} missing"
        ]
        if self.skipped:
            parts.append(
                "skipped: " + "; ".join(self.skipped[:4]) + (" ..." if len(self.skipped) > 4 else "")
            )
        if self.missing:
            parts.append(
                "missing: " + ", ".join(self.missing[:4]) + (" ..." if len(self.missing) > 4 else "")
            )
        parts += self.notes
        return ". ".join(parts)


# ----------------------------------------------------------------------------------------- the kernel rule


def inflate_kernel(
    w2: Tensor,
    kernel_t: int,
    *,
    method: Method = "mean",
    center_index: int | None = None,
    source_ws_eps: float | None = None,
    target_ws: bool = False,
) -> tuple[Tensor, float]:
    """Turn one 2D kernel into a 3D kernel (see the module docstring for the WS derivation).

    Args:
        w2: 2D kernel (O, I, kH, kW).
        kernel_t: temporal extent k_T of the 3D kernel.
        method: ``"mean"`` (repeat, divide by k_T) or ``"center"`` (centre tap, zeros elsewhere).
        center_index: temporal tap that lines up with the output step (the conv's temporal padding);
            default k_T // 2.
        source_ws_eps: WS eps of the 2D conv, or None if it is a plain conv.
        target_ws: whether the 3D conv standardizes its weight.

    Returns:
        (w3, c): w3 of shape (O, I, k_T, kH, kW) in ``w2``'s dtype, and the factor c by which the 3D conv
        (after its own standardization, if any) exceeds the inflated 2D conv (1 except for WS -> WS).
    """
    if w2.ndim != 4:
        raise ValueError(f"inflate_kernel expects a 2D kernel (O, I, kH, kW); got shape {tuple(w2.shape)}.")
    if method not in ("mean", "center"):
        raise ValueError(f"method must be 'mean' or 'center', got {method!r}.")
    center = kernel_t // 2 if center_index is None else center_index
    if not 0 <= center < kernel_t:
        raise ValueError(f"center_index {center} is outside the temporal kernel of size {kernel_t}.")
    w = w2.detach().to(torch.float64)
    if kernel_t == 1 and (source_ws_eps is None or target_ws):
        return w2.detach().clone().unsqueeze(2), 1.0
    scale = 1.0
    if source_ws_eps is not None and not target_ws:  # fold the 2D standardization
        w = _standardize(w, source_ws_eps)
    elif source_ws_eps is not None and target_ws:
        if method == "mean":  # each slice standardizes to ŵ₂: c = k_T
            w3 = w.unsqueeze(2).repeat(1, 1, kernel_t, 1, 1)
            return w3.to(w2.dtype), float(kernel_t)
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) * math.sqrt(kernel_t)  # mean 0, variance σ²
        scale = math.sqrt(kernel_t)
    w3 = w.new_zeros(*w.shape[:2], kernel_t, *w.shape[2:])
    if method == "mean" and not (source_ws_eps is not None and target_ws):
        w3[:] = (w / kernel_t).unsqueeze(2)
    else:
        w3[:, :, center] = w
    return w3.to(w2.dtype), scale


def _standardize(w: Tensor, eps: float) -> Tensor:
    flat = w.reshape(w.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).view_as(w)


# -------------------------------------------------------------------------------------------- name maps


def detect_family(state_dict_2d: Mapping[str, Tensor]) -> str:
    """Recognise the 2D checkpoint family from its key names.

    Args:
        state_dict_2d: a 2D state dict (prefixes such as ``module.`` already removed).

    Returns:
        ``"resnet"`` (torchvision / timm ResNet: ``conv1``, ``layer1.0.conv1`` ...) or ``"bit"`` (timm
        ``ResNetV2``: ``stem.conv``, ``stages.0.blocks.0.conv1`` ...).
    """
    keys = set(state_dict_2d)
    if "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys):
        return "resnet"
    if "stem.conv.weight" in keys and any(k.startswith("stages.0.blocks.0.") for k in keys):
        return "bit"
    sample = sorted(keys)[:6]
    raise ValueError(
        f"Unrecognised 2D checkpoint: keys start {sample} ... Supported: torchvision/timm ResNets (keys "
        "'conv1.weight', 'layer1.0.conv1.weight', ...) and timm BiT ResNetV2 (keys 'stem.conv.weight', "
        "'stages.0.blocks.0.conv1.weight', ...); official BiT .npz files go through load_pretrained."
    )


def _stage_prefixes(model: nn.Module) -> list[str]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(
            f"inflate expects a video_gn 3D ResNet (a module with a 'blocks' list, from video_gn.models.build); "
            f"got {type(model).__name__}."
        )
    return [
        f"blocks.{i}." for i, b in enumerate(blocks) if isinstance(b, PreActStage) or hasattr(b, "res_blocks")
    ]


_RESNET_LEAF = {
    "conv1": "branch2.conv_a",
    "bn1": "branch2.norm_a",
    "conv2": "branch2.conv_b",
    "bn2": "branch2.norm_b",
    "conv3": "branch2.conv_c",
    "bn3": "branch2.norm_c",
    "downsample.0": "branch1_conv",
    "downsample.1": "branch1_norm",
}


def _map_resnet(key: str, stages: list[str], head: str) -> str | None:
    """torchvision/timm ResNet key -> video_gn post-activation key (None: not a model key)."""
    module, _, leaf = key.rpartition(".")
    if module == "conv1":
        return f"blocks.0.conv.{leaf}"
    if module == "bn1":
        return f"blocks.0.norm.{leaf}"
    if module == "fc":
        return f"{head}{leaf}"
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", module)
    if m and m.group(3) in _RESNET_LEAF and int(m.group(1)) <= len(stages):
        return f"{stages[int(m.group(1)) - 1]}res_blocks.{m.group(2)}.{_RESNET_LEAF[m.group(3)]}.{leaf}"
    return None


def _map_bit(key: str, stages: list[str], head: str, final_norm: str) -> str | None:
    """timm ResNetV2 (BiT) key -> :class:`~video_gn.models.bit.PreActResNet3d` key."""
    if key == "stem.conv.weight":
        return "blocks.0.conv.weight"
    if key.startswith("norm."):
        return final_norm + key[len("norm.") :]
    if key.startswith("head.fc."):
        return head + key[len("head.fc.") :]
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key)
    if m and int(m.group(1)) < len(stages):
        rest = m.group(3).replace("downsample.conv.", "downsample.")
        return f"{stages[int(m.group(1))]}res_blocks.{m.group(2)}.{rest}"
    return None


def _unmap(tkey: str, family: str, stages: list[str], head: str, final_norm: str) -> str:
    """The 2D key that would fill 3D key ``tkey`` (inverse of :func:`_map_resnet` / :func:`_map_bit`)."""
    if tkey.startswith(head):
        return ("fc." if family == "resnet" else "head.fc.") + tkey[len(head) :]
    if family == "bit" and tkey.startswith(final_norm):
        return "norm." + tkey[len(final_norm) :]
    if tkey.startswith("blocks.0."):
        rest = tkey[len("blocks.0.") :]
        if family == "bit":
            return "stem." + rest
        module, _, leaf = rest.rpartition(".")
        return {"conv": "conv1", "norm": "bn1"}.get(module, module) + "." + leaf
    for i, prefix in enumerate(stages):
        m = re.fullmatch(re.escape(prefix) + r"res_blocks\.(\d+)\.(.+)\.(\w+)", tkey)
        if m and family == "resnet":
            leaf2 = {v: k for k, v in _RESNET_LEAF.items()}.get(m.group(2), m.group(2))
            return f"layer{i + 1}.{m.group(1)}.{leaf2}.{m.group(3)}"
        if m:
            module = m.group(2).replace("downsample", "downsample.conv")
            return f"stages.{i}.blocks.{m.group(1)}.{module}.{m.group(3)}"
    return "?"


def _depths_2d(state_dict_2d: Mapping[str, Tensor], family: str) -> tuple[int, ...]:
    """Blocks per stage of a 2D checkpoint, from its key names."""
    pattern = r"layer(\d+)\.(\d+)\." if family == "resnet" else r"stages\.(\d+)\.blocks\.(\d+)\."
    depth: dict[int, int] = {}
    for key in state_dict_2d:
        if m := re.match(pattern, key):
            stage = int(m.group(1)) - (family == "resnet")
            depth[stage] = max(depth.get(stage, 0), int(m.group(2)) + 1)
    return tuple(depth.get(i, 0) for i in range(max(depth, default=-1) + 1))


def _more(items: list, shown: int = 4) -> str:
    return f" (+{len(items) - shown} more)" if len(items) > shown else ""


def _first_tensors(sd: Mapping[str, Tensor], n: int = 4) -> str:
    """``key (shape)`` of the first ``n`` tensors that are not BN statistics, in forward (state dict) order."""
    items = [(k, v) for k, v in sd.items() if isinstance(v, Tensor) and k.rpartition(".")[2] not in _BN_STATS]
    return ", ".join(f"{k} {_shape(v)}" for k, v in items[:n])


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


# ------------------------------------------------------------------------------------------------ inflate


def _owner(model: nn.Module, key: str) -> nn.Module:
    return model.get_submodule(key.rpartition(".")[0])


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


@torch.no_grad()
def inflate(
    model3d: nn.Module,
    state_dict_2d: Mapping[str, Tensor],
    *,
    method: Method = "mean",
    source: str = "auto",
    source_ws_eps: float | None | Literal["auto"] = "auto",
    check_ws_eps: bool = True,
    check_architecture: bool = True,
    source_gn_groups: int | None | Literal["auto"] = "auto",
    strict: bool = True,
) -> InflationReport:
    """Load a 2D ResNet checkpoint into a 3D video_gn ResNet, inflating every conv kernel over time.

    Post-activation 2D ResNets (torchvision/timm ``resnet*``, BN or GN, plain or WS) go into the registry's
    ResNets with the 2D network's spatial geometry (``c2d_r50``, ``i3d_r50``, ``slow_r50``, their r101
    versions); timm's BiT ``resnetv2_*_bit`` goes into the pre-activation ``bit_*`` models. See the module
    docstring for the inflation rules and the Weight Standardization derivation.

    The architectures must correspond: same tensors (names and shapes), and the same spatial geometry (every
    conv's spatial stride and padding, the stem's max-pool) so that the 3D network on a constant clip computes
    the 2D network (exactly with ``"center"``). ``r3d_*`` (R3D, Tran et al. 2018) has no stem max-pool: a
    ``resnet18``/``resnet34``/``resnet50`` checkpoint has the right tensors for ``r3d_18``/``_34``/``_50`` but
    every layer after the stem would see feature maps 2x larger than in 2D, so it is refused unless
    ``check_architecture=False`` (then the report says the function is not kept, and why). Temporal strides and
    pools do not matter here (they act on time only).

    Args:
        model3d: the 3D model, modified in place (e.g. ``build("i3d_r50", norm="bn", ws=False)``); left
            untouched when an error is raised.
        state_dict_2d: the 2D state dict (tensors; ``module.`` / ``model.`` prefixes must already be removed:
            :func:`~video_gn.models.pretrained.load_pretrained` does that for files).
        method: ``"mean"`` (I3D / Non-local) or ``"center"``.
        source: ``"auto"`` (detect from the keys), ``"resnet"`` or ``"bit"``.
        source_ws_eps: WS eps of the 2D convs; ``"auto"`` takes the family's (1e-8 for timm BiT, None for
            ``resnet``), None means plain 2D convs. Pass it for a WS ``resnet``-family checkpoint.
        check_ws_eps: refuse WS 3D convs whose eps differs from ``source_ws_eps`` (a wrong eps changes the
            network: see the module docstring).
        check_architecture: refuse a 3D model whose spatial geometry (conv strides/padding, stem pool) differs
            from the 2D network's. With False the weights are loaded anyway, as an initialisation, and
            :attr:`InflationReport.notes` lists the differences.
        source_gn_groups: group count of the 2D GroupNorms (a layer with fewer channels C: C groups), which a
            state dict does not record; ``"auto"``: 32 for BiT (timm and the official release), unknown (None)
            for ``resnet``. Used only for the report's notes: a 3D GroupNorm with another count is noted.
        strict: refuse a checkpoint that leaves 3D parameters other than the classifier unset, or that holds
            weights with no place in the model.

    Returns:
        An :class:`InflationReport`; its ``notes`` name everything that keeps the 3D network from computing
        the 2D one: norm kinds that differ (BN statistics dropped, BN affine on GroupNorm, or BN left at its
        initial statistics), GroupNorm group counts that differ (or cannot be checked), WS on one side only or
        with another eps, spatial geometry loaded with ``check_architecture=False``.

    Raises:
        ValueError: the architectures do not correspond (the message names both sides' keys and shapes, or
            strides), a WS eps differs, or an argument is invalid.
    """
    if method not in ("mean", "center"):
        raise ValueError(f"method must be 'mean' or 'center', got {method!r}.")
    family = detect_family(state_dict_2d) if source == "auto" else source
    if family not in ("resnet", "bit"):
        raise ValueError(f"source must be 'auto', 'resnet' or 'bit', got {source!r}.")
    ws_eps = SOURCE_FAMILIES[family] if source_ws_eps == "auto" else source_ws_eps
    is_preact = isinstance(model3d, PreActResNet3d)
    if (family == "bit") != is_preact:
        kind = (
            "pre-activation BiT ResNetV2" if family == "bit" else "post-activation ResNet (torchvision/timm)"
        )
        want = (
            "a bit_* model, e.g. build('bit_i3d_r50x1')"
            if family == "bit"
            else ("a post-activation model such as c2d_r50 / i3d_r50 / slow_r50")
        )
        model_kind = "pre-activation BiT-style" if is_preact else "post-activation"
        raise ValueError(
            f"The checkpoint is a {kind} but the model is a {type(model3d).__name__} ({model_kind}); the "
            f"architectures do not correspond. 2D checkpoint: {_first_tensors(state_dict_2d)} ...; 3D model: "
            f"{_first_tensors(model3d.state_dict())} ... Build {want}."
        )
    stages = _stage_prefixes(model3d)
    target = model3d.state_dict()
    head = next((k[: -len("weight")] for k in target if k.endswith("proj.weight")), "<no head>.")
    final_norm = f"blocks.{len(model3d.blocks) - 2}.norm."

    # 1. Map and check every tensor; nothing is written until the whole checkpoint is known to fit.
    report = InflationReport(source=family, method=method)
    copies: list[tuple[str, Tensor]] = []  # (3D key, tensor to copy)
    convs: list[tuple[str, str, Tensor]] = []  # (2D key, 3D key, 2D kernel)
    unplaced: list[str] = []
    norms: dict[str, str] = {}  # 3D norm module -> 2D norm module
    for key, value in state_dict_2d.items():
        if not isinstance(value, Tensor):
            report.skipped.append(f"{key} (not a tensor)")
            continue
        if family == "resnet":
            tkey = _map_resnet(key, stages, head)
        else:
            tkey = _map_bit(key, stages, head, final_norm)
        if tkey is None or tkey not in target:
            if key.rpartition(".")[2] in _BN_STATS and tkey is not None:
                report.skipped.append(f"{key} (BN statistics; the 3D norm keeps none)")
            else:
                unplaced.append(f"{key} {_shape(value)} -> {tkey or '?'}")
            continue
        dst = target[tkey]
        if tkey.startswith(head):  # classifier: a 1x1 conv (BiT) or a linear layer
            src = value.reshape(value.shape[0], -1) if value.ndim == 4 else value
            if _shape(src) == _shape(dst):
                copies.append((tkey, src))
            else:
                report.skipped.append(
                    f"{key} (classifier {_shape(value)} vs model {tkey} {_shape(dst)}: left at its init)"
                )
            continue
        if value.ndim == 4 and dst.ndim == 5:
            conv = _owner(model3d, tkey)
            if _shape(value) != (dst.shape[0], dst.shape[1], *dst.shape[3:]):
                raise ValueError(
                    f"Architectures do not correspond: 2D {key} has shape {_shape(value)} but 3D {tkey} has "
                    f"shape {_shape(dst)} (expected (O, I, k_T, kH, kW) = ({value.shape[0]}, {value.shape[1]}, "
                    f"k_T, {value.shape[2]}, {value.shape[3]})). Check the model name, width and in_channels."
                )
            if (
                isinstance(conv, WSConv3d)
                and ws_eps is not None
                and check_ws_eps
                and not math.isclose(conv.eps, ws_eps, rel_tol=1e-6)
            ):
                raise ValueError(
                    f"3D conv {tkey.rpartition('.')[0]} standardizes its weight with eps={conv.eps:g} but the "
                    f"{family} checkpoint was trained with WS eps={ws_eps:g}; a different eps changes the network. "
                    f"Build the model with ws_eps={ws_eps:g} (config: model.ws_eps: {ws_eps:g}), or pass "
                    "check_ws_eps=False to inflate anyway."
                )
            convs.append((key, tkey, value))
            continue
        if _shape(value) != _shape(dst):
            raise ValueError(
                f"Architectures do not correspond: 2D {key} has shape {_shape(value)} but 3D {tkey} has shape "
                f"{_shape(dst)}. Check the model name, width and norm kind."
            )
        copies.append((tkey, value))
        if is_norm(_owner(model3d, tkey)):
            norms[tkey.rpartition(".")[0]] = key.rpartition(".")[0]

    done = {k for k, _ in copies} | {k for _, k, _ in convs}
    report.missing = [k for k in target if k not in done and not k.endswith("num_batches_tracked")]
    if strict:
        problems = []
        if unplaced:
            problems.append(
                f"{len(unplaced)} checkpoint tensors have no place in the model (2D key (shape) -> 3D key): "
                f"{', '.join(u + ' (not in the model)' for u in unplaced[:4])}{_more(unplaced)}"
            )
        not_head = [k for k in report.missing if not k.startswith(head)]
        if not_head:
            absent = [
                f"{k} {_shape(target[k])} <- {_unmap(k, family, stages, head, final_norm)} (not in the checkpoint)"
                for k in not_head[:4]
            ]
            problems.append(
                f"{len(not_head)} model tensors get no value (3D key (shape) <- 2D key): {', '.join(absent)}"
                f"{_more(not_head)}"
            )
            if all(k.rpartition(".")[2] in _BN_STATS for k in not_head):
                problems.append(
                    "the checkpoint has no BatchNorm statistics (a GroupNorm network?): build the 3D model with "
                    "its norm kind, or pass strict=False to keep the initial statistics"
                )
        if problems:
            depths3 = tuple(len(model3d.get_submodule(p.rstrip(".")).res_blocks) for p in stages)
            raise ValueError(
                f"Architectures do not correspond ({family} checkpoint, blocks per stage "
                f"{_depths_2d(state_dict_2d, family)} -> {type(model3d).__name__}, blocks per stage {depths3}): "
                + "; ".join(problems)
                + ". Check the depth (r50 vs r101), the model family, or pass strict=False."
            )
    else:
        report.skipped += [f"{u} (no such model tensor)" for u in unplaced]
    bottleneck = family == "bit" or any(k.endswith(".conv3.weight") for k in state_dict_2d)
    geometry = _geometry_differences(model3d, family, convs, bottleneck)
    if geometry and check_architecture:
        raise ValueError(
            f"Architectures do not correspond: the {family} checkpoint's tensors fit {type(model3d).__name__}, "
            f"but its spatial geometry differs, so the 3D network would not compute the 2D one even on a "
            f"constant clip: {'; '.join(geometry[:4])}{_more(geometry)}. Inflate into a model "
            "with the 2D network's stem and strides (c2d_*, i3d_*, slow_*; r3d_* has no stem max-pool), or pass "
            "check_architecture=False to use the weights only as an initialisation (the report then says so)."
        )

    # 2. Write.
    for tkey, value in copies:
        target[tkey].copy_(value)
        report.loaded.append(tkey)
    for _key, tkey, value in convs:
        conv, dst = _owner(model3d, tkey), target[tkey]
        kernel_t = dst.shape[2]
        pad_t = conv.padding[0] if isinstance(conv.padding, tuple) else None
        w3, scale = inflate_kernel(
            value,
            kernel_t,
            method=method,
            center_index=pad_t if isinstance(pad_t, int) and 0 <= pad_t < kernel_t else None,
            source_ws_eps=ws_eps,
            target_ws=isinstance(conv, WSConv3d),
        )
        dst.copy_(w3)
        report.inflated.append(tkey)
        if scale != 1.0:
            report.scaled[tkey] = scale
    if geometry:
        report.notes.append(
            "The spatial geometry differs from the 2D network's ("
            + "; ".join(geometry[:4])
            + "): the 3D network "
            "does not compute the 2D function, even on a constant clip; the weights are an initialisation only"
        )
    if source_gn_groups == "auto":
        groups, origin = SOURCE_GN_GROUPS[family], f"the {family} family's"
    else:
        groups, origin = source_gn_groups, "source_gn_groups"
    _add_notes(report, model3d, state_dict_2d, norms, ws_eps, groups, origin)
    return report


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
