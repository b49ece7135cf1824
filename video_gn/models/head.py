"""Classification head that pools adaptively, so a model accepts any clip length and frame size.

pytorchvideo's ``create_res_basic_head`` uses a fixed ``AvgPool3d`` kernel (e.g. ``(4, 7, 7)``), which ties a
model to one input size (8x224x224 for ``i3d_r50``). Global average pooling over (T, H, W) gives the same
result at that size and works for every other size.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaptiveHead(nn.Module):
    """Global average pool over (T, H, W), dropout, linear classifier.

    Replaces the fixed-kernel ``AvgPool3d`` of pytorchvideo's head, so any clip length and frame size work.

    ::

        features (N, C, T, H, W) -> AdaptiveAvgPool3d(1) -> flatten -> Dropout -> Linear (proj) -> (N, classes)

    The linear layer is called ``proj`` like pytorchvideo's ``ResNetBasicHead``, so checkpoints of its ResNets
    load with unchanged keys.
    """

    def __init__(self, *, in_features: int, num_classes: int, dropout: float = 0.5) -> None:
        """Build the head.

        Args:
            in_features: channel count C of the incoming feature map.
            num_classes: number of output logits.
            dropout: dropout probability applied to the pooled features (0 disables it).

        Raises:
            ValueError: ``dropout`` is not in [0, 1).
        """
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a feature map.

        Args:
            x: features of shape (N, C, T, H, W), any T, H, W >= 1.

        Returns:
            Logits of shape (N, num_classes).
        """
        x = self.pool(x).flatten(1)  # (N, C)
        return self.proj(self.dropout(x))  # (N, num_classes)
