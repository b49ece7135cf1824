"""Pre-activation 3D ResNets in the layout of BiT (Big Transfer), so BiT's 2D GN + WS checkpoints inflate into them.

BiT (Kolesnikov et al. 2020, https://arxiv.org/abs/1912.11370) released ImageNet-21k ResNet-v2 models trained with
GroupNorm and Weight-Standardized convolutions: exactly the normalisation this project uses for small-batch video
training. Their blocks are *pre-activation* (He et al. 2016, https://arxiv.org/abs/1603.05027): the norm and ReLU
come before each conv, the residual stream is a sum of raw conv outputs, and one GN + ReLU closes the network.
This file builds the 3D counterpart, with the module names of timm's ``ResNetV2`` inside each block, so a
``resnetv2_50x1_bit`` state dict maps onto it one to one (see :mod:`video_gn.models.inflate`).

::

    stem:   conv k_T x 7 x 7 /(1,2,2) -> zero-pad (0,1,1) -> max-pool 1x3x3 /(1,2,2)     (no norm: pre-activation)
    block:  x ─ norm1 ─ relu ─┬─ conv1 (k_a) ─ norm2 ─ relu ─ conv2 (1x3x3, stride) ─ norm3 ─ relu ─ conv3 ─(+)─▶
                              └─ downsample (1x1x1, stride; first block of a stage) ───────────────────────┘
            (without a projection the shortcut is x itself, before norm1)
    end:    norm ─ relu ─ global average pool ─ dropout ─ linear

Temporal kernels (``k_T`` of the stem, ``k_a`` of ``conv1``) and the temporal max-pool after stage 1 follow the
C2D / I3D / Slow layouts of :data:`video_gn.models.LAYOUTS`; for every registered BiT model the convs whose
output meets the residual sum without a norm (``conv3``, ``downsample``) stay 1 x 1 x 1 in time, which is what
lets a WS network be inflated without changing its function (see :func:`video_gn.models.inflate`).

Registered names: ``bit_c2d_r50x1`` and ``bit_i3d_r50x1``; :func:`create_bit_resnet` builds any other layout
(``LAYOUTS["slow_r50"]``, ``LAYOUTS["i3d_r101"]`` for BiT-R101x1, ...). BiT was trained with WS eps 1e-8 (timm) /
1e-10 (official code): the registered models default to 1e-8 (``build("bit_i3d_r50x1")`` loads timm's weights
as they are); pass ``ws_eps=1e-10`` for the official ``.npz`` files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from video_gn.models.head import AdaptiveHead
from video_gn.models.registry import register_layouts
from video_gn.models.resnet3d import LAYOUTS, Kernel, ResNetLayout, init_weights
from video_gn.nn import WSConv3d

#: GroupNorm eps of BiT / timm ``GroupNormAct``.
BIT_NORM_EPS = 1e-5
#: WS eps of timm's BiT models (``partial(StdConv2d, eps=1e-8)``); the official BiT code used 1e-10.
BIT_WS_EPS = 1e-8


def _same(kernel: Kernel) -> Kernel:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]


class PreActBottleneck3d(nn.Module):
    """Pre-activation bottleneck (ResNet-v2 / BiT), 3D.

    ::

        x ─ norm1 ─ relu ─┬─ conv1 ─ norm2 ─ relu ─ conv2 ─ norm3 ─ relu ─ conv3 ─(+)─▶
                          └─ downsample (if any) ─────────────────────────────────┘
        (no downsample: the shortcut is x)
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        conv_a_kernel: Kernel,
        conv_b_kernel: Kernel = (1, 3, 3),
        stride: Kernel = (1, 1, 1),
        project: bool,
        conv: Callable[..., nn.Module],
        norm: Callable[..., nn.Module],
    ) -> None:
        """Build the block.

        Args:
            dim_in, dim_inner, dim_out: input, bottleneck and output channels.
            conv_a_kernel: kernel of ``conv1`` (temporal extent k_a x 1 x 1).
            conv_b_kernel: kernel of ``conv2`` (carries the stride, as in BiT).
            stride: (t, h, w) stride of ``conv2`` and of the projection.
            project: give the shortcut a 1x1x1 projection conv (``downsample``) fed by the pre-activation.
            conv: conv constructor called by keyword (``nn.Conv3d``, ``partial(WSConv3d, eps=...)``).
            norm: norm factory called as ``norm(num_features=, eps=)``.
        """
        super().__init__()
        self.downsample = (
            conv(in_channels=dim_in, out_channels=dim_out, kernel_size=1, stride=stride, bias=False)
            if project
            else None
        )
        self.norm1 = norm(num_features=dim_in, eps=BIT_NORM_EPS)
        self.conv1 = conv(
            in_channels=dim_in,
            out_channels=dim_inner,
            kernel_size=conv_a_kernel,
            padding=_same(conv_a_kernel),
            bias=False,
        )
        self.norm2 = norm(num_features=dim_inner, eps=BIT_NORM_EPS)
        self.conv2 = conv(
            in_channels=dim_inner,
            out_channels=dim_inner,
            kernel_size=conv_b_kernel,
            stride=stride,
            padding=_same(conv_b_kernel),
            bias=False,
        )
        self.norm3 = norm(num_features=dim_inner, eps=BIT_NORM_EPS)
        self.conv3 = conv(in_channels=dim_inner, out_channels=dim_out, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: residual stream (N, dim_in, T, H, W).

        Returns:
            Residual stream (N, dim_out, T/st, H/sh, W/sw) (rounded up).
        """
        x_pre = F.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(x_pre)
        y = self.conv1(x_pre)
        y = self.conv2(F.relu(self.norm2(y)))
        y = self.conv3(F.relu(self.norm3(y)))
        return y + shortcut


class PreActStage(nn.Module):
    """A sequence of :class:`PreActBottleneck3d` (``res_blocks``), like pytorchvideo's ``ResStage``."""

    def __init__(self, res_blocks: list[nn.Module]) -> None:
        """Wrap the blocks (first block first)."""
        super().__init__()
        self.res_blocks = nn.ModuleList(res_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every block: (N, C_in, T, H, W) -> (N, C_out, T', H', W')."""
        for block in self.res_blocks:
            x = block(x)
        return x


class BiTStem3d(nn.Module):
    """BiT's "fixed" stem in 3D: conv (no norm: pre-activation), zero padding, 1x3x3 max-pool with stride (1,2,2).

    The zero padding before the pool (not the pool's own -inf padding) is BiT's; it matters because the raw
    conv output can be negative.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, kernel: Kernel, conv: Callable[..., nn.Module]
    ):
        """Build the stem.

        Args:
            in_channels: input channels (3 for RGB).
            out_channels: stem width.
            kernel: conv kernel (k_T, 7, 7).
            conv: conv constructor.
        """
        super().__init__()
        self.conv = conv(
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel,
            stride=(1, 2, 2),
            padding=_same(kernel),
            bias=False,
        )
        self.pad = nn.ConstantPad3d((1, 1, 1, 1, 0, 0), 0.0)
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T, H, W) -> (N, C_out, T, H/4, W/4) (rounded)."""
        return self.pool(self.pad(self.conv(x)))


class NormAct(nn.Module):
    """The final ``norm`` + ReLU of a pre-activation network."""

    def __init__(self, norm: nn.Module) -> None:
        """Wrap ``norm`` (its parameters keep the name ``norm.*``)."""
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> same shape."""
        return F.relu(self.norm(x))


class PreActResNet3d(nn.Module):
    """Pre-activation 3D ResNet: ``blocks`` = stem, stages (and the stage-1 temporal pool), final norm, head.

    The BiT (Big Transfer, https://arxiv.org/abs/1912.11370) ResNet-v2 layout (pre-activation blocks, He et al.
    2016, https://arxiv.org/abs/1603.05027) in 3D; built by :func:`create_bit_resnet`.

    Forward: (N, C, T, H, W) float, T >= 1, H, W >= 32 -> (N, num_classes) logits.
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        """Wrap the blocks in forward order.

        Args:
            blocks: stem, stages (with the optional stage-1 temporal pool), final :class:`NormAct`, head.
        """
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify clips by applying every block in order.

        Args:
            x: clips (N, C, T, H, W), T >= 1, H, W >= 32.

        Returns:
            Logits (N, num_classes).
        """
        for block in self.blocks:
            x = block(x)
        return x

    def last_norms(self) -> list[nn.Module]:
        """Return the block-final norms: none, as pre-activation blocks end with a conv, not a norm.

        Returns:
            An empty list (the counterpart of :meth:`VideoResNet.last_norms`).
        """
        return []


def create_bit_resnet(
    layout: ResNetLayout,
    *,
    num_classes: int,
    width: int,
    norm: Callable[..., nn.Module],
    conv: Callable[..., nn.Module],
    dropout: float = 0.0,
    zero_init_residual: bool = True,
    in_channels: int = 3,
) -> PreActResNet3d:
    """Build and initialise a pre-activation (BiT-style) 3D ResNet with the temporal kernels of ``layout``.

    BiT: Kolesnikov et al. 2020, https://arxiv.org/abs/1912.11370 (GroupNorm, https://arxiv.org/abs/1803.08494,
    + Weight Standardization, https://arxiv.org/abs/1903.10520, on ResNet-v2, https://arxiv.org/abs/1603.05027).

    Channels as in BiT-R50x1 for ``width=64``: stem ``width``, stage inner widths ``width * (1, 2, 4, 8)``,
    outputs four times that. ``layout.stem_kernel`` / ``conv_a_kernels`` give the temporal kernels of the stem
    and of ``conv1``; ``stage1_pool`` adds the 2x1x1 temporal max-pool after stage 1 (ceil mode, so T = 1 works).

    Args:
        layout: a bottleneck :class:`~video_gn.models.ResNetLayout` (e.g. ``LAYOUTS["i3d_r50"]``).
        num_classes: number of output logits.
        width: base channel count (64 = R50x1).
        norm: norm factory ``norm(num_features=, eps=)`` (GroupNorm in BiT).
        conv: conv constructor for every conv (``partial(WSConv3d, eps=1e-8)`` in BiT).
        dropout: dropout before the classifier.
        zero_init_residual: pre-activation blocks have no block-final norm, so the GN paper's γ = 0 does not
            apply; with plain convs ``conv3`` starts at zero instead (timm's ``zero_init_last``). With WS convs
            this is not done: a standardized filter cannot be zero (at w = 0 the standardization's gradient is
            1/sqrt(eps), 10^4 for eps = 1e-8).
        in_channels: input channels.

    Returns:
        :class:`PreActResNet3d` mapping (N, in_channels, T, H, W) to (N, num_classes).

    Raises:
        ValueError: ``layout`` has basic blocks.
    """
    if layout.block != "bottleneck":
        raise ValueError(f"create_bit_resnet builds bottleneck networks; got a {layout.block!r} layout.")
    blocks: list[nn.Module] = [
        BiTStem3d(in_channels=in_channels, out_channels=width, kernel=layout.stem_kernel, conv=conv)
    ]
    dim_in = width
    for idx, depth in enumerate(layout.depths):
        dim_inner = width * 2**idx
        dim_out = 4 * dim_inner
        kernels = layout.conv_a_kernels[idx]
        kernels = [kernels] if isinstance(kernels[0], int) else list(kernels)
        stride = (layout.temporal_strides[idx], 1 if idx == 0 else 2, 1 if idx == 0 else 2)
        stage = [
            PreActBottleneck3d(
                dim_in=dim_in if i == 0 else dim_out,
                dim_inner=dim_inner,
                dim_out=dim_out,
                conv_a_kernel=kernels[i % len(kernels)],
                conv_b_kernel=layout.conv_b_kernel,
                stride=stride if i == 0 else (1, 1, 1),
                project=i == 0,
                conv=conv,
                norm=norm,
            )
            for i in range(depth)
        ]
        blocks.append(PreActStage(stage))
        if idx == 0 and layout.stage1_pool:
            blocks.append(nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1), ceil_mode=True))
        dim_in = dim_out
    blocks.append(NormAct(norm(num_features=dim_in, eps=BIT_NORM_EPS)))
    blocks.append(AdaptiveHead(in_features=dim_in, num_classes=num_classes, dropout=dropout))
    model = PreActResNet3d(blocks)
    init_weights(model, zero_init_residual=False)
    if zero_init_residual:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, PreActBottleneck3d) and not isinstance(module.conv3, WSConv3d):
                    module.conv3.weight.zero_()
    return model


BIT_LAYOUTS: dict[str, ResNetLayout] = {
    "bit_c2d_r50x1": LAYOUTS["c2d_r50"],
    "bit_i3d_r50x1": LAYOUTS["i3d_r50"],
}
"""Layouts of the registered BiT models (the temporal kernels of the post-activation model of the same name)."""


register_layouts(
    BIT_LAYOUTS,
    lambda layout, **kw: create_bit_resnet(dataclasses.replace(layout), **kw),
    dropout=0.0,
    doc=" (pre-activation, BiT module names)",
    ws_eps=BIT_WS_EPS,  # build(name) then loads timm's BiT checkpoints as they are
)
