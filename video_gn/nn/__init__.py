"""Layers for small-batch video training: Weight-Standardized convs, GroupNorm, frozen BN, norm factory, converters.

Example::

    from video_gn import nn as vnn

    conv = vnn.WSConv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    norm = vnn.make_norm("gn", 64)                       # GroupNorm, 32 groups
    model = vnn.convert_norm(torchvision_model, "gn")    # every BatchNorm -> GroupNorm, γ/β kept
    model = vnn.use_weight_standardization(model)        # every Conv -> WS conv, weights kept
    model = vnn.fold_weight_standardization(model.eval())  # plain convs again, for inference
"""

from video_gn.nn.conv import SafeConv3d, cpu_bf16_conv3d_unsafe
from video_gn.nn.convert import (
    convert_norm,
    fold_weight_standardization,
    use_safe_conv3d,
    use_weight_standardization,
)
from video_gn.nn.norm import (
    DEFAULT_NUM_GROUPS,
    NORM_KINDS,
    FrozenBatchNorm1d,
    FrozenBatchNorm2d,
    FrozenBatchNorm3d,
    GroupNorm,
    is_norm,
    make_norm,
    norm_layer,
    resolve_num_groups,
)
from video_gn.nn.ws import (
    DEFAULT_WS_EPS,
    WSConv1d,
    WSConv2d,
    WSConv3d,
    conv_layer,
    standardize_weight,
    ws_conv,
)

__all__ = [
    "DEFAULT_NUM_GROUPS",
    "DEFAULT_WS_EPS",
    "NORM_KINDS",
    "FrozenBatchNorm1d",
    "FrozenBatchNorm2d",
    "FrozenBatchNorm3d",
    "GroupNorm",
    "SafeConv3d",
    "WSConv1d",
    "WSConv2d",
    "WSConv3d",
    "conv_layer",
    "convert_norm",
    "cpu_bf16_conv3d_unsafe",
    "fold_weight_standardization",
    "is_norm",
    "make_norm",
    "norm_layer",
    "resolve_num_groups",
    "standardize_weight",
    "use_safe_conv3d",
    "use_weight_standardization",
    "ws_conv",
]
