"""3D ResNets (R3D, C2D, I3D, Slow) with pluggable norm and convolution, built from pytorchvideo's blocks.

pytorchvideo's ``create_resnet`` hard-codes ``nn.Conv3d`` (it forwards no conv callable to its stages or its
stem), only knows bottleneck blocks, pools the head with a fixed kernel and zero-inits only BatchNorm. Here we
reuse its stem (``create_res_basic_stem``), its residual wrapper (``create_res_block`` / ``ResBlock``), its
bottleneck (``create_bottleneck_block``), ``ResStage`` and ``Net``, and add only what is missing:

- :func:`create_basic_block` / :class:`BasicBlock` (two 3x3x3 convs, torchvision's R3D block);
- :func:`create_stage`, which passes one ``conv`` callable to every conv of a stage (shortcut included);
- :class:`~video_gn.models.head.AdaptiveHead` (global average pooling, any T, H, W);
- a temporal max-pool after stage 1 in ceil mode, so a clip of T = 1 still works;
- :func:`init_weights`, which zero-inits γ of the last norm of every residual block for every norm kind.

The module tree (``blocks.0`` stem, ``blocks.1..`` stages, ``blocks.-1`` head with ``proj``) is the one of
pytorchvideo's ``Net``, so with ``norm="bn", ws=False`` a pytorchvideo hub checkpoint (``i3d_r50``,
``slow_r50``, ``c2d_r50``) loads with identical keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from video_gn._pytorchvideo import ptv_net, ptv_resnet, ptv_stem
from video_gn.models.head import AdaptiveHead
from video_gn.models.registry import register_layouts
from video_gn.nn import is_norm
from video_gn.nn.norm import _FrozenBatchNorm

Kernel = tuple[int, int, int]


class BasicBlock(nn.Module):
    """Basic residual branch: two convolutions, a norm after each (torchvision R3D ``BasicBlock``).

    ResNet basic block (He et al. 2015, https://arxiv.org/abs/1512.03385) in 3D, as in R3D (Tran et al. 2018,
    https://arxiv.org/abs/1711.11248).

    ::

        Conv3d (conv_a) -> Norm (norm_a) -> Activation (act_a) -> Conv3d (conv_b) -> Norm (norm_b)

    The shortcut, the sum and the final activation come from pytorchvideo's ``ResBlock`` around it.
    ``norm_b`` is the block-final norm whose γ starts at 0.
    """

    def __init__(
        self, *, conv_a: nn.Module, norm_a: nn.Module, act_a: nn.Module, conv_b: nn.Module, norm_b: nn.Module
    ) -> None:
        """Assemble the branch from ready modules (see :func:`create_basic_block`).

        Args:
            conv_a, norm_a, act_a: first conv (carries the block's stride), its norm and activation.
            conv_b, norm_b: second conv and the block-final norm.
        """
        super().__init__()
        self.conv_a = conv_a
        self.norm_a = norm_a
        self.act_a = act_a
        self.conv_b = conv_b
        self.norm_b = norm_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the branch.

        Args:
            x: input of shape (N, C_in, T, H, W).

        Returns:
            Tensor of shape (N, C_out, T', H', W') (strided by ``conv_a``).
        """
        x = self.act_a(self.norm_a(self.conv_a(x)))
        return self.norm_b(self.conv_b(x))


def create_basic_block(
    *,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    conv_a_kernel_size: Kernel = (3, 3, 3),
    conv_a_stride: Kernel = (1, 1, 1),
    conv_a_padding: Kernel = (1, 1, 1),
    conv_a: Callable[..., nn.Module] = nn.Conv3d,
    conv_b_kernel_size: Kernel = (3, 3, 3),
    conv_b_stride: Kernel = (1, 1, 1),
    conv_b_padding: Kernel = (1, 1, 1),
    conv_b_num_groups: int = 1,
    conv_b_dilation: Kernel = (1, 1, 1),
    conv_b: Callable[..., nn.Module] = nn.Conv3d,
    conv_c: Callable[..., nn.Module] | None = None,
    norm: Callable[..., nn.Module] | None = nn.BatchNorm3d,
    norm_eps: float = 1e-5,
    norm_momentum: float = 0.1,
    activation: Callable[[], nn.Module] | None = nn.ReLU,
) -> BasicBlock:
    """Build a :class:`BasicBlock`; same keyword protocol as pytorchvideo's ``create_bottleneck_block``.

    ResNet: https://arxiv.org/abs/1512.03385; R3D: https://arxiv.org/abs/1711.11248.

    It can therefore be passed as ``bottleneck=`` to pytorchvideo's ``create_res_block``. ``conv_c`` is
    accepted for that protocol and ignored (a basic block has two convs).

    Args:
        dim_in: input channels.
        dim_inner: output channels of ``conv_a`` (equal to ``dim_out`` in R3D).
        dim_out: output channels.
        conv_a_kernel_size, conv_a_stride, conv_a_padding: first conv geometry (the block's stride goes here).
        conv_a: constructor of the first conv (``nn.Conv3d``, ``WSConv3d``, ...), called by keyword.
        conv_b_kernel_size, conv_b_stride, conv_b_padding, conv_b_num_groups, conv_b_dilation: second conv.
        conv_b: constructor of the second conv.
        conv_c: ignored.
        norm: norm factory called as ``norm(num_features=, eps=, momentum=)``; None for no norm.
        norm_eps, norm_momentum: forwarded to ``norm``.
        activation: activation constructor; None for none.

    Returns:
        The residual branch, mapping (N, dim_in, T, H, W) to (N, dim_out, T', H', W').
    """
    del conv_c

    def make_norm(channels: int) -> nn.Module:
        return (
            nn.Identity()
            if norm is None
            else norm(num_features=channels, eps=norm_eps, momentum=norm_momentum)
        )

    return BasicBlock(
        conv_a=conv_a(
            in_channels=dim_in,
            out_channels=dim_inner,
            kernel_size=conv_a_kernel_size,
            stride=conv_a_stride,
            padding=conv_a_padding,
            bias=False,
        ),
        norm_a=make_norm(dim_inner),
        act_a=nn.Identity() if activation is None else activation(),
        conv_b=conv_b(
            in_channels=dim_inner,
            out_channels=dim_out,
            kernel_size=conv_b_kernel_size,
            stride=conv_b_stride,
            padding=conv_b_padding,
            groups=conv_b_num_groups,
            dilation=conv_b_dilation,
            bias=False,
        ),
        norm_b=make_norm(dim_out),
    )


def _same_padding(kernel: Sequence[int]) -> Kernel:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]


def create_stage(
    *,
    depth: int,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    block: Literal["basic", "bottleneck"],
    conv_a_kernel_size: Kernel | Sequence[Kernel],
    conv_b_kernel_size: Kernel,
    stride: Kernel,
    conv: Callable[..., nn.Module],
    norm: Callable[..., nn.Module],
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Module:
    """Build a residual stage whose every conv (shortcut included) is made by ``conv``.

    Residual blocks as in ResNet (He et al. 2015, https://arxiv.org/abs/1512.03385), built by pytorchvideo's
    ``create_res_block`` (projection shortcut where the stride or the channel count changes).

    The first block carries the stage's stride: on ``conv_a`` for basic blocks (torchvision R3D), on
    ``conv_b`` for bottlenecks (pytorchvideo: the spatial 1x3x3 conv). The shortcut gets the same stride.

    Args:
        depth: number of residual blocks.
        dim_in: input channels of the stage.
        dim_inner: inner channels of each block.
        dim_out: output channels of every block.
        block: ``"basic"`` (two convs) or ``"bottleneck"`` (1x1 / kxk / 1x1).
        conv_a_kernel_size: kernel of ``conv_a``; a list of kernels is cycled over the blocks (I3D's
            alternating 3x1x1 / 1x1x1), as in pytorchvideo's ``create_res_stage``.
        conv_b_kernel_size: kernel of ``conv_b``.
        stride: (t, h, w) stride of the first block.
        conv: conv constructor, e.g. ``nn.Conv3d`` or ``functools.partial(WSConv3d, eps=1e-6)``.
        norm: norm factory called as ``norm(num_features=, eps=, momentum=)``.
        activation: activation constructor.

    Returns:
        pytorchvideo ``ResStage``: (N, dim_in, T, H, W) -> (N, dim_out, T/st, H/sh, W/sw) (rounded up).
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}.")
    if depth < 1:
        raise ValueError(f"a stage needs depth >= 1 residual blocks, got {depth!r}.")
    kernels = [conv_a_kernel_size] if isinstance(conv_a_kernel_size[0], int) else list(conv_a_kernel_size)
    kernels = (kernels * depth)[:depth]
    builder = create_basic_block if block == "basic" else ptv_resnet.create_bottleneck_block
    blocks = []
    for i, kernel_a in enumerate(kernels):
        first_stride = stride if i == 0 else (1, 1, 1)
        stride_a, stride_b = (first_stride, (1, 1, 1)) if block == "basic" else ((1, 1, 1), first_stride)
        blocks.append(
            ptv_resnet.create_res_block(
                dim_in=dim_in if i == 0 else dim_out,
                dim_inner=dim_inner,
                dim_out=dim_out,
                bottleneck=builder,
                conv_a_kernel_size=kernel_a,
                conv_a_stride=stride_a,
                conv_a_padding=_same_padding(kernel_a),
                conv_a=conv,
                conv_b_kernel_size=conv_b_kernel_size,
                conv_b_stride=stride_b,
                conv_b_padding=_same_padding(conv_b_kernel_size),
                conv_b=conv,
                conv_c=conv,
                conv_skip=conv,
                norm=norm,
                activation_bottleneck=activation,
                activation_block=activation,
            )
        )
    return ptv_resnet.ResStage(res_blocks=nn.ModuleList(blocks))


@dataclass(frozen=True)
class ResNetLayout:
    """Architecture of a 3D ResNet, independent of width, norm and conv type.

    The registered layouts (:data:`LAYOUTS`) follow R3D (https://arxiv.org/abs/1711.11248), C2D (Non-local,
    https://arxiv.org/abs/1711.07971), I3D (https://arxiv.org/abs/1705.07750) and the Slow pathway of SlowFast
    (https://arxiv.org/abs/1812.03982), on ResNet (https://arxiv.org/abs/1512.03385).

    Attributes:
        block: ``"basic"`` or ``"bottleneck"``.
        depths: residual blocks per stage (4 stages).
        stem_kernel: stem conv kernel; its stride is (1, 2, 2) and its padding kernel // 2.
        stem_pool: 1x3x3 max-pool with stride (1, 2, 2) after the stem (pytorchvideo ResNets; not R3D).
        stage1_pool: temporal 2x1x1 max-pool with stride 2 after stage 1 (C2D, I3D), in ceil mode so T = 1 works.
        conv_a_kernels: per stage, the kernel of ``conv_a`` or a list of kernels cycled over the blocks.
        conv_b_kernel: kernel of ``conv_b`` in every stage.
        temporal_strides: per stage temporal stride (spatial strides are 1, 2, 2, 2).
    """

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, int, int, int]
    stem_kernel: Kernel
    stem_pool: bool
    stage1_pool: bool
    conv_a_kernels: tuple[Kernel | tuple[Kernel, ...], ...]
    conv_b_kernel: Kernel
    temporal_strides: tuple[int, int, int, int] = (1, 1, 1, 1)


class VideoResNet(ptv_net.Net):
    """pytorchvideo ``Net`` (stem, stages, head in ``blocks``) plus access to the block-final norms.

    Forward (pytorchvideo's ``Net.forward``, the blocks in order): (N, C, T, H, W) float -> (N, num_classes)
    logits.
    """

    def last_norms(self) -> list[nn.Module]:
        """Return the last norm of every residual block (see :func:`block_final_norms`).

        Returns:
            The block-final norm of every residual block that has one, in module order.
        """
        return block_final_norms(self)


def block_final_norms(model: nn.Module) -> list[nn.Module]:
    """Find the last norm of every residual block, the one whose γ the GN paper initialises to 0.

    GN paper: Wu & He 2018, https://arxiv.org/abs/1803.08494 (following Goyal et al. 2017).

    Works on video_gn models and on pytorchvideo's own ResNets: for every ``ResBlock`` it takes ``norm_c`` of a
    bottleneck branch and ``norm_b`` of a :class:`BasicBlock` branch.

    Args:
        model: any module containing pytorchvideo ``ResBlock`` modules.

    Returns:
        The norms in module order (one per residual block; blocks without a final norm are skipped).
    """
    found = []
    for module in model.modules():
        if isinstance(module, ptv_resnet.ResBlock):
            branch = module.branch2
            final = getattr(branch, "norm_b" if isinstance(branch, BasicBlock) else "norm_c", None)
            if final is not None:
                found.append(final)
    return found


@torch.no_grad()
def init_weights(model: nn.Module, *, zero_init_residual: bool = True, fc_std: float = 0.01) -> nn.Module:
    """Initialise a ResNet: convs Kaiming-normal (fan_out, ReLU), norms γ=1 β=0, linear layers N(0, fc_std²).

    Kaiming init: He et al. 2015, https://arxiv.org/abs/1502.01852. Conv and linear biases are set to 0.

    With ``zero_init_residual``, γ of the last norm of every residual block is set to 0 for every trainable norm
    kind (BN, SyncBN, GN, LN, IN), so each block starts as the identity (Goyal et al. 2017; Wu & He 2018,
    https://arxiv.org/abs/1803.08494). pytorchvideo's own init only does this for ``_NormBase`` layers, and
    silently skips GroupNorm. Frozen BN is left at γ = 1: its γ is a fixed buffer, and a frozen zero would cut
    every residual branch off from the gradient for good (a checkpoint loaded later overwrites it anyway).

    Args:
        model: the network, modified in place.
        zero_init_residual: zero γ of the block-final norms.
        fc_std: standard deviation of the linear layers' weights.

    Returns:
        ``model``.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, fc_std)
            if module.bias is not None:
                module.bias.zero_()
        elif is_norm(module):
            if getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    if zero_init_residual:
        for norm in block_final_norms(model):
            if getattr(norm, "weight", None) is not None and not isinstance(norm, _FrozenBatchNorm):
                norm.weight.zero_()
    return model


def create_video_resnet(
    layout: ResNetLayout,
    *,
    num_classes: int,
    width: int,
    norm: Callable[..., nn.Module],
    conv: Callable[..., nn.Module],
    dropout: float = 0.5,
    zero_init_residual: bool = True,
    in_channels: int = 3,
) -> VideoResNet:
    """Build and initialise a 3D ResNet from a :class:`ResNetLayout`.

    ResNet (https://arxiv.org/abs/1512.03385) in 3D; see :class:`ResNetLayout` for the papers of the layouts.
    Module tree: ``blocks.0`` stem (conv, norm, ReLU, optional max-pool), ``blocks.1..`` the four stages (and the
    stage-1 temporal pool where the layout has it), ``blocks.-1`` the :class:`~video_gn.models.head.AdaptiveHead`.

    Channels: stem ``width``; stage outputs ``width * (1, 2, 4, 8)`` for basic blocks and
    ``width * (4, 8, 16, 32)`` for bottlenecks (inner width ``width * (1, 2, 4, 8)``).

    Args:
        layout: the architecture.
        num_classes: number of output logits.
        width: base channel count (64 = published models).
        norm: norm factory called as ``norm(num_features=, eps=, momentum=)``.
        conv: conv constructor used for every conv (stem, blocks, shortcuts).
        dropout: dropout before the classifier.
        zero_init_residual: zero γ of the last norm of every residual block.
        in_channels: input channels (3 for RGB).

    Returns:
        :class:`VideoResNet` mapping (N, in_channels, T, H, W), T >= 1, H, W >= 32, to (N, num_classes).
    """
    blocks: list[nn.Module] = [
        ptv_stem.create_res_basic_stem(
            in_channels=in_channels,
            out_channels=width,
            conv_kernel_size=layout.stem_kernel,
            conv_stride=(1, 2, 2),
            conv_padding=_same_padding(layout.stem_kernel),
            conv=conv,
            pool=nn.MaxPool3d if layout.stem_pool else None,
            pool_kernel_size=(1, 3, 3),
            pool_stride=(1, 2, 2),
            pool_padding=(0, 1, 1),
            norm=norm,
            activation=nn.ReLU,
        )
    ]
    expansion = 1 if layout.block == "basic" else 4
    dim_in = width
    for idx, depth in enumerate(layout.depths):
        dim_inner = width * 2**idx
        dim_out = dim_inner * expansion
        blocks.append(
            create_stage(
                depth=depth,
                dim_in=dim_in,
                dim_inner=dim_inner,
                dim_out=dim_out,
                block=layout.block,
                conv_a_kernel_size=layout.conv_a_kernels[idx],
                conv_b_kernel_size=layout.conv_b_kernel,
                stride=(layout.temporal_strides[idx], 1 if idx == 0 else 2, 1 if idx == 0 else 2),
                conv=conv,
                norm=norm,
            )
        )
        if idx == 0 and layout.stage1_pool:
            blocks.append(nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1), ceil_mode=True))
        dim_in = dim_out
    blocks.append(AdaptiveHead(in_features=dim_in, num_classes=num_classes, dropout=dropout))
    model = VideoResNet(blocks=nn.ModuleList(blocks))
    return init_weights(model, zero_init_residual=zero_init_residual)


_R3D = dict(
    block="basic",
    stem_kernel=(3, 7, 7),
    stem_pool=False,
    stage1_pool=False,
    conv_a_kernels=((3, 3, 3),) * 4,
    conv_b_kernel=(3, 3, 3),
    temporal_strides=(1, 2, 2, 2),
)
_C2D = dict(
    block="bottleneck",
    stem_kernel=(1, 7, 7),
    stem_pool=True,
    stage1_pool=True,
    conv_a_kernels=((1, 1, 1),) * 4,
    conv_b_kernel=(1, 3, 3),
)
_I3D = dict(
    block="bottleneck",
    stem_kernel=(5, 7, 7),
    stem_pool=True,
    stage1_pool=True,
    conv_a_kernels=((3, 1, 1), ((3, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 1, 1)), ((1, 1, 1), (3, 1, 1))),
    conv_b_kernel=(1, 3, 3),
)
_SLOW = dict(
    block="bottleneck",
    stem_kernel=(1, 7, 7),
    stem_pool=True,
    stage1_pool=False,
    conv_a_kernels=((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)),
    conv_b_kernel=(1, 3, 3),
)
# Bottleneck R3D (Hara et al. 2018): 1x1x1 / 3x3x3 / 1x1x1, R3D stem and strides.
_R3D_BOTTLENECK = dict(_R3D, block="bottleneck", conv_a_kernels=((1, 1, 1),) * 4)

LAYOUTS: dict[str, ResNetLayout] = {
    "r3d_18": ResNetLayout(depths=(2, 2, 2, 2), **_R3D),
    "r3d_34": ResNetLayout(depths=(3, 4, 6, 3), **_R3D),
    "r3d_50": ResNetLayout(depths=(3, 4, 6, 3), **_R3D_BOTTLENECK),
    "c2d_r50": ResNetLayout(depths=(3, 4, 6, 3), **_C2D),
    "c2d_r101": ResNetLayout(depths=(3, 4, 23, 3), **_C2D),
    "i3d_r50": ResNetLayout(depths=(3, 4, 6, 3), **_I3D),
    "i3d_r101": ResNetLayout(depths=(3, 4, 23, 3), **_I3D),
    "slow_r50": ResNetLayout(depths=(3, 4, 6, 3), **_SLOW),
    "slow_r101": ResNetLayout(depths=(3, 4, 23, 3), **_SLOW),
}
"""Layout of every registered model, by registry name.

``r3d_*``: R3D (https://arxiv.org/abs/1711.11248; ``r3d_50`` with bottleneck blocks, as Hara et al. 2018);
``c2d_*``: the Non-local paper's C2D baseline (https://arxiv.org/abs/1711.07971); ``i3d_*``: I3D
(https://arxiv.org/abs/1705.07750) in the Non-local paper's ResNet form; ``slow_*``: the Slow pathway of SlowFast
(https://arxiv.org/abs/1812.03982).
"""


register_layouts(LAYOUTS, create_video_resnet, dropout=0.5)
