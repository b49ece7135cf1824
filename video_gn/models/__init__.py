"""Registry of 3D ResNets with pluggable normalisation (BN, GN, GN + WS, ...) and an adaptive head.

Example::

    from video_gn.models import build, names

    model = build("r3d_18", num_classes=10, norm="gn", ws=True, width=16)
    logits = model(torch.randn(2, 3, 8, 112, 112))  # (2, 10)
"""

from video_gn.models.head import AdaptiveHead
from video_gn.models.registry import build, names, register
from video_gn.models.resnet3d import (
    LAYOUTS,
    BasicBlock,
    ResNetLayout,
    VideoResNet,
    block_final_norms,
    create_basic_block,
    create_stage,
    create_video_resnet,
    init_weights,
)

__all__ = [
    "LAYOUTS",
    "AdaptiveHead",
    "BasicBlock",
    "ResNetLayout",
    "VideoResNet",
    "block_final_norms",
    "build",
    "create_basic_block",
    "create_stage",
    "create_video_resnet",
    "init_weights",
    "names",
    "register",
]
