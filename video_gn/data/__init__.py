"""Video data: Kinetics-style datasets, frame-exact PyAV decoding, clip transforms and DDP sampling.

Public API: :class:`KineticsDataModule`, :func:`load_video_views`, :func:`decode_frames`,
:func:`probe_video`, the transforms and samplers. The synthetic motion dataset lives in
``video_gn.data.synthetic`` (imported on demand).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded on first use: the data scripts (prep, download, synthetic) import this package and
# must not pay for Lightning and torchvision at start-up, nor must every DataLoader worker.
_EXPORTS = {
    "ClipDataLoader": "datamodule",
    "FailureTracker": "datamodule",
    "KineticsDataModule": "datamodule",
    "VideoClipDataset": "dataset",
    "collate_clips": "dataset",
    "load_video_views": "dataset",
    "DecodeError": "decode",
    "VideoInfo": "decode",
    "clip_indices": "decode",
    "decode_frames": "decode",
    "probe_video": "decode",
    "find_classes": "layout",
    "list_split": "layout",
    "write_classes": "layout",
    "RandomWindow": "sampler",
    "ShardedVideoSampler": "sampler",
    "UniformWindows": "sampler",
    "KINETICS_MEAN": "transforms",
    "KINETICS_STD": "transforms",
    "eval_transform": "transforms",
    "train_transform": "transforms",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'video_gn.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"video_gn.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from video_gn.data.datamodule import ClipDataLoader, FailureTracker, KineticsDataModule  # noqa: F401
    from video_gn.data.dataset import VideoClipDataset, collate_clips, load_video_views  # noqa: F401
    from video_gn.data.decode import DecodeError, VideoInfo, clip_indices, decode_frames, probe_video  # noqa: F401
    from video_gn.data.layout import find_classes, list_split, write_classes  # noqa: F401
    from video_gn.data.sampler import RandomWindow, ShardedVideoSampler, UniformWindows  # noqa: F401
    from video_gn.data.transforms import KINETICS_MEAN, KINETICS_STD, eval_transform, train_transform  # noqa: F401
