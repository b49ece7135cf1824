"""Map-style clip dataset (one item per training video, or per evaluation view) and its collate function.

A map-style dataset rather than pytorchvideo's IterableDataset: its length is known, and DDP sharding is a
plain index sampler (:class:`~video_gn.data.sampler.ShardedVideoSampler`).

Items are dicts:

- ``video``: float32 (C, T, H, W), normalised;
- ``label``, ``video_index``, ``clip_index``, ``crop_index``: ints (clip/crop are 0 in training);
- ``failed``: tuple of ``(path, reason)`` for the files that failed to decode while producing this item
  (``reason``: the decoder's error, one line, without the path).

Batches (:func:`collate_clips`) also carry ``failed_video_index``: the video indices of the dropped evaluation
views, so that a video with any unreadable view can be left out of video-level metrics (its other views may be
readable, e.g. in a truncated file, and sit in other batches).

Bad files: in training a file that fails to decode is replaced by another video drawn uniformly from the
*whole* dataset (so batches stay full; under DDP the replacement may belong to another rank's shard this
epoch, which only repeats one video) and recorded in ``failed``; in evaluation the view becomes a
*sentinel* item (``video`` None) that :func:`collate_clips` drops, so a video never counts twice; the
loader collects the failed videos' indices for the epoch and :class:`~video_gn.module.VideoClassifier` leaves
those videos out of its video-level metrics, so a partly readable video is skipped, not scored on some views.
Warnings, counting and the failure threshold happen in the main process
(:class:`~video_gn.data.datamodule.ClipDataLoader`), so a file is reported once however many workers saw it.

Short videos: a window longer than the video starts at frame 0 and loops, i.e. frame indices past the
last frame wrap around modulo the video's length (:func:`~video_gn.data.decode.clip_indices`): a 10-frame
video read as 8 x 2 gives frames 0 2 4 6 8 0 2 4. Nothing is padded with black frames and nothing fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from video_gn._pytorchvideo import ptv_labeled_video_paths
from video_gn.data.decode import DecodeError, decode_frames
from video_gn.data.sampler import RandomWindow, UniformWindows
from video_gn.data.transforms import KINETICS_MEAN, KINETICS_STD, eval_transform

__all__ = ["VideoClipDataset", "collate_clips", "failure_reason", "load_video_views"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def item_seed(seed: int, epoch: int, video: int) -> int:
    """The seed of one training item's random draws: a hash of (seed, epoch, video), 63 bits."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{video}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class VideoClipDataset(Dataset):
    """Clips of labelled videos: one random window per video (train) or every view (eval).

    In eval mode item ``i`` is view ``i % V`` of video ``i // V``, with ``V = num_clips * num_crops``;
    view ``v`` is clip ``v // num_crops`` (a :class:`UniformWindows` window) and crop ``v % num_crops``.

    In training, item ``i`` is video ``i % num_videos`` in epoch ``i // num_videos`` (the data module's
    sampler folds the epoch into the index: :class:`~video_gn.data.sampler.ShardedVideoSampler` with
    ``fold_epoch``), and its random draws (window, scale, crop, flip, a replacement for an unreadable file)
    come from a generator seeded by (``seed``, epoch, video) alone: the same clips whatever the number of
    workers, whether they persist across epochs, and after a resume.

    Args:
        videos: pytorchvideo LabeledVideoPaths (or any sequence of ``(path, label)``).
        train: training mode (random window, ``transform``) or eval mode (``eval_transforms``).
        num_frames: T.
        sampling_rate: s.
        transform: training transform, uint8 (T, C, H, W) -> float (C, T, H, W).
        eval_transforms: one transform per crop index (eval mode).
        num_clips: windows per video in eval mode.
        max_retries: training only: how many other random videos to try after a failure.
        thread_type: PyAV decoder threading (see :func:`~video_gn.data.decode.decode_frames`).
        thread_count: decoder threads per clip (0: FFmpeg chooses).
        seed: training only: base seed of every item's random draws.
    """

    def __init__(
        self,
        videos: ptv_labeled_video_paths.LabeledVideoPaths | Sequence[tuple[str, int]],
        *,
        train: bool,
        num_frames: int,
        sampling_rate: int,
        transform: Transform | None = None,
        eval_transforms: Sequence[Transform] = (),
        num_clips: int = 1,
        max_retries: int = 10,
        thread_type: str | None = None,
        thread_count: int = 1,
        seed: int = 0,
    ) -> None:
        if isinstance(videos, ptv_labeled_video_paths.LabeledVideoPaths):
            pairs = [(p, int(meta["label"])) for p, meta in (videos[i] for i in range(len(videos)))]
        else:
            pairs = [(str(p), int(label)) for p, label in videos]
        # Keep paths in one numpy string array, not a list of Python objects: forked workers would touch
        # every object's refcount and copy the pages (the "copy-on-read" leak of large file lists).
        self.paths = np.array([p for p, _ in pairs], dtype=np.str_)
        self.labels = np.array([label for _, label in pairs], dtype=np.int64)
        self.train = train
        if train and transform is None:
            raise ValueError("train=True needs a transform")
        if not train and not eval_transforms:
            raise ValueError("train=False needs eval_transforms (one per crop)")
        self.transform = transform
        self.eval_transforms = list(eval_transforms)
        self.num_crops = len(self.eval_transforms) if not train else 1
        self.num_clips = num_clips if not train else 1
        self.random_window = RandomWindow(num_frames, sampling_rate)
        self.uniform_windows = UniformWindows(num_frames, sampling_rate, max(1, num_clips))
        self.max_retries = max_retries
        self.thread_type, self.thread_count = thread_type, thread_count
        self.seed = int(seed)
        self._cache_key: tuple[int, int] | None = None  # last decoded eval clip, reused by its other crops
        self._cache_frames: torch.Tensor | None = None
        self._cache_error = ""  # why the cached clip failed to decode

    @property
    def num_videos(self) -> int:
        """Number of videos."""
        return len(self.paths)

    @property
    def views_per_video(self) -> int:
        """Items per video: 1 in training, num_clips * num_crops in eval."""
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return self.num_videos * self.views_per_video

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.train and index >= 0 and self.num_videos:
            epoch, video = divmod(index, self.num_videos)
            # Seeded per (seed, epoch, video), restoring the caller's stream after: with num_workers=0 this
            # runs in the training process, whose own random stream (dropout ...) must not move.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed(self.seed, epoch, video))
                return self._train_item(video)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self._eval_item(index)

    def _train_item(self, video: int) -> dict[str, Any]:
        failed: list[tuple[str, str]] = []
        for _ in range(self.max_retries + 1):
            path = str(self.paths[video])
            try:
                frames, _ = decode_frames(
                    path, self.random_window, thread_type=self.thread_type, thread_count=self.thread_count
                )
            except DecodeError as exc:
                failed.append((path, failure_reason(exc, path)))
                # Replacement from the whole dataset, not this rank's shard: simple, and a bad file is rare.
                video = int(torch.randint(0, self.num_videos, ()).item())
                continue
            clip = self.transform(frames.permute(0, 3, 1, 2))  # (T, C, H, W) uint8 -> (C, T, H, W)
            return _item(clip, int(self.labels[video]), video, 0, 0, failed)
        return _item(None, -1, video, 0, 0, failed)  # every retry failed: sentinel, dropped by collate

    def _eval_item(self, index: int) -> dict[str, Any]:
        video, view = divmod(index, self.views_per_video)
        clip_index, crop_index = divmod(view, self.num_crops)
        path = str(self.paths[video])
        key = (video, clip_index)
        if self._cache_key != key:
            self._cache_key, self._cache_frames, self._cache_error = key, None, ""
            try:
                frames, _ = decode_frames(
                    path,
                    lambda info: self.uniform_windows(info, clip_index),
                    thread_type=self.thread_type,
                    thread_count=self.thread_count,
                )
                self._cache_frames = frames.permute(0, 3, 1, 2)  # (T, C, H, W)
            except DecodeError as exc:
                self._cache_error = failure_reason(exc, path)
        label = int(self.labels[video])
        if self._cache_frames is None:
            return _item(None, label, video, clip_index, crop_index, [(path, self._cache_error)])
        clip = self.eval_transforms[crop_index](self._cache_frames)
        return _item(clip, label, video, clip_index, crop_index, [])


def failure_reason(exc: BaseException, path: str, max_chars: int = 300) -> str:
    """One line saying why ``path`` failed: the error's first line without the leading ``"<path>: "``.

    Args:
        exc: the error (usually a :class:`~video_gn.data.decode.DecodeError`).
        path: the file, as it appears at the start of the message.
        max_chars: longer reasons are cut, ending in "...".

    Returns:
        The reason, e.g. ``"truncated video: the header announces 90 frames, but ..."``.
    """
    text = str(exc).strip()
    if text.startswith(f"{path}: "):
        text = text[len(path) + 2 :]
    text = text.splitlines()[0].strip() if text else ""
    for tail in (f": {path!r}", f": '{path}'"):  # FFmpeg errors end with the file name again
        text = text.removesuffix(tail)
    text = text or type(exc).__name__
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _item(
    video: torch.Tensor | None,
    label: int,
    video_index: int,
    clip_index: int,
    crop_index: int,
    failed: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "video": video,
        "label": label,
        "video_index": video_index,
        "clip_index": clip_index,
        "crop_index": crop_index,
        "failed": tuple(failed),
    }


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch, dropping sentinel items of failed videos.

    Args:
        items: dataset items.

    Returns:
        dict with ``video`` float (B, C, T, H, W) (None if every item failed), ``label``, ``video_index``,
        ``clip_index``, ``crop_index`` long (B,), ``failed``: list of ``(path, reason)`` of the files
        that failed, and ``failed_video_index``: list of the video indices of the dropped (failed) items.
    """
    failed = [p for it in items for p in it["failed"]]
    good = [it for it in items if it["video"] is not None]
    batch: dict[str, Any] = {
        "video": torch.stack([it["video"] for it in good]) if good else None,
        "failed": failed,
        "failed_video_index": [it["video_index"] for it in items if it["video"] is None],
    }
    for key in ("label", "video_index", "clip_index", "crop_index"):
        batch[key] = torch.tensor([it[key] for it in good], dtype=torch.long)
    return batch


def load_video_views(
    path: str | Path,
    *,
    num_frames: int = 8,
    sampling_rate: int = 8,
    num_clips: int = 10,
    num_crops: int = 1,
    short_side: int = 256,
    crop_size: int = 224,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    thread_type: str | None = None,
    thread_count: int = 0,
) -> torch.Tensor:
    """All evaluation views of one video, for prediction: ``num_clips`` uniform windows x ``num_crops`` crops.

    The views are exactly those the validation loader makes (same windows, crops and normalisation); the
    union of the windows is decoded in one forward pass.

    Args:
        path: video file.
        num_frames: T.
        sampling_rate: s.
        num_clips: windows K, spread uniformly over the video.
        num_crops: 1 (centre) or 3 (along the long side).
        short_side: short side after scaling.
        crop_size: crop side.
        mean: per-channel mean.
        std: per-channel std.
        thread_type: PyAV decoder threading.
        thread_count: decoder threads (0: FFmpeg chooses; prediction runs in the main process, so all
            cores are free for one video).

    Returns:
        float32 (V, C, T, crop_size, crop_size) with V = num_clips * num_crops, view v = clip v // num_crops,
        crop v % num_crops.

    Raises:
        FileNotFoundError: no such file.
        DecodeError (a ValueError): the file is not a readable video.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    windows = UniformWindows(num_frames, sampling_rate, num_clips)
    transforms = [
        eval_transform(
            short_side=short_side, crop_size=crop_size, crop_index=c, num_crops=num_crops, mean=mean, std=std
        )
        for c in range(num_crops)
    ]

    def all_windows(info: Any) -> np.ndarray:
        return np.concatenate([windows(info, k) for k in range(num_clips)])

    frames, _ = decode_frames(
        path, all_windows, thread_type=thread_type, thread_count=thread_count
    )  # (K*T, H, W, 3)
    height, width = frames.shape[1:3]
    clips = frames.permute(0, 3, 1, 2).reshape(num_clips, num_frames, 3, height, width)
    views = [transforms[c](clips[k]) for k in range(num_clips) for c in range(num_crops)]
    return torch.stack(views)
