"""Normalisation layers and the norm factory.

* :class:`GroupNorm` — ``torch.nn.GroupNorm`` (any rank, e.g. 5-D video activations (N, C, T, H, W)) with a
  second, BatchNorm-style constructor ``GroupNorm(num_features=C, eps=..., momentum=...)`` so it can be passed as
  the ``norm=`` callable of pytorchvideo builders, and the project's group-count policy. GN paper:
  Wu & He, 2018, https://arxiv.org/abs/1803.08494.
* :class:`FrozenBatchNorm1d` / ``2d`` / ``3d`` — BatchNorm with fixed statistics and affine parameters.
* :func:`norm_layer` / :func:`make_norm` — build any of :data:`NORM_KINDS` from a string.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from video_gn.norm_kinds import NORM_KINDS

__all__ = [
    "DEFAULT_NUM_GROUPS",
    "NORM_KINDS",
    "FrozenBatchNorm1d",
    "FrozenBatchNorm2d",
    "FrozenBatchNorm3d",
    "GroupNorm",
    "is_norm",
    "make_norm",
    "norm_layer",
    "resolve_num_groups",
]

#: GroupNorm's default group count (the GN paper's, https://arxiv.org/abs/1803.08494).
DEFAULT_NUM_GROUPS = 32


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def resolve_num_groups(
    num_channels: int, num_groups: int | str | None = None, channels_per_group: int | None = None
) -> int:
    """Apply the project's group-count policy: the GroupNorm group count G for C channels.

    * neither given: 32 groups (the GN paper's default; Wu & He 2018, https://arxiv.org/abs/1803.08494). A
      channel count that 32 does not divide (e.g. 48, or 16) is an error naming the valid group counts: pick
      ``num_groups`` or ``channels_per_group`` explicitly rather than get a silently different normalisation.
    * ``num_groups`` given: it must divide ``num_channels``. Two named policies:
      ``"min32"`` takes min(32, C) groups: 32, and one group per channel for layers narrower than 32 channels
      (CPU-sized widths such as ``build(..., width=16)``; this is what :func:`video_gn.models.build` uses), and
      still fails where 32 does not divide a wider layer; ``"auto"`` takes the largest divisor of C that is
      <= 32, for third-party models with odd channel counts (torchvision's R(2+1)D has 230).
    * ``channels_per_group`` given: it must divide ``num_channels``; groups = C / channels_per_group.

    Args:
        num_channels: C, the number of channels normalised.
        num_groups: explicit group count, ``"min32"``, ``"auto"``, or None for the default.
        channels_per_group: explicit group size, or None.

    Returns:
        The number of groups G (C % G == 0).

    Raises:
        ValueError: ``num_channels`` is not a positive int, both group arguments are given, or the count asked
            for (or the default 32) does not divide ``num_channels``; the message lists the valid counts.
    """
    if not isinstance(num_channels, int) or isinstance(num_channels, bool) or num_channels < 1:
        hint = ""
        if isinstance(num_channels, float) and num_channels < 1:
            hint = " (BatchNorm's positional form (num_features, eps, momentum)? pass them by keyword)"
        raise ValueError(f"GroupNorm: num_channels must be a positive int, got {num_channels!r}{hint}")
    if num_groups is not None and channels_per_group is not None:
        raise ValueError(
            f"GroupNorm: pass num_groups ({num_groups}) or channels_per_group ({channels_per_group}), not both"
        )
    if channels_per_group is not None:
        if (
            not isinstance(channels_per_group, int)
            or channels_per_group < 1
            or num_channels % channels_per_group
        ):
            raise ValueError(
                f"GroupNorm: channels_per_group={channels_per_group!r} does not divide num_channels="
                f"{num_channels}; valid channels_per_group values: {_divisors(num_channels)}"
            )
        return num_channels // channels_per_group
    if num_groups == "auto":
        return max(d for d in _divisors(num_channels) if d <= DEFAULT_NUM_GROUPS)
    policy = "the default"
    if num_groups == "min32":
        if num_channels < DEFAULT_NUM_GROUPS:
            return num_channels
        num_groups, policy = None, "num_groups='min32': the"
    if num_groups is None:
        if num_channels % DEFAULT_NUM_GROUPS:
            example = max(d for d in _divisors(num_channels) if d <= DEFAULT_NUM_GROUPS)
            narrow = (
                f"; num_groups='min32' gives a layer narrower than {DEFAULT_NUM_GROUPS} channels one group per "
                "channel (what video_gn.models.build does)"
                if num_channels < DEFAULT_NUM_GROUPS
                else ""
            )
            raise ValueError(
                f"GroupNorm: {policy} {DEFAULT_NUM_GROUPS} groups do not divide num_channels={num_channels}; "
                f"valid group counts for {num_channels} channels: {_divisors(num_channels)}. Pass a num_groups "
                f"that divides every layer's channels (for this layer e.g. {example}: norm_kwargs="
                f"{{'num_groups': {example}}} / --model.gn_groups {example}), channels_per_group, or "
                f"num_groups='auto' (--model.gn_groups auto: per layer the largest valid count <= "
                f"{DEFAULT_NUM_GROUPS}){narrow}"
            )
        return DEFAULT_NUM_GROUPS
    if not isinstance(num_groups, int) or num_groups < 1 or num_channels % num_groups:
        raise ValueError(
            f"GroupNorm: num_groups={num_groups!r} does not divide num_channels={num_channels}; "
            f"valid group counts for {num_channels} channels: {_divisors(num_channels)} "
            f"(or pass channels_per_group, or num_groups='auto')"
        )
    return num_groups


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` that also takes BatchNorm's constructor, with the project's group policy.

    GroupNorm: Wu & He, 2018, https://arxiv.org/abs/1803.08494. Normalises each sample over groups of
    C / G channels and all positions, then applies a per-channel affine; no running statistics, so train and eval
    compute the same thing at any batch size.

    Two ways to build it::

        GroupNorm(32, 256)                                   # torch: (num_groups, num_channels)
        GroupNorm(num_features=256, eps=1e-5, momentum=0.1)  # BatchNorm-style (momentum ignored), 32 groups
        GroupNorm(256)  /  GroupNorm(256, 1e-5, 0.1)         # BatchNorm-style, positional (torchvision's
                                                             # norm_layer(planes)): 32 groups
        GroupNorm(num_features=256, channels_per_group=16)   # 16 groups

    With BatchNorm's form and no group argument the default policy applies (see :func:`resolve_num_groups`):
    32 groups, or an error naming the valid counts. A lone int, or an int followed by a float, can only be
    BatchNorm's form (torch's always has an int channel count second).

    Args:
        num_groups: G; must divide the channel count (``"min32"``, ``"auto"``: see :func:`resolve_num_groups`).
        num_channels: C (torch's name).
        eps: added to the group variance.
        affine: learn per-channel γ (``weight``, init 1) and β (``bias``, init 0).
        num_features: C (BatchNorm's name); exclusive with ``num_channels``.
        momentum: accepted for BatchNorm compatibility and ignored (GN keeps no running statistics).
        channels_per_group: alternative to ``num_groups``.
        track_running_stats: accepted for BatchNorm compatibility and ignored (any value).
        device, dtype: factory keywords, as in torch.

    Shapes: input (N, C, *) -> output of the same shape, e.g. (N, C, T, H, W).
    """

    #: Positional orders: torch's, and BatchNorm's (torchvision's ``norm_layer(planes)``).
    _TORCH_ORDER = ("num_groups", "num_channels", "eps", "affine", "device", "dtype")
    _BATCHNORM_ORDER = ("num_features", "eps", "momentum", "affine", "track_running_stats")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            # A lone int (unless num_channels comes by keyword: torch's GroupNorm(8, num_channels=64)), or an
            # int then a float, can only be BatchNorm's form: torch's has an int channel count second.
            batchnorm = (len(args) == 1 and "num_channels" not in kwargs) or (
                len(args) > 1 and isinstance(args[1], float)
            )
            names = self._BATCHNORM_ORDER if batchnorm else self._TORCH_ORDER
            if len(args) > len(names):
                raise TypeError(f"GroupNorm takes at most {len(names)} positional arguments ({names})")
            twice = sorted(set(names[: len(args)]) & set(kwargs))
            if twice:
                raise TypeError(f"GroupNorm: got {twice} both positionally and by keyword")
            kwargs.update(zip(names, args))
        self._build(**kwargs)

    def _build(
        self,
        *,
        num_groups: int | str | None = None,
        num_channels: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        num_features: int | None = None,
        momentum: float | None = None,
        channels_per_group: int | None = None,
        track_running_stats: bool | None = None,
    ) -> None:
        if num_channels is not None and num_features is not None and num_channels != num_features:
            raise ValueError(
                f"GroupNorm: num_channels={num_channels} and num_features={num_features} disagree; pass one"
            )
        channels = num_channels if num_channels is not None else num_features
        if channels is None:
            raise TypeError(
                "GroupNorm needs the channel count: GroupNorm(num_groups, num_channels) as in torch, or "
                f"GroupNorm(num_features=C) as BatchNorm; got num_groups={num_groups!r} and no channel count"
            )
        del momentum, track_running_stats  # BatchNorm compatibility only: GN keeps no running stats.
        groups = resolve_num_groups(channels, num_groups, channels_per_group)
        super().__init__(groups, channels, eps=eps, affine=affine, device=device, dtype=dtype)


class _FrozenBatchNorm(nn.Module):
    """BatchNorm with frozen statistics and affine parameters, all stored as buffers (never trained).

    y = (x − running_mean) / sqrt(running_var + eps) · weight + bias, per channel.
    """

    _allowed_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = None,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build a frozen BN with BatchNorm's constructor (γ = 1, β = 0, mean 0, variance 1 until loaded).

        Args:
            num_features: C, the number of channels.
            eps: added to ``running_var`` inside the square root.
            momentum: accepted for BatchNorm compatibility and ignored (nothing is updated).
            affine: accepted for BatchNorm compatibility and ignored (``weight`` / ``bias`` are always there,
                as buffers).
            track_running_stats: accepted for BatchNorm compatibility and ignored (the running statistics are
                always used).
            device, dtype: factory keywords for the buffers.
        """
        super().__init__()
        del momentum, affine, track_running_stats  # BatchNorm compatibility; nothing is updated or learned.
        kw = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features, **kw))
        self.register_buffer("bias", torch.zeros(num_features, **kw))
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors
    ):
        # A BatchNorm checkpoint carries num_batches_tracked; a frozen BN has no use for it.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors
        )

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` with the stored statistics and affine parameters.

        Args:
            x: input (N, C, ...) with the class's rank: (N, C) or (N, C, L) for 1d, (N, C, H, W) for 2d,
                (N, C, T, H, W) for 3d; C = ``num_features``.

        Returns:
            Tensor of ``x``'s shape and dtype.

        Raises:
            ValueError: ``x`` has another rank or channel count.
        """
        if x.dim() not in self._allowed_dims or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.num_features}, ...) with "
                f"{' or '.join(map(str, self._allowed_dims))} dims, got shape {tuple(x.shape)}"
            )
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.reshape(view).to(x.dtype) + shift.reshape(view).to(x.dtype)

    def extra_repr(self) -> str:
        """Channel count and eps, for ``repr``."""
        return f"{self.num_features}, eps={self.eps}"


class FrozenBatchNorm1d(_FrozenBatchNorm):
    """Frozen BatchNorm for (N, C) or (N, C, L) input; BN-compatible constructor.

    Statistics, γ and β are buffers (see :class:`FrozenBatchNorm3d`); input (N, C) or (N, C, L) -> same shape.
    """

    _allowed_dims = (2, 3)


class FrozenBatchNorm2d(_FrozenBatchNorm):
    """Frozen BatchNorm for (N, C, H, W) input; BN-compatible constructor.

    Statistics, γ and β are buffers (see :class:`FrozenBatchNorm3d`); input (N, C, H, W) -> same shape.
    """

    _allowed_dims = (4,)


class FrozenBatchNorm3d(_FrozenBatchNorm):
    """Frozen BatchNorm for (N, C, T, H, W) input; BN-compatible constructor.

    y = (x − running_mean) / sqrt(running_var + eps) · weight + bias with every tensor a buffer, so train mode,
    optimisers and batch size change nothing (as detection / video codebases use at small batch).
    Constructor: BatchNorm's (``num_features``, ``eps``; ``momentum``, ``affine`` and ``track_running_stats``
    accepted and ignored). Input (N, C, T, H, W) -> same shape.
    """

    _allowed_dims = (5,)


_BN_BY_DIM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_FROZEN_BY_DIM = {1: FrozenBatchNorm1d, 2: FrozenBatchNorm2d, 3: FrozenBatchNorm3d}
# Keyword arguments each kind accepts in norm_layer(kind, **kw) besides num_features / eps / momentum.
_KIND_KWARGS: dict[str, set[str]] = {
    "bn": {"dim", "affine", "track_running_stats", "device", "dtype"},
    "syncbn": {"dim", "affine", "track_running_stats", "process_group", "device", "dtype"},
    "frozen_bn": {"dim", "device", "dtype"},
    "gn": {"dim", "num_groups", "channels_per_group", "affine", "device", "dtype"},
    "ln": {"dim", "affine", "device", "dtype"},
    "in": {"dim", "affine", "device", "dtype"},
    "none": {"dim"},
}


def _check_dim(dim: int) -> int:
    if dim not in (1, 2, 3):
        raise ValueError(f"norm_layer: dim must be 1, 2 or 3 (the conv dimensionality), got {dim!r}")
    return dim


def _build_norm(
    kind: str,
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    *,
    dim: int = 3,
    **kw,
) -> nn.Module:
    if kind == "bn":
        return _BN_BY_DIM[_check_dim(dim)](num_features, eps=eps, momentum=momentum, **kw)
    if kind == "syncbn":
        return nn.SyncBatchNorm(num_features, eps=eps, momentum=momentum, **kw)
    if kind == "frozen_bn":
        return _FROZEN_BY_DIM[_check_dim(dim)](num_features, eps=eps, **kw)
    if kind == "gn":
        return GroupNorm(num_features=num_features, eps=eps, **kw)
    if kind == "ln":
        return GroupNorm(1, num_features, eps=eps, **kw)
    if kind == "in":
        return GroupNorm(num_features, num_features, eps=eps, **kw)
    return nn.Identity()  # "none"


def norm_layer(kind: str, **kw) -> Callable[..., nn.Module]:
    """Return a factory that builds a norm of ``kind`` from BatchNorm's arguments.

    The factory follows pytorchvideo's / torchvision's ``norm=`` protocol: ``factory(num_features, eps=1e-5,
    momentum=0.1)`` (positional or keyword).

    Kinds (:data:`NORM_KINDS`): ``"bn"`` BatchNorm{dim}d; ``"syncbn"`` ``nn.SyncBatchNorm`` (a plain BN on one
    process, synchronised under DDP); ``"frozen_bn"`` FrozenBatchNorm{dim}d; ``"gn"`` :class:`GroupNorm` (``kw``
    may hold ``num_groups`` or ``channels_per_group``; default policy: :func:`resolve_num_groups`); ``"ln"``
    GroupNorm with 1 group (LayerNorm over C and all positions, per-channel affine); ``"in"`` GroupNorm with C
    groups (InstanceNorm with affine); ``"none"`` ``nn.Identity`` (arguments accepted and ignored). GroupNorm:
    Wu & He 2018, https://arxiv.org/abs/1803.08494.

    Args:
        kind: one of :data:`NORM_KINDS`.
        **kw: extra constructor arguments for that kind (``dim`` = 1/2/3 selects the BN flavour, default 3).

    Returns:
        A picklable callable ``(num_features, eps=..., momentum=...) -> nn.Module``; the module maps (N, C, *)
        to the same shape.

    Raises:
        ValueError: unknown ``kind``, ``dim`` not 1/2/3, or both ``num_groups`` and ``channels_per_group``.
        TypeError: a keyword the kind does not take.
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; valid kinds: {', '.join(NORM_KINDS)}")
    unknown = set(kw) - _KIND_KWARGS[kind]
    if unknown:
        raise TypeError(
            f"norm_layer({kind!r}): unexpected keyword(s) {sorted(unknown)}; "
            f"this kind accepts {sorted(_KIND_KWARGS[kind])}"
        )
    if "dim" in kw:
        _check_dim(kw["dim"])
    if kind == "gn":  # fail now, not deep inside a model builder, on contradictory group arguments
        if kw.get("num_groups") is not None and kw.get("channels_per_group") is not None:
            raise ValueError("norm_layer('gn'): pass num_groups or channels_per_group, not both")
    return functools.partial(_build_norm, kind, **kw)


def make_norm(kind: str, num_channels: int, **kw) -> nn.Module:
    """Build one norm layer: ``norm_layer(kind, **kw)(num_features=num_channels)``.

    Args:
        kind: one of :data:`NORM_KINDS`.
        num_channels: C.
        **kw: ``eps`` / ``momentum`` plus the kind's extra arguments (see :func:`norm_layer`).

    Returns:
        The module; input (N, C, *) -> output of the same shape.
    """
    eps = kw.pop("eps", 1e-5)
    momentum = kw.pop("momentum", 0.1)
    return norm_layer(kind, **kw)(num_features=num_channels, eps=eps, momentum=momentum)


def _torchvision_frozen_bn() -> tuple[type, ...]:
    try:  # the frozen BN of torchvision's detection backbones (buffers weight/bias/running_*, eps; no momentum)
        from torchvision.ops.misc import FrozenBatchNorm2d
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return ()
    return (FrozenBatchNorm2d,)


#: BatchNorm-like layers the converters replace: torch's BN/SyncBN, ours and torchvision's frozen BN.
BN_LIKE_TYPES: tuple[type, ...] = (_BatchNorm, _FrozenBatchNorm, *_torchvision_frozen_bn())
_NORM_TYPES = (*BN_LIKE_TYPES, nn.GroupNorm, nn.LayerNorm, _InstanceNorm, nn.LocalResponseNorm)


def is_norm(module: nn.Module) -> bool:
    """Return True for every normalisation layer (BN, SyncBN, frozen BN, GN/LN/IN kinds, torch LayerNorm, ...).

    Args:
        module: any module.

    Returns:
        Whether ``module`` is a normalisation layer (``nn.Identity`` from kind ``"none"`` is not).
    """
    return isinstance(module, _NORM_TYPES)
