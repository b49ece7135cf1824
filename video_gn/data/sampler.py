"""Explicit sampler objects: which frames make a clip (temporal) and which videos a rank reads (DDP).

Temporal windows are chosen in frames at the native frame rate, as papers state them (T x s). pytorchvideo's
clip samplers work in seconds and keep per-video iteration state, which does not fit a map-style dataset
with frame-exact windows, so the two small window samplers here replace them.

:class:`ShardedVideoSampler` is the one place where DDP sharding and ``set_epoch`` live.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from video_gn.data.decode import VideoInfo, clip_indices

__all__ = ["RandomWindow", "UniformWindows", "ShardedVideoSampler", "window_span"]


def window_span(num_frames: int, sampling_rate: int) -> int:
    """Frames covered by a T x s window: ``(T - 1) * s + 1``."""
    return (num_frames - 1) * sampling_rate + 1


def _check_window(num_frames: int, sampling_rate: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if sampling_rate < 1:
        raise ValueError(f"sampling_rate must be >= 1, got {sampling_rate}")


class RandomWindow:
    """One window of T frames every s frames at a uniformly random start (training).

    A video shorter than the window starts at frame 0 and loops (see :func:`clip_indices`).

    Args:
        num_frames: T.
        sampling_rate: s.
    """

    def __init__(self, num_frames: int, sampling_rate: int) -> None:
        _check_window(num_frames, sampling_rate)
        self.num_frames, self.sampling_rate = num_frames, sampling_rate

    def __call__(self, info: VideoInfo, generator: torch.Generator | None = None) -> np.ndarray:
        """Frame indices (T,) of a random window in a video described by ``info``."""
        slack = info.num_frames - window_span(self.num_frames, self.sampling_rate)
        start = int(torch.randint(0, slack + 1, (), generator=generator).item()) if slack > 0 else 0
        return clip_indices(start, self.num_frames, self.sampling_rate, info.num_frames)


class UniformWindows:
    """``num_clips`` windows whose starts are spread evenly from the first to the last possible start.

    One clip is centred. A video shorter than the window gives windows starting at 0 that loop.

    Args:
        num_frames: T.
        sampling_rate: s.
        num_clips: number of windows K.
    """

    def __init__(self, num_frames: int, sampling_rate: int, num_clips: int) -> None:
        _check_window(num_frames, sampling_rate)
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_frames, self.sampling_rate, self.num_clips = num_frames, sampling_rate, num_clips

    def start(self, clip_index: int, total_frames: int) -> int:
        """First frame of window ``clip_index`` in a video of ``total_frames`` frames."""
        slack = max(0, total_frames - window_span(self.num_frames, self.sampling_rate))
        if self.num_clips == 1:
            return slack // 2
        return int(round(slack * clip_index / (self.num_clips - 1)))

    def __call__(self, info: VideoInfo, clip_index: int) -> np.ndarray:
        """Frame indices (T,) of window ``clip_index`` (0 <= clip_index < num_clips)."""
        if not 0 <= clip_index < self.num_clips:
            raise ValueError(f"clip_index must be in [0, {self.num_clips}), got {clip_index}")
        start = self.start(clip_index, info.num_frames)
        return clip_indices(start, self.num_frames, self.sampling_rate, info.num_frames)


class ShardedVideoSampler(Sampler[int]):
    """Dataset indices for one rank: a disjoint shard of the videos, with all views of each video.

    The dataset index of view ``v`` of video ``i`` is ``i * views_per_video + v``.

    - ``shuffle=True`` (training): every epoch the videos are permuted with a generator seeded by
      ``seed + epoch`` (identical on every rank), the permutation is cut to a multiple of
      ``num_replicas`` (each rank gets the same number of videos, so DDP steps stay in lockstep; the
      few videos left out change every epoch), and rank ``r`` takes positions ``r, r + R, ...``.
    - ``shuffle=False`` (validation/test): rank ``r`` takes videos ``r, r + R, ...`` in order with all
      their views, so every video is seen exactly once across ranks, with no padding duplicates (shard
      sizes may then differ by one video).

    Call :meth:`set_epoch` before each epoch (Lightning does so for a DataLoader's ``sampler``). With
    ``fold_epoch`` (training in the data module) each index also carries the epoch, ``epoch * len(dataset) +
    index``, so that a training item can seed its random draws by epoch inside worker processes that
    outlive epochs (see :class:`~video_gn.data.VideoClipDataset`).

    Args:
        num_videos: videos in the split.
        views_per_video: dataset items per video (1 for training; num_clips * num_crops for eval).
        shuffle: reshuffle every epoch (training) or keep order (eval).
        seed: base seed of the shuffle (same on every rank).
        num_replicas: world size R.
        rank: this process's global rank.
        fold_epoch: add ``epoch * num_videos * views_per_video`` to every index.
    """

    def __init__(
        self,
        num_videos: int,
        *,
        views_per_video: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        fold_epoch: bool = False,
    ) -> None:
        if num_videos < 0:
            raise ValueError(f"num_videos must be >= 0, got {num_videos}")
        if views_per_video < 1:
            raise ValueError(f"views_per_video must be >= 1, got {views_per_video}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}"
            )
        self.num_videos, self.views_per_video = num_videos, views_per_video
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.fold_epoch = fold_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation :meth:`__iter__` yields (training)."""
        self.epoch = int(epoch)

    def videos(self) -> list[int]:
        """Video indices of this rank's shard for the current epoch, in iteration order."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_videos, generator=g).tolist()
            order = order[: len(order) - len(order) % self.num_replicas]
        else:
            order = list(range(self.num_videos))
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        v = self.views_per_video
        offset = self.epoch * self.num_videos * v if self.fold_epoch else 0
        for video in self.videos():
            yield from range(offset + video * v, offset + video * v + v)

    def num_shard_videos(self) -> int:
        """Number of videos in this rank's shard."""
        if self.shuffle:
            return self.num_videos // self.num_replicas
        return len(range(self.rank, self.num_videos, self.num_replicas))

    def __len__(self) -> int:
        return self.num_shard_videos() * self.views_per_video
