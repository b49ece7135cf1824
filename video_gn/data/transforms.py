"""Clip transforms on ``torchvision.transforms.v2``: uint8 until the last step, then float and normalised.

Train: random short-side scale in [min, max] -> random crop -> optional horizontal flip -> normalise.
Eval: short-side scale -> centre crop, or one of three crops spread along the long side (``num_crops=3``,
as in SlowFast's multi-view testing) -> normalise.

Every transform takes a uint8 clip (T, C, H, W) and the same spatial parameters apply to all T frames.
The final :class:`ToNormalizedVideo` returns float32 (C, T, H, W), the layout 3D CNNs expect.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "RandomShortSideScale",
    "ShortSideScale",
    "SpatialCrop",
    "ToNormalizedVideo",
    "train_transform",
    "eval_transform",
]

# pytorchvideo's Kinetics statistics (RGB, [0, 1] scale).
KINETICS_MEAN: tuple[float, float, float] = (0.45, 0.45, 0.45)
KINETICS_STD: tuple[float, float, float] = (0.225, 0.225, 0.225)


class ShortSideScale(nn.Module):
    """Resize so the short side equals ``size``, keeping the aspect ratio (bilinear, antialiased).

    Args:
        size: target short side in pixels.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"short side must be positive, got {size}")
        self.size = int(size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Resize a clip (T, C, H, W) -> (T, C, H', W') with min(H', W') = size."""
        return _resize_short(video, self.size)


class RandomShortSideScale(nn.Module):
    """Resize so the short side is a random integer in [min_size, max_size] (one draw per clip).

    Args:
        min_size: smallest short side.
        max_size: largest short side (inclusive).
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got ({min_size}, {max_size})")
        self.min_size, self.max_size = int(min_size), int(max_size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Resize a clip (T, C, H, W) -> (T, C, H', W') with a random short side."""
        size = int(torch.randint(self.min_size, self.max_size + 1, ()).item())
        return _resize_short(video, size)


def _resize_short(video: torch.Tensor, size: int) -> torch.Tensor:
    h, w = video.shape[-2:]
    if min(h, w) == size:
        return video
    if h <= w:
        new_h, new_w = size, max(1, int(round(w * size / h)))
    else:
        new_h, new_w = max(1, int(round(h * size / w))), size
    return F.resize(video, [new_h, new_w], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


class SpatialCrop(nn.Module):
    """Deterministic crop of ``size`` x ``size``: centred, or at position 0/1/2 along the long side.

    With ``num_crops=3`` (SlowFast's 3-crop testing), crop 0 touches the left (or top) edge, crop 1 is
    centred and crop 2 touches the right (or bottom) edge; the short side is centred.

    Args:
        size: crop side in pixels (clips smaller than this are padded with zeros first).
        index: crop position, 0 <= index < num_crops.
        num_crops: 1 (centre) or 3.
    """

    def __init__(self, size: int, index: int = 0, num_crops: int = 1) -> None:
        super().__init__()
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if not 0 <= index < num_crops:
            raise ValueError(f"crop index must be in [0, {num_crops}), got {index}")
        self.size, self.index, self.num_crops = int(size), int(index), int(num_crops)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Crop a clip (T, C, H, W) -> (T, C, size, size)."""
        video = _pad_to(video, self.size)
        h, w = video.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        if self.num_crops == 3:
            pos = self.index  # 0, 1, 2 along the long side
            if w >= h:
                left = [0, (w - self.size) // 2, w - self.size][pos]
            else:
                top = [0, (h - self.size) // 2, h - self.size][pos]
        return video[..., top : top + self.size, left : left + self.size]


def _pad_to(video: torch.Tensor, size: int) -> torch.Tensor:
    h, w = video.shape[-2:]
    if h >= size and w >= size:
        return video
    ph, pw = max(0, size - h), max(0, size - w)
    return F.pad(video, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2])


class ToNormalizedVideo(nn.Module):
    """uint8 (T, C, H, W) -> float32 (C, T, H, W), scaled to [0, 1] then ``(x - mean) / std``.

    Args:
        mean: per-channel mean (3 values, [0, 1] scale).
        std: per-channel standard deviation (3 values).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {list(mean)} and {list(std)}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {list(std)}")
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Normalise a uint8 clip (T, C, H, W) into float32 (C, T, H, W)."""
        video = torch.as_tensor(video)
        if video.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 clip (T, C, H, W), got dtype {video.dtype}")
        t, c, h, w = video.shape
        # One pass converts and transposes, one fused multiply-add normalises in place:
        # (x / 255 - mean) / std == x * (1 / (255 std)) + (-mean / std).
        out = torch.empty((c, t, h, w), dtype=torch.float32)
        out.copy_(video.permute(1, 0, 2, 3))
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], dtype=torch.float32).view(c, 1, 1, 1)
        bias = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], dtype=torch.float32).view(
            c, 1, 1, 1
        )
        return out.mul_(scale).add_(bias)


def train_transform(
    *,
    short_side: tuple[int, int] = (256, 320),
    crop_size: int = 224,
    hflip: bool = True,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> v2.Compose:
    """Training augmentation: random short-side scale, random crop, optional flip, normalise.

    Args:
        short_side: (min, max) of the random short side.
        crop_size: side of the square random crop.
        hflip: flip horizontally with probability 0.5.
        mean: per-channel mean.
        std: per-channel std.

    Returns:
        A transform mapping uint8 (T, C, H, W) -> float32 (C, T, crop_size, crop_size).
    """
    steps: list[nn.Module] = [
        _AsVideo(),
        RandomShortSideScale(*short_side),
        v2.RandomCrop(crop_size, pad_if_needed=True),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps.append(ToNormalizedVideo(mean, std))
    return v2.Compose(steps)


def eval_transform(
    *,
    short_side: int = 256,
    crop_size: int = 224,
    crop_index: int = 0,
    num_crops: int = 1,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> v2.Compose:
    """Evaluation transform: short-side scale, deterministic crop, normalise.

    Args:
        short_side: short side after scaling.
        crop_size: side of the square crop.
        crop_index: which of the ``num_crops`` crops.
        num_crops: 1 (centre crop) or 3 (left/centre/right along the long side).
        mean: per-channel mean.
        std: per-channel std.

    Returns:
        A transform mapping uint8 (T, C, H, W) -> float32 (C, T, crop_size, crop_size).
    """
    return v2.Compose(
        [
            _AsVideo(),
            ShortSideScale(short_side),
            SpatialCrop(crop_size, crop_index, num_crops),
            ToNormalizedVideo(mean, std),
        ]
    )


class _AsVideo(nn.Module):
    # Wrap as tv_tensors.Video so v2's random transforms treat dim -4 as time and share parameters.
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return tv_tensors.Video(video)
