"""KineticsDataModule: Kinetics-style video folders or lists -> batches of normalised clips, DDP-sharded."""

from __future__ import annotations

import logging
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from video_gn.data.dataset import VideoClipDataset, collate_clips
from video_gn.data.layout import find_classes, list_split, split_exists, write_classes
from video_gn.data.sampler import ShardedVideoSampler
from video_gn.data.synthetic import SyntheticSpec
from video_gn.data.transforms import KINETICS_MEAN, KINETICS_STD, eval_transform, train_transform
from video_gn.errors import TooManyFailedVideos

__all__ = ["KineticsDataModule", "ClipDataLoader", "FailureTracker"]

log = logging.getLogger(__name__)


#: Frames smaller than this (after cropping) are below what the models are built for (README: H, W >= 32).
MIN_CROP = 32


class FailureTracker:
    """Counts the files that failed to decode, per split and epoch, in the main process.

    Each bad file is warned about once, with the decoder's reason (the first time it fails, whatever
    worker decoded it); at the end of every epoch a summary is logged; as soon as the distinct failures of
    the epoch exceed ``max_fail_fraction`` of the videos read, :class:`~video_gn.errors.TooManyFailedVideos` (a
    RuntimeError) lists the first files and why.

    Under DDP the error must stop every process at the same point (the others would wait in the next
    collective). :class:`~video_gn.callbacks.GracefulStop` then sets ``defer``: the error is kept in ``pending``
    instead of raised (its files are skipped meanwhile, as any failure), and the callback raises it on every
    rank together.

    Args:
        max_fail_fraction: tolerated fraction of failed videos per epoch (0 <= f <= 1).
    """

    #: Keep the error in :attr:`pending` instead of raising it (set by GracefulStop under DDP).
    defer: bool = False
    #: The newest error held back while ``defer`` is set, or None.
    pending: TooManyFailedVideos | None = None

    def __init__(self, max_fail_fraction: float) -> None:
        if not 0.0 <= max_fail_fraction <= 1.0:
            raise ValueError(f"data.max_fail_fraction must be in [0, 1], got {max_fail_fraction}")
        self.max_fail_fraction = max_fail_fraction
        self.warned: set[str] = set()
        self.epoch_failures: dict[str, list[str]] = {}  # split -> distinct failed paths of the last epoch
        # split -> dataset indices of the videos with a failed item in the last epoch (evaluation: a video
        # with any unreadable view is left out of video-level metrics, see VideoClassifier)
        self.epoch_failed_videos: dict[str, set[int]] = {}
        self.reasons: dict[str, str] = {}  # path -> why it failed (the last reason seen)

    def start(self, split: str) -> None:
        """Begin an epoch of ``split``."""
        self.epoch_failures[split] = []
        self.epoch_failed_videos[split] = set()

    def record(self, split: str, failures: list[tuple[str, str]] | list[str], num_videos: int) -> None:
        """Note failed files (``(path, reason)`` pairs, or bare paths); warn once per file, with its reason;
        raise when the epoch's failures pass the threshold."""
        epoch = self.epoch_failures.setdefault(split, [])
        for failure in failures:
            path, reason = (failure, "") if isinstance(failure, str) else (failure[0], failure[1])
            if reason:
                self.reasons[path] = reason
            if path not in epoch:
                epoch.append(path)
            if path not in self.warned:
                self.warned.add(path)
                why = f": {reason}" if reason else ""
                warnings.warn(
                    f"skipping unreadable video {path!r} ({split}){why}", RuntimeWarning, stacklevel=2
                )
        if len(epoch) > self.max_fail_fraction * max(num_videos, 1):
            shown = "\n  ".join(f"{p} ({self.reasons[p]})" if self.reasons.get(p) else p for p in epoch[:20])
            err = TooManyFailedVideos(
                f"{len(epoch)} of {num_videos} {split} videos failed to decode, more than "
                f"max_fail_fraction={self.max_fail_fraction}; first files:\n  {shown}\n"
                f"Check them with data_scripts/verify_videos.py, or raise max_fail_fraction."
            )
            if not self.defer:
                raise err
            self.pending = err

    def finish(self, split: str, num_videos: int) -> None:
        """End an epoch of ``split``: log how many videos failed."""
        failures = self.epoch_failures.get(split, [])
        if failures:
            log.warning(
                "%s epoch: %d of %d videos failed to decode and were skipped",
                split,
                len(failures),
                num_videos,
            )


def _warn_classes_without_videos(classes: list[str], videos: Any, split_root: Path) -> None:
    """Warn about classes no training video belongs to (a class folder only in val, a misspelt folder name,
    a classes.txt entry without videos): the model can never predict them, and their val videos all count
    as errors."""
    seen = {info["label"] for _, info in videos}
    empty = [name for i, name in enumerate(classes) if i not in seen]
    if empty:
        shown = ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else "")
        rank_zero_warn(
            f"{len(empty)} of {len(classes)} classes have no training video in {split_root}: {shown}. Check the "
            "class folder names of every split (and classes.txt): a class named differently in val, or listed "
            "without videos, can never be predicted."
        )


def _warn_if_flip_sensitive(classes: list[str], stacklevel: int) -> None:
    """Warn when horizontal flips would swap synthetic classes (move_left <-> move_right, ...)."""
    from video_gn.data.synthetic import FLIP_SENSITIVE

    mirrored = sorted(set(classes) & set(FLIP_SENSITIVE))
    if mirrored:
        warnings.warn(
            f"data.hflip is on, but the synthetic classes {mirrored} turn into each other under a "
            "horizontal flip, so flipped clips get the wrong label. Set data.hflip: false.",
            stacklevel=stacklevel,
        )


def ignore_sigint(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore Ctrl-C; the main process decides.

    A terminal's Ctrl-C reaches every process of the foreground group. Left to the default, each worker exits
    on it, and a fit that goes on to finish its batch and save (:class:`~video_gn.callbacks.GracefulStop`) then
    fails on "DataLoader worker exited unexpectedly". Workers still end with the main process (they are
    daemonic and watch their parent).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ClipDataLoader(DataLoader):
    """A DataLoader that removes failed items' bookkeeping from batches and reports it to a FailureTracker.

    Batches whose every item failed are skipped (rare: only if all views in a batch come from bad files).
    """

    def __init__(
        self, *args: Any, split: str = "train", tracker: FailureTracker | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.split = split
        self.tracker = tracker if tracker is not None else FailureTracker(1.0)

    def _num_videos(self) -> int:
        sampler = self.sampler
        if isinstance(sampler, ShardedVideoSampler):
            return sampler.num_shard_videos()
        return len(self.dataset)

    def failed_video_indices(self) -> set[int]:
        """Dataset indices of the videos with a view (or clip) that failed to decode in this loader's current
        or last epoch: evaluation code leaves them out of video-level metrics."""
        return set(self.tracker.epoch_failed_videos.get(self.split, ()))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        num_videos = self._num_videos()
        num_batches = len(self)
        self.tracker.start(self.split)
        finished = False
        for index, batch in enumerate(super().__iter__()):
            failed = batch.pop("failed", [])
            self.tracker.epoch_failed_videos.setdefault(self.split, set()).update(
                batch.pop("failed_video_index", ())
            )
            if failed:
                self.tracker.record(self.split, failed, num_videos)
            if index == num_batches - 1:
                # Report before handing out the last batch: Lightning stops after len(loader) batches and
                # never resumes this generator, so code after the loop would not run within the epoch.
                self.tracker.finish(self.split, num_videos)
                finished = True
            if batch["video"] is None:
                continue
            yield batch
        if not finished:
            self.tracker.finish(self.split, num_videos)


class KineticsDataModule(L.LightningDataModule):
    """Kinetics-style datasets as batches of normalised clips, T frames every s frames, sharded for DDP.

    Layouts (see :mod:`video_gn.data.layout`): ``<root>/<split>/<class>/*.mp4`` folders or
    ``<root>/<split>.csv`` lists (``path label`` lines); classes from ``<root>/classes.txt`` or the folders;
    one class mapping for every split. Splits: ``train``, ``val`` and ``test``; when ``test`` is absent,
    testing uses ``val``.

    Training reads one random T x s window per video per epoch with random short-side scale, crop and flip;
    validation/test read ``num_clips`` uniform windows x ``num_crops`` crops per video, one batch item per
    view, with ``video_index``/``clip_index``/``crop_index`` so predictions can be averaged per video.

    Batches: ``video`` float (B, C, T, H, W), ``label``, ``video_index``, ``clip_index``, ``crop_index``
    long (B,).

    Multi-GPU: every dataloader uses :class:`~video_gn.data.sampler.ShardedVideoSampler` with the
    trainer's world size and rank (training: disjoint shards reshuffled each epoch from ``seed``; eval: each
    video exactly once across ranks, all its views on one rank). **The Trainer must be built with
    ``use_distributed_sampler=False``**, otherwise Lightning would replace these samplers with its own
    DistributedSampler (which pads shards with duplicates and splits a video's views across ranks).

    Bad files are skipped with one warning each and counted; an epoch with more than
    ``max_fail_fraction`` failures stops with an error listing them (see :class:`FailureTracker`).

    Args:
        root: dataset root directory.
        num_frames: T, frames per clip.
        sampling_rate: s, step between frames at the native frame rate.
        batch_size: clips per batch (per process).
        num_workers: DataLoader worker processes.
        train_short_side: (min, max) random short side in training.
        crop_size: square crop side.
        test_short_side: short side in validation/test.
        num_clips: uniform windows per video in validation/test.
        num_crops: crops per window in validation/test: 1 (centre) or 3 (along the long side).
        hflip: random horizontal flip in training.
        mean: per-channel normalisation mean ([0, 1] scale).
        std: per-channel normalisation std.
        max_fail_fraction: tolerated fraction of unreadable videos per epoch before stopping; also the
            tolerated fraction of a split's listed files that do not exist at :meth:`setup`.
        seed: seed of the per-epoch shuffle (same on every rank).
        synthetic: if set and ``root`` holds no dataset, :meth:`prepare_data` generates the synthetic
            motion dataset described by this spec into ``root``.
        persistent_workers: keep worker processes between epochs (when num_workers > 0).
        pin_memory: pin batches in page-locked memory (for GPU training).
        eval_batch_size: batch size of validation/test (default: batch_size).
        decoder_threads: FFmpeg threads per decoded clip (0: FFmpeg chooses). The default 1 leaves
            parallelism to the DataLoader workers, which measured fastest on 2 cores.
        drop_last: drop each epoch's last, incomplete training batch (as PySlowFast does): a batch of one or
            two clips is BatchNorm's worst case, and with it every optimiser step sees ``batch_size`` clips
            (``video-gn sweep`` holds clips seen = steps × batch). Validation and test never drop.
    """

    def __init__(
        self,
        root: str,
        num_frames: int = 8,
        sampling_rate: int = 8,
        batch_size: int = 8,
        num_workers: int = 2,
        train_short_side: tuple[int, int] = (256, 320),
        crop_size: int = 224,
        test_short_side: int = 256,
        num_clips: int = 10,
        num_crops: int = 1,
        hflip: bool = True,
        mean: tuple[float, float, float] = KINETICS_MEAN,
        std: tuple[float, float, float] = KINETICS_STD,
        max_fail_fraction: float = 0.05,
        seed: int = 0,
        synthetic: Optional[SyntheticSpec] = None,  # noqa: UP045 - jsonargparse-friendly spelling
        persistent_workers: bool = True,
        pin_memory: bool = False,
        eval_batch_size: Optional[int] = None,  # noqa: UP045
        decoder_threads: int = 1,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_frames", num_frames),
            ("sampling_rate", sampling_rate),
            ("batch_size", batch_size),
            ("num_clips", num_clips),
            ("crop_size", crop_size),
            ("test_short_side", test_short_side),
        ):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(
                f"data.eval_batch_size must be >= 1 (or null: data.batch_size), got {eval_batch_size}"
            )
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if decoder_threads < 0:
            raise ValueError(f"data.decoder_threads must be >= 0 (0: FFmpeg chooses), got {decoder_threads}")
        if num_crops not in (1, 3):
            raise ValueError(f"data.num_crops must be 1 or 3, got {num_crops}")
        if len(train_short_side) != 2 or not 0 < train_short_side[0] <= train_short_side[1]:
            raise ValueError(
                f"data.train_short_side must be [min, max] with 0 < min <= max, got {train_short_side}"
            )
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"data.mean and data.std must be 3 values (RGB), std > 0; got {mean}, {std}")
        if crop_size < MIN_CROP:
            warnings.warn(
                f"data.crop_size {crop_size} is below {MIN_CROP}, the smallest frame the models are built for: "
                "their last stages then see 1x1 maps, and GroupNorm with one channel per group refuses those",
                stacklevel=2,
            )
        if crop_size > min(train_short_side[0], test_short_side):
            warnings.warn(
                f"data.crop_size {crop_size} is larger than the short side the frames are scaled to "
                f"(train_short_side {list(train_short_side)}, test_short_side {test_short_side}): the crops are "
                "zero-padded. Scale to at least the crop size.",
                stacklevel=2,
            )
        self.root = str(root)
        self.num_frames, self.sampling_rate = num_frames, sampling_rate
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_short_side = (int(train_short_side[0]), int(train_short_side[1]))
        self.crop_size, self.test_short_side = crop_size, test_short_side
        self.num_clips, self.num_crops, self.hflip = num_clips, num_crops, hflip
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.decoder_threads = decoder_threads
        self.drop_last = drop_last
        self.synthetic = synthetic
        self.persistent_workers, self.pin_memory = persistent_workers, pin_memory
        self.tracker = FailureTracker(max_fail_fraction)
        self.datasets: dict[str, VideoClipDataset] = {}
        # Saved into checkpoints (`datamodule_hyper_parameters`) so `video-gn predict` cuts the same clips
        # the model was trained and evaluated on. The spec is generation-only and not a plain value.
        self.save_hyperparameters(ignore=["synthetic"])
        if synthetic is not None and hflip:
            from video_gn.data.synthetic import class_names

            _warn_if_flip_sensitive(class_names(synthetic), stacklevel=3)
        self._classes: list[str] | None = None

    # ----------------------------------------------------------------- classes
    def _synthetic_pending(self) -> bool:
        """True if a synthetic dataset is configured but not (completely) written yet."""
        if self.synthetic is None:
            return False
        from video_gn.data import synthetic

        return not synthetic.is_complete(self.root, self.synthetic)

    @property
    def classes(self) -> list[str]:
        """Class names; index i is label i (the same for every split).

        Available right after __init__: read from the dataset root, or from the synthetic spec when the
        synthetic dataset is not written yet (its classes.txt will hold the same names).
        """
        if self._classes is None:
            if self._synthetic_pending():
                from video_gn.data import synthetic

                return synthetic.class_names(self.synthetic)
            classes = find_classes(self.root)
            if len(classes) < 2:
                where = Path(self.root) / "classes.txt"
                where = where if where.is_file() else Path(self.root)
                raise ValueError(
                    f"data.root {self.root!r}: {where} gives {len(classes)} class ({', '.join(classes)}); a "
                    "classifier needs at least 2 (one folder per class under <split>/, or one name per line in "
                    "classes.txt)"
                )
            self._classes = classes
        return self._classes

    @property
    def num_classes(self) -> int:
        """Number of classes (see :attr:`classes`)."""
        return len(self.classes)

    def write_classes(self, dirpath: str | Path) -> Path:
        """Write the class list as ``classes.txt`` and ``classes.json`` into ``dirpath`` (e.g. next to checkpoints).

        Returns:
            Path of classes.txt.
        """
        return write_classes(self.classes, dirpath)

    # ----------------------------------------------------------------- lifecycle
    def prepare_data(self) -> None:
        """Generate the synthetic dataset into ``root`` if ``synthetic`` is set and it is not there yet.

        Lightning calls this on one process per node before :meth:`setup`; the generator writes into a
        temporary directory and renames it, so a half-written dataset is never read.
        """
        if not self._synthetic_pending():
            return
        from video_gn.data import synthetic  # lazy: only needed to generate

        spec = self.synthetic
        n = spec.num_classes * (spec.train_per_class + spec.val_per_class)
        start = time.perf_counter()
        try:
            if synthetic.check_root(self.root, spec):  # written meanwhile (another process): reuse it
                return
            rank_zero_info(
                f"Generating the synthetic motion dataset ({n} videos, {spec.num_classes} classes) into {self.root}"
            )
            synthetic.generate(self.root, spec)
        except ValueError as err:  # root holds something else: own videos, or another synthetic spec
            raise ValueError(
                f"{str(err).rstrip('.')}. data.synthetic is set, so video_gn generates its synthetic dataset "
                f"at data.root ({self.root}) unless that already holds the same one; to train on the videos "
                "there, pass --data.synthetic null (or drop `synthetic:` from the config)."
            ) from err
        rank_zero_info(f"Synthetic dataset written in {time.perf_counter() - start:.0f} s")

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of the stage ("fit", "validate", "test"; None: all present splits).

        Listed files that do not exist are dropped with one warning; more than ``max_fail_fraction`` of a
        split missing (or all of it) is an error (:func:`~video_gn.data.layout.list_split`).

        Raises:
            FileNotFoundError: root missing, a split the stage needs is missing, or too many of its files.
            ValueError: a split is empty, a list has an unknown label or is comma-separated.
        """
        root = Path(self.root)
        if self._synthetic_pending():  # setup() without prepare_data(), e.g. outside a Trainer
            self.prepare_data()
        if not root.is_dir():
            raise FileNotFoundError(
                f"data.root {self.root!r} does not exist; point data.root at a folder with train/ and val/ "
                f"(or train.csv/val.csv), or set data.synthetic to generate the demo dataset"
            )
        classes = self.classes
        if self.hflip and self.synthetic is None and (root / "synthetic.json").is_file():
            _warn_if_flip_sensitive(classes, stacklevel=3)  # a synthetic dataset written beforehand
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": []}.get(
            stage or "", ["train", "val", "test"]
        )
        for split in wanted:
            if split in self.datasets:
                continue
            source = split
            if split == "test" and not split_exists(root, "test"):
                source = "val"  # documented fallback: test on the validation split
                rank_zero_warn(
                    f"no test split under {root}: testing on the val split (its figures are val figures, "
                    "logged as test/*)"
                )
            if split == "val" and stage == "fit" and not split_exists(root, "val"):
                log.warning("no val split under %s: training without validation", root)
                continue
            if stage is None and not split_exists(root, source):
                continue
            videos = list_split(root, source, classes, max_missing_fraction=self.tracker.max_fail_fraction)
            unlabelled = [path for path, info in videos if info["label"] < 0]
            if unlabelled:  # the loss and the metrics need a class for every video
                raise ValueError(
                    f"split {source!r} under {root}: {len(unlabelled)} of {len(videos)} listed videos have no "
                    f"label (first: {', '.join(unlabelled[:3])}); give each line of {source}.csv a class name "
                    "or index, or use `video-gn predict` for unlabelled videos"
                )
            if split == "train":
                _warn_classes_without_videos(classes, videos, root / source)
            self.datasets[split] = self._make_dataset(videos, train=split == "train")

    def _make_dataset(self, videos: Any, *, train: bool) -> VideoClipDataset:
        if train:
            return VideoClipDataset(
                videos,
                train=True,
                num_frames=self.num_frames,
                sampling_rate=self.sampling_rate,
                thread_count=self.decoder_threads,
                seed=self.seed,
                transform=train_transform(
                    short_side=self.train_short_side,
                    crop_size=self.crop_size,
                    hflip=self.hflip,
                    mean=self.mean,
                    std=self.std,
                ),
            )
        return VideoClipDataset(
            videos,
            train=False,
            num_frames=self.num_frames,
            sampling_rate=self.sampling_rate,
            num_clips=self.num_clips,
            thread_count=self.decoder_threads,
            eval_transforms=[
                eval_transform(
                    short_side=self.test_short_side,
                    crop_size=self.crop_size,
                    crop_index=c,
                    num_crops=self.num_crops,
                    mean=self.mean,
                    std=self.std,
                )
                for c in range(self.num_crops)
            ],
        )

    # ----------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _trainer_or_none(self) -> Any:
        return getattr(self, "trainer", None)

    def _loader(self, split: str) -> ClipDataLoader | list:
        if split not in self.datasets:
            if split == "val" and Path(self.root).is_dir() and not split_exists(self.root, "val"):
                return []  # no val split: Lightning skips validation
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        dataset = self.datasets[split]
        world, rank = self._world()
        connector = getattr(self._trainer_or_none(), "_accelerator_connector", None)
        if world > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ValueError(
                "KineticsDataModule shards videos across ranks itself; build the Trainer with "
                "use_distributed_sampler=False (got True), otherwise Lightning would wrap its sampler in a "
                "DistributedSampler and split each rank's shard again"
            )
        if dataset.num_videos < world:  # some rank would get no video (train: none at all, after trimming)
            raise ValueError(
                f"split {split!r} has {dataset.num_videos} videos, fewer than the {world} processes (devices × "
                "nodes) that share it: every process needs at least one; add videos or use fewer devices"
            )
        train = split == "train"
        sampler = ShardedVideoSampler(
            dataset.num_videos,
            views_per_video=dataset.views_per_video,
            shuffle=train,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            fold_epoch=train,  # training items seed their draws by (seed, epoch, video)
        )
        if train and self.drop_last and sampler.num_shard_videos() < self.batch_size:
            raise ValueError(
                f"the train split gives each of the {world} process(es) {sampler.num_shard_videos()} videos per "
                f"epoch, fewer than data.batch_size {self.batch_size}: with data.drop_last true no full batch "
                "remains; lower data.batch_size, add videos, or set data.drop_last false"
            )
        workers = self.num_workers
        return ClipDataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_clips,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
            drop_last=train and self.drop_last,
            worker_init_fn=ignore_sigint if workers > 0 else None,
            split=split,
            tracker=self.tracker,
        )

    def train_dataloader(self) -> ClipDataLoader:
        """Training batches: one random window per video of this rank's shard, reshuffled per epoch."""
        return self._loader("train")

    def val_dataloader(self) -> ClipDataLoader | list:
        """Validation batches: every view of every video of this rank's shard (empty list without a val split)."""
        return self._loader("val")

    def test_dataloader(self) -> ClipDataLoader:
        """Test batches on the test split (or val when there is no test split), all views."""
        return self._loader("test")
