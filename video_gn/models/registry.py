"""Model registry: ``build(name, ...)`` turns a name like ``"i3d_r50"`` into a ready, initialised model.

A registered builder is a keyword-only function
``fn(*, num_classes, width, norm, conv, dropout, zero_init_residual, **extra) -> nn.Module`` where ``norm`` is a
pytorchvideo-style norm factory (called as ``norm(num_features=, eps=, momentum=)``) and ``conv`` a Conv3d-like
constructor. ``build`` turns the user-facing strings and flags into those callables with ``video_gn.nn``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from video_gn.nn import conv_layer, norm_layer

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)

#: WS eps of a model registered without one (the GN + WS papers' code uses 1e-5 to 1e-6; ours 1e-6).
DEFAULT_WS_EPS = 1e-6

_BUILDERS: dict[str, Builder] = {}
_WS_EPS: dict[str, float] = {}


def register(name: str, *, ws_eps: float = DEFAULT_WS_EPS) -> Callable[[_B], _B]:
    """Register a model builder under ``name`` (decorator).

    Args:
        name: registry key, e.g. ``"r3d_18"``. Must not be taken already.
        ws_eps: the model's default WS eps, used by :func:`build` when none is given (e.g. 1e-8 for the BiT
            models, so that BiT checkpoints load into them as they are).

    Returns:
        A decorator that stores the builder and returns it unchanged; it raises ``ValueError`` if ``name`` is
        taken.
    """
    if not ws_eps > 0:
        raise ValueError(f"ws_eps must be > 0, got {ws_eps!r}.")

    def decorator(fn: _B) -> _B:
        if name in _BUILDERS:
            raise ValueError(f"A model named {name!r} is already registered; pick another name.")
        _BUILDERS[name] = fn
        _WS_EPS[name] = ws_eps
        return fn

    return decorator


def register_layouts(
    layouts: Mapping[str, Any],
    create: Callable[..., nn.Module],
    *,
    dropout: float,
    doc: str = "",
    ws_eps: float = DEFAULT_WS_EPS,
) -> None:
    """Register one builder per ``{name: layout}``, each calling ``create(layout, **builder kwargs)``.

    Args:
        layouts: registry name -> layout object understood by ``create``.
        create: ``create(layout, *, num_classes, width, norm, conv, dropout, zero_init_residual, in_channels)``.
        dropout: default dropout of these builders.
        doc: prefix of each builder's docstring.
        ws_eps: default WS eps of these models (see :func:`register`).
    """
    for name, layout in layouts.items():
        register(name, ws_eps=ws_eps)(_layout_builder(name, layout, create, dropout, doc))


def _layout_builder(
    name: str, layout: Any, create: Callable[..., nn.Module], default_dropout: float, doc: str
):
    def builder(
        *,
        num_classes: int,
        width: int,
        norm: Callable[..., nn.Module],
        conv: Callable[..., nn.Module],
        dropout: float = default_dropout,
        zero_init_residual: bool = True,
        in_channels: int = 3,
    ) -> nn.Module:
        return create(
            layout,
            num_classes=num_classes,
            width=width,
            norm=norm,
            conv=conv,
            dropout=dropout,
            zero_init_residual=zero_init_residual,
            in_channels=in_channels,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"Build ``{name}``{doc}: {layout}."
    return builder


def names() -> list[str]:
    """List the registered model names.

    Returns:
        Sorted list of names accepted by :func:`build`.
    """
    return sorted(_BUILDERS)


def default_ws_eps(name: str) -> float:
    """The WS eps :func:`build` gives model ``name`` when no ``ws_eps`` is passed.

    Args:
        name: one of :func:`names`.

    Returns:
        The registered eps (1e-8 for the ``bit_*`` models, as timm's BiT checkpoints; else 1e-6).
    """
    if name not in _WS_EPS:
        raise ValueError(f"Unknown model {name!r}; expected one of {names()}.")
    return _WS_EPS[name]


def _default_norm_kwargs(norm: str, norm_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The norm factory's keywords: ``norm_kwargs`` plus, for GroupNorm, the registry's group policy."""
    kwargs = dict(norm_kwargs or {})
    if norm == "gn" and kwargs.get("num_groups") is None and kwargs.get("channels_per_group") is None:
        kwargs["num_groups"] = "min32"
    return kwargs


def build(
    name: str,
    num_classes: int = 400,
    norm: str = "gn",
    ws: bool = True,
    width: int = 64,
    *,
    dropout: float = 0.5,
    zero_init_residual: bool = True,
    ws_eps: float | None = None,
    norm_kwargs: Mapping[str, Any] | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a registered video classifier.

    Args:
        name: one of :func:`names` (``r3d_18``, ``i3d_r50``, ...).
        num_classes: number of output logits.
        norm: normalisation kind, one of ``video_gn.nn.NORM_KINDS`` (``"bn"``, ``"syncbn"``, ``"frozen_bn"``,
            ``"gn"``, ``"ln"``, ``"in"``, ``"none"``).
        ws: use Weight-Standardized convolutions (every conv of the network, stem and shortcuts included;
            Qiao et al. 2019, https://arxiv.org/abs/1903.10520).
        width: base channel count; every channel count scales with it (64 is the published size, 16 a CPU toy).
        dropout: dropout probability before the classifier.
        zero_init_residual: initialise γ of the last norm of every residual block to 0 (Goyal et al. 2017; GN
            paper, https://arxiv.org/abs/1803.08494), for every trainable norm kind (frozen BN keeps γ = 1), so
            each block starts as the identity. Pre-activation ``bit_*`` models have no block-final norm: see
            :func:`video_gn.models.create_bit_resnet`.
        ws_eps: epsilon inside the square root of the weight standardization; None takes the model's
            registered default (:func:`default_ws_eps`: 1e-8 for ``bit_*``, whose checkpoints were trained with
            it, 1e-6 otherwise).
        norm_kwargs: extra keywords for the norm factory, e.g. ``{"num_groups": 16}`` for ``"gn"``. For
            ``"gn"`` without ``num_groups`` / ``channels_per_group`` the models use ``num_groups="min32"``: 32
            groups, one group per channel in layers narrower than 32 channels (widths below 32, e.g. the CPU
            toy ``width=16``); a wider layer that 32 does not divide (e.g. ``width=48``) is an error naming the
            valid counts (see :func:`video_gn.nn.resolve_num_groups`).
        **kw: builder-specific extras, e.g. ``in_channels=3``.

    Returns:
        The model: input (N, in_channels, T, H, W) float, output (N, num_classes) logits, for any T >= 1 and
        H, W >= 32.

    Raises:
        ValueError: unknown ``name`` or ``norm``, or an invalid ``num_classes``, ``width``, ``dropout``,
            ``ws_eps`` or GroupNorm group count.
        TypeError: ``ws`` is not a bool, or a keyword the builder does not take.
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; expected one of {names()}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int (64 = published size), got {width!r}.")
    if not isinstance(ws, bool):
        raise TypeError(f"ws must be a bool, got {type(ws).__name__} {ws!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if ws_eps is None:
        ws_eps = _WS_EPS[name]
    if not ws_eps > 0:
        raise ValueError(f"ws_eps must be > 0, got {ws_eps!r}.")
    if ws and norm in ("none", "frozen_bn"):
        # WS makes every filter unit-variance: with nothing after it that normalises activations, they grow by
        # about sqrt(fan-in) per layer (logits ~1e16 for r3d_18, non-finite gradients for the ResNet-50s).
        warnings.warn(
            f"build({name!r}, norm={norm!r}, ws=True): weight standardization needs a normalising layer after "
            "each conv (gn, ln, in, bn, syncbn); with this norm activations grow by about sqrt(fan-in) per "
            "layer and training diverges. Use norm='gn' (GN+WS) or ws=False.",
            stacklevel=2,
        )
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        fixed = {"num_classes", "width", "norm", "conv", "dropout", "zero_init_residual"}
        extras = sorted(set(params) - fixed)
        unknown = sorted(set(kw) - set(extras))
        if unknown:
            raise TypeError(
                f"Model {name!r} got unexpected keyword(s) {unknown}; it accepts extras {extras}."
            )
    model = builder(
        num_classes=num_classes,
        width=width,
        norm=norm_layer(norm, **_default_norm_kwargs(norm, norm_kwargs)),
        conv=conv_layer(ws, ws_eps),
        dropout=dropout,
        zero_init_residual=zero_init_residual,
        **kw,
    )
    for module in model.modules():  # pytorchvideo computes shortcut strides with np.prod: plain ints instead
        if isinstance(module, nn.modules.conv._ConvNd):
            module.stride = tuple(int(s) for s in module.stride)
    return model
