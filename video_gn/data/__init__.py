"""Video data: Kinetics-style datasets, frame-exact PyAV decoding, clip transforms and DDP sampling.

Public API: :class:`KineticsDataModule`, :func:`load_video_views`, :func:`decode_frames`,
:func:`probe_video`, the transforms and samplers. The synthetic motion dataset lives in
``video_gn.data.synthetic`` (imported on demand).
"""

from video_gn.data.datamodule import ClipDataLoader, FailureTracker, KineticsDataModule
from video_gn.data.dataset import VideoClipDataset, collate_clips, load_video_views
from video_gn.data.decode import DecodeError, VideoInfo, clip_indices, decode_frames, probe_video
from video_gn.data.layout import find_classes, list_split, write_classes
from video_gn.data.sampler import RandomWindow, ShardedVideoSampler, UniformWindows
from video_gn.data.transforms import KINETICS_MEAN, KINETICS_STD, eval_transform, train_transform

__all__ = [
    "KineticsDataModule",
    "ClipDataLoader",
    "FailureTracker",
    "VideoClipDataset",
    "collate_clips",
    "load_video_views",
    "DecodeError",
    "VideoInfo",
    "clip_indices",
    "decode_frames",
    "probe_video",
    "find_classes",
    "list_split",
    "write_classes",
    "RandomWindow",
    "UniformWindows",
    "ShardedVideoSampler",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "train_transform",
    "eval_transform",
]
