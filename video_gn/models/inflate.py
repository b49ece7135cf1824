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
is followed by its norm, so nothing is left, provided the norm is scale invariant: a BatchNorm with running
statistics (eval mode, frozen BN) is not, so ``inflate`` multiplies its running mean by c and its running variance
by c² (then it too only sees its eps move to ε/c²). In a pre-activation (BiT) ResNet ``conv3`` and the ``downsample``
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

This module holds the rules and :func:`inflate`; the key-name maps between the 2D families and the 3D models are in
:mod:`video_gn.models.inflate_maps`, the spatial-geometry checks and the report's notes in
:mod:`video_gn.models.inflate_checks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from video_gn.models.bit import PreActResNet3d
from video_gn.models.inflate_checks import _add_notes, _geometry_differences, _is_bn
from video_gn.models.inflate_maps import (
    _BN_STATS,
    _depths_2d,
    _first_tensors,
    _map_bit,
    _map_resnet,
    _more,
    _owner,
    _shape,
    _stage_prefixes,
    _unmap,
    detect_family,
)
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

    ``"mean"`` is I3D's inflation (Carreira & Zisserman 2017, https://arxiv.org/abs/1705.07750), also used by
    Non-local (https://arxiv.org/abs/1711.07971); the WS cases follow Weight Standardization
    (https://arxiv.org/abs/1903.10520).

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

    Raises:
        ValueError: ``w2`` is not 4-D, ``method`` is unknown, or ``center_index`` is outside [0, k_T).
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


# ------------------------------------------------------------------------------------------------ inflate


@torch.no_grad()
def _rescale_running_stats(model3d: nn.Module, conv_key: str, scale: float, report: InflationReport) -> None:
    """Carry a WS conv's scale c into the running statistics of the BatchNorm it feeds.

    A norm with running statistics (BN in eval mode, frozen BN) is not scale invariant: BN(c·y) with the 2D
    statistics (μ, σ²) is not BN(y). With μ → c·μ and σ² → c²·σ² it is, up to its eps becoming ε/c² (as for GN).
    The norm is found by the registry's naming (``conv`` → ``norm``, ``conv_b`` → ``norm_b``,
    ``branch1_conv`` → ``branch1_norm``; in pre-activation (BiT) models the stem → the first block's ``norm1``,
    ``conv1`` → ``norm2``); where none is found, the report gets a note. GroupNorms (BiT's design) need nothing.
    """
    path, _, _ = conv_key.rpartition(".")
    parent, _, leaf = path.rpartition(".")
    head, sep, tail = leaf.rpartition("conv")
    if not isinstance(model3d, PreActResNet3d):
        name = f"{parent + '.' if parent else ''}{head}norm{tail}" if sep else ""
    # Pre-activation: the stem's output is normalised first by the first block's norm1, a block's conv1
    # output by its norm2 (conv2's and conv3's outputs meet GroupNorm / the residual sum: see the docstring).
    elif path == "blocks.0.conv":
        name = "blocks.1.res_blocks.0.norm1"
    elif leaf == "conv1":
        name = f"{parent}.norm2"
    else:
        name = ""
    try:
        norm = model3d.get_submodule(name) if name else None
    except AttributeError:
        norm = None
    if norm is None or not is_norm(norm):
        report.notes.append(
            f"WS conv {path} has a temporal kernel, so its output is {scale:g}× the 2D one's, and no norm named "
            f"{name or '(none)'} follows it to cancel that: the 3D network may not reproduce the 2D one"
        )
        return
    if _is_bn(norm):
        norm.running_mean.mul_(scale)
        norm.running_var.mul_(scale * scale)


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
        method: ``"mean"`` (I3D, https://arxiv.org/abs/1705.07750 / Non-local, https://arxiv.org/abs/1711.07971)
            or ``"center"``.
        source: ``"auto"`` (detect from the keys), ``"resnet"`` or ``"bit"``.
        source_ws_eps: WS eps of the 2D convs; ``"auto"`` takes the family's (1e-8 for timm BiT, None for a
            ResNetV2 with BatchNorm statistics, such as timm's ``resnetv2_50``, and for
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
            strides), a WS eps differs, the checkpoint is not recognised or not float, or an argument is invalid.
        TypeError: ``model3d`` is not a video_gn 3D ResNet (no ``blocks`` list).
    """
    if method not in ("mean", "center"):
        raise ValueError(f"method must be 'mean' or 'center', got {method!r}.")
    family = detect_family(state_dict_2d) if source == "auto" else source
    if family not in ("resnet", "bit"):
        raise ValueError(f"source must be 'auto', 'resnet' or 'bit', got {source!r}.")
    ws_eps = SOURCE_FAMILIES[family] if source_ws_eps == "auto" else source_ws_eps
    # A ResNetV2 with BatchNorm (timm's resnetv2_50, not BiT): BiT's convs are WS and its norms GN, which keep no
    # statistics; a BN ResNetV2's convs are plain.
    bn_resnetv2 = family == "bit" and any(k.endswith("running_mean") for k in state_dict_2d)
    if bn_resnetv2 and source_ws_eps == "auto":
        ws_eps = None
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
                kept = (
                    "the 3D norm has no batch counter"
                    if key.endswith("num_batches_tracked")
                    else "the 3D norm keeps none"
                )
                report.skipped.append(f"{key} (BN statistics; {kept})")
            else:
                unplaced.append(f"{key} {_shape(value)} -> {tkey or '?'}")
            continue
        dst = target[tkey]
        if dst.is_floating_point() and not value.is_floating_point():
            raise ValueError(
                f"2D {key} holds {value.dtype} values but 3D {tkey} is a {dst.dtype} tensor: the checkpoint is "
                "not a float state dict (a quantized or damaged export?). Save the float weights "
                "(model.float().state_dict())."
            )
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
            value.to(dst.dtype),  # a half-precision checkpoint: inflate in the model's precision, not fp16
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
            _rescale_running_stats(model3d, tkey, scale, report)
    if bn_resnetv2:
        report.notes.append(
            "A ResNetV2 with BatchNorm (such as timm's resnetv2_50) is not BiT: its stem usually pads the max-pool "
            "by 1 where BiT's 'fixed' stem pads the input (a state dict does not say which); the 3D model "
            "follows BiT, so its function is close to, not exactly, the 2D network's"
        )
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
