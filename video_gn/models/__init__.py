"""Registry of 3D ResNets with pluggable normalisation (BN, GN, GN + WS, ...) and an adaptive head.

Example::

    import torch

    from video_gn.models import build, load_pretrained, names

    model = build("r3d_18", num_classes=10, norm="gn", ws=True, width=16)
    logits = model(torch.randn(2, 3, 8, 112, 112))  # (2, 10)

    # 2D ImageNet ResNet -> 3D (inflation; see video_gn.models.inflate):
    model = build("i3d_r50", num_classes=400, norm="bn", ws=False)
    report = load_pretrained(model, "resnet50.pth")  # torchvision/timm resnet50, or BiT into bit_i3d_r50x1
"""

from video_gn.models.bit import PreActResNet3d, create_bit_resnet  # registers bit_c2d_r50x1, bit_i3d_r50x1
from video_gn.models.head import AdaptiveHead
from video_gn.models.inflate import InflationReport, inflate
from video_gn.models.pretrained import load_pretrained
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
    "InflationReport",
    "PreActResNet3d",
    "BasicBlock",
    "ResNetLayout",
    "VideoResNet",
    "block_final_norms",
    "build",
    "create_bit_resnet",
    "create_basic_block",
    "create_stage",
    "create_video_resnet",
    "inflate",
    "init_weights",
    "load_pretrained",
    "names",
    "register",
]
