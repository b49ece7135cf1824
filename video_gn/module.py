"""VideoClassifier: the LightningModule that trains a registry model on clips.

Reads top to bottom in lifecycle order: construction, optimiser and schedule, the training step,
multi-view evaluation, checkpoint hygiene.

Learning rate convention (Goyal et al., "Accurate, Large Minibatch SGD", https://arxiv.org/abs/1706.02677):
``lr`` is given *per 64 clips* and scaled linearly with the global batch
``devices × num_nodes × batch_size × accumulate_grad_batches``, so a recipe keeps its meaning when
the per-GPU batch shrinks from 8 to 1 clip. That rule is derived for SGD; for Adam(W) the square-root rule
(``lr_scaling: sqrt``, lr × sqrt(global batch / 64); Malladi et al., "On the SDEs and Scaling Rules for
Adaptive Gradient Algorithms", NeurIPS 2022) keeps small-batch runs closer to the large-batch ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from video_gn.models import build
from video_gn.nn import is_norm
from video_gn.norm_kinds import NORM_KINDS

#: ``video_gn.nn.NORM_KINDS`` as a type: the CLI rejects any other value at parse time.
NormKind = Literal[NORM_KINDS]

#: Clips per step that ``lr`` refers to (linear scaling rule).
LR_REFERENCE_BATCH = 64


class VideoClassifier(L.LightningModule):
    """A 3D ResNet from :mod:`video_gn.models` trained with cross-entropy on video clips.

    Args:
        name: registry model name (see ``video_gn.models.names()``).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        norm: normalisation kind of every norm layer.
        ws: use weight-standardized convolutions.
        width: base channel width (64 = the published models, 16 = CPU-sized).
        dropout: dropout before the classifier.
        zero_init_residual: γ = 0 on the last norm of every residual block (GN paper).
        ws_eps: epsilon of weight standardization (None: the model's registered default, 1e-6; 1e-8 for the
            ``bit_*`` models, as BiT's checkpoints were trained with).
        gn_groups: GroupNorm group count (None = the registry's ``"min32"``: 32, or one per channel in layers
            narrower than 32 channels; ``"auto"``: per layer the largest count <= 32 that divides its channels,
            for widths such as 40).
        pretrained: optional local 2D/3D checkpoint to initialise from: a 2D ImageNet ResNet (torchvision/timm,
            BN or GN; timm BiT for ``bit_*`` models) is inflated, a 3D state dict copied (README, "Starting from
            2D ImageNet weights"). A missing file stops here, at start-up, with the URL to fetch it from. What
            was loaded is logged and kept in :attr:`pretrained_report`.
        pretrained_method: how ``pretrained``'s 2D kernels are inflated over time: "mean" (I3D: repeated and
            divided by k_T) or "center" (centre frame, zeros elsewhere: the 2D network exactly on constant clips).
        pretrained_gn_groups: GroupNorm group count of the 2D network in ``pretrained`` (a state dict does not
            record it); None: the family's (32 for BiT, unknown otherwise). Only used to report a mismatch.
        class_names: names of the classes in index order (linked from ``data.classes``), stored in
            checkpoints so ``video-gn predict`` can name classes.
        optimizer: "sgd" (momentum, optional Nesterov) or "adamw".
        lr: learning rate for a global batch of 64 clips, scaled to the real global batch by ``lr_scaling``.
        lr_scaling: "linear" (lr × batch / 64, Goyal et al.; for SGD), "sqrt" (lr × sqrt(batch / 64);
            for Adam/AdamW) or "none" (lr used as given).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: weight decay, applied to conv/linear weights only (not to norm parameters or biases).
        label_smoothing: cross-entropy label smoothing.
        schedule: "cosine" (to zero) or "multistep" (× ``gamma`` at each milestone); both after warm-up.
        warmup_fraction: linear warm-up length as a fraction of all optimiser steps.
        milestones: multistep milestones; a value ≤ 1 is a fraction of all steps, a value > 1 an absolute step.
        gamma: multistep decay factor.
    """

    def __init__(
        self,
        name: str = "r3d_18",
        num_classes: int = 400,
        norm: NormKind = "gn",
        ws: bool = True,
        width: int = 64,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
        ws_eps: float | None = None,
        gn_groups: int | Literal["auto", "min32"] | None = None,
        pretrained: str | None = None,
        pretrained_method: Literal["mean", "center"] = "mean",
        pretrained_gn_groups: int | None = None,
        class_names: list[str] | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        lr_scaling: Literal["linear", "sqrt", "none"] = "linear",
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.0,
        schedule: Literal["cosine", "multistep"] = "cosine",
        warmup_fraction: float = 0.05,
        milestones: list[float] | None = None,
        gamma: float = 0.1,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"model.class_names has {len(class_names)} names but model.num_classes is {num_classes}; "
                "let the CLI link both from the data module, or give matching values."
            )
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"model.warmup_fraction must be in [0, 1), got {warmup_fraction}.")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}.")
        if weight_decay < 0:
            raise ValueError(f"model.weight_decay must be >= 0 (e.g. 1e-4), got {weight_decay}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"model.momentum must be in [0, 1) (e.g. 0.9), got {momentum}.")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(
                f"model.gamma (the multistep decay factor) must be in (0, 1] (e.g. 0.1), got {gamma}."
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1) (e.g. 0.1), got {label_smoothing}.")
        self.save_hyperparameters()
        norm_kwargs = {"num_groups": gn_groups} if (gn_groups is not None and norm == "gn") else None
        self.model = build(
            name,
            num_classes=num_classes,
            norm=norm,
            ws=ws,
            width=width,
            dropout=dropout,
            zero_init_residual=zero_init_residual,
            ws_eps=ws_eps,
            norm_kwargs=norm_kwargs,
        )
        #: What ``pretrained`` initialised (an InflationReport), or None when training from scratch.
        self.pretrained_report = (
            self._load_pretrained(pretrained, pretrained_method, pretrained_gn_groups) if pretrained else None
        )
        if norm == "frozen_bn" and not pretrained:
            rank_zero_warn(
                "model.norm frozen_bn without model.pretrained: frozen BN keeps the statistics of a checkpoint; "
                "from scratch they are mean 0 / variance 1, so the network trains unnormalised. Set "
                "model.pretrained (a BN checkpoint) or use bn / gn."
            )
        top5 = min(5, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_clip_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_clip_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.val_video_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_video_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        # Clip-weighted over all ranks: a mean of per-rank means would depend on how the views are sharded.
        self.val_loss = MeanMetric()
        # Per-video sums of view probabilities for the current eval epoch: {video_index: (probs, label)}.
        self._views: dict[int, list[Any]] = {}

    def _load_pretrained(self, path: str, method: Literal["mean", "center"], gn_groups: int | None):
        from video_gn.models import load_pretrained  # issue 6: inflation of 2D checkpoints

        extra = {"source_gn_groups": gn_groups} if gn_groups is not None else {}
        report = load_pretrained(self.model, path, method=method, **extra)
        rank_zero_info(f"Initialised from {path}: {report}")
        return report

    def setup(self, stage: str) -> None:
        """Give the model summary one clip of the data module's training shape (1, 3, T, crop, crop).

        Lightning's summary at the start of ``fit`` then shows the FLOPs of one such clip (one view; counted
        by torch's FlopCounterMode, 2 per multiply-add, i.e. twice the "GFLOPs" fvcore-based video papers
        report) instead of 0. A data module without ``num_frames``/``crop_size`` leaves the summary as it is,
        and so does a clip the model cannot take at batch 1: with one channel per norm group (``in``, or GN
        on a narrow layer) torch refuses to normalise the single value of a 1×1×1 last stage.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        frames, crop = getattr(datamodule, "num_frames", None), getattr(datamodule, "crop_size", None)
        if self.example_input_array is not None or not (isinstance(frames, int) and isinstance(crop, int)):
            return
        clip = torch.zeros(1, 3, frames, crop, crop)
        if any(isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels for m in self.modules()):
            modes = {m: m.training for m in self.modules()}
            try:  # only such models can fail at batch 1: try the clip once (eval, no grad) before offering it
                with torch.no_grad():
                    self.eval()(clip.to(next(self.parameters()).device))
            except ValueError:
                return
            finally:
                for m, training in modes.items():
                    m.training = training
        self.example_input_array = clip

    # ---------------------------------------------------------------- forward
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of clips.

        Args:
            video: float clips (B, C, T, H, W).

        Returns:
            logits (B, num_classes).
        """
        return self.model(video)

    # ------------------------------------------------------- optimiser & schedule
    def global_batch_size(self) -> int:
        """Clips per optimiser step over all processes: devices × nodes × batch × accumulation."""
        trainer = self.trainer
        batch = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule is not None else None
        if batch is None:
            loader = trainer.train_dataloader
            if loader is None:  # in configure_optimizers Lightning has not attached its loader yet
                source = getattr(trainer.fit_loop, "_data_source", None)
                loader = source.dataloader() if source is not None and source.is_defined() else None
            batch = getattr(loader, "batch_size", None)
        if batch is None:
            raise ValueError(
                "VideoClassifier scales model.lr (given per 64 clips) to the global batch, but finds no batch size: "
                "give the data module a batch_size attribute, or train from a DataLoader with a batch_size"
            )
        return int(trainer.world_size * batch * trainer.accumulate_grad_batches)

    def scaled_lr(self) -> float:
        """``lr`` (given per 64 clips) scaled to the real global batch by ``lr_scaling``."""
        ratio = self.global_batch_size() / LR_REFERENCE_BATCH
        rule = self.hparams.lr_scaling
        if rule == "sqrt":
            return self.hparams.lr * math.sqrt(ratio)
        if rule == "none":
            return self.hparams.lr
        return self.hparams.lr * ratio

    def _param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        norm_params = {id(p) for m in self.model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
        for p in self.model.parameters():
            if not p.requires_grad:
                continue
            (no_decay if (id(p) in norm_params or p.ndim <= 1) else decay).append(p)
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        lr = self.scaled_lr()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                self._param_groups(),
                lr=lr,
                momentum=hp.momentum,
                nesterov=hp.nesterov and hp.momentum > 0,  # Nesterov is undefined without momentum
            )
        else:
            opt = torch.optim.AdamW(self._param_groups(), lr=lr)
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps):
            raise ValueError(
                "the learning-rate schedule (warm-up, then cosine or multistep over the whole run) needs a known "
                "number of optimiser steps: set trainer.max_steps or a finite trainer.max_epochs (got max_epochs "
                f"{self.trainer.max_epochs}, max_steps {self.trainer.max_steps})"
            )
        total = max(1, int(steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lr_factor_fn(total, hp))
        rank_zero_info(
            f"lr {hp.lr:g} per {LR_REFERENCE_BATCH} clips, {hp.lr_scaling} scaling to global "
            f"batch {self.global_batch_size()} = {lr:.6g}; {hp.schedule} schedule over {total} optimiser steps, "
            f"warm-up {int(hp.warmup_fraction * total)} steps"
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["video"])  # (B, num_classes)
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self._stop_unless_finite(loss, batch_idx)
        self.train_top1(logits.detach(), batch["label"])
        bsz = batch["label"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bsz)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True, prog_bar=True, batch_size=bsz)
        return loss

    def on_train_epoch_end(self) -> None:
        # On a GPU, the CUDA allocator's peak so far in this process (training and validation steps; the largest
        # over the ranks): what `video-gn plan` predicts, measured on the real run; `video-gn sweep` puts the last
        # logged value in its CSV (peak_gpu_mib).
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.log("train/gpu_peak_mib", float(peak), sync_dist=True, reduce_fx="max")

    def _stop_unless_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise on every rank when the loss is NaN/inf on any rank (one collective decision).

        A rank that raised alone (an fp16 overflow in its batch only) would leave the others waiting in the
        gradient all-reduce: under NCCL until the process-group timeout.
        """
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        bad_ranks = self.all_gather(bad).reshape(-1).nonzero().flatten().tolist()  # (world,) -> ranks
        if not bad_ranks:
            return
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
        raise FloatingPointError(
            f"Non-finite training loss on rank(s) {bad_ranks} of {self.trainer.world_size} at global step "
            f"{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}; this rank's loss {loss.item()}), "
            f"last learning rate {lr:.6g}. Training stopped on every rank before any checkpoint was written from "
            "this state; lower model.lr, lengthen model.warmup_fraction, or use precision 32/bf16-mixed instead "
            "of 16-mixed, in a new run (a resumed run keeps its checkpoint's learning-rate schedule)."
        )

    # --------------------------------------------------------- multi-view eval
    def _eval_epoch_start(self) -> None:
        self._views = {}

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self(batch["video"])
        labels = batch["label"]
        bsz = labels.shape[0]
        self.val_loss.update(F.cross_entropy(logits, labels), weight=bsz)
        self.log(f"{stage}/loss", self.val_loss, batch_size=bsz)
        self.val_clip_top1(logits, labels)
        self.val_clip_top5(logits, labels)
        self.log(f"{stage}/clip_top1", self.val_clip_top1, batch_size=bsz)
        self.log(f"{stage}/clip_top5", self.val_clip_top5, batch_size=bsz)
        probs = logits.float().softmax(dim=-1).detach().cpu()
        for vid, p, y in zip(batch["video_index"].tolist(), probs, labels.tolist()):
            entry = self._views.get(vid)
            if entry is None:
                self._views[vid] = [p.clone(), y, 1]
            else:
                entry[0] += p
                entry[2] += 1

    def _failed_eval_videos(self, stage: str) -> set[int]:
        """Indices of this rank's ``stage`` videos with a view that failed to decode this epoch (reported by
        :class:`~video_gn.data.ClipDataLoader`; other loaders report nothing)."""
        trainer = self._trainer
        if trainer is None:
            return set()
        loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        failed: set[int] = set()
        for loader in loaders:
            report = getattr(loader, "failed_video_indices", None)
            if callable(report):
                failed |= report()
        return failed

    def _eval_epoch_end(self, stage: str) -> None:
        # A video with any view that failed to decode (a truncated file can fail in its late clips only) is
        # skipped, as the data module reports: averaging its readable views would score it on part of the video.
        for vid in self._failed_eval_videos(stage):
            self._views.pop(vid, None)
        # Each video's views all live on one rank (the data module shards by video), so the
        # per-rank averages are complete and torchmetrics' sum-reduction counts every video once.
        if self._views:
            probs = torch.stack([v[0] / v[2] for v in self._views.values()]).to(self.device)
            labels = torch.tensor([v[1] for v in self._views.values()], device=self.device)
            self.val_video_top1.update(probs, labels)
            self.val_video_top5.update(probs, labels)
        # compute() is already the all-rank value; sync_dist=True averages identical numbers (exact) and keeps
        # Lightning from warning on every distributed epoch that epoch-level logs should be synced.
        self.log(f"{stage}/video_top1", self.val_video_top1.compute(), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/video_top5", self.val_video_top5.compute(), sync_dist=True)
        self.val_video_top1.reset()
        self.val_video_top5.reset()
        self._views = {}

    def on_validation_epoch_start(self) -> None:
        self._eval_epoch_start()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_epoch_start()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["video"]).softmax(dim=-1)

    # ------------------------------------------------------- checkpoint hygiene
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # RNG states travel with the checkpoint so `fit --ckpt_path last` continues the same random
        # stream (dropout, ...) as an uninterrupted run; the data's draws (windows, crops, flips) are seeded
        # per (seed, epoch, video) by the dataset itself, in any worker (video_gn.data.VideoClipDataset).
        checkpoint["video_gn_rng"] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        bad = [
            n for n, t in _named_tensors(self.model) if t.is_floating_point() and not torch.isfinite(t).all()
        ]
        if bad:
            raise FloatingPointError(
                f"Refusing to write a checkpoint at global step {self.global_step}: non-finite values in "
                f"{len(bad)} tensors (first: {bad[:3]}). The previous checkpoint is kept."
            )

    def on_train_start(self) -> None:
        # A resumed fit restores the optimiser and its schedule from the checkpoint: their peak lr wins over the
        # one this run's settings give (a changed model.lr, batch or device count). Say so, with the lr in use.
        if not self.global_step:
            return
        wanted = self.scaled_lr()
        for config in self.trainer.lr_scheduler_configs:
            base = getattr(config.scheduler, "base_lrs", None)
            if base and not math.isclose(base[0], wanted, rel_tol=1e-6):
                rank_zero_warn(
                    f"resumed at step {self.global_step}: the optimiser and learning-rate schedule continue from "
                    f"the checkpoint, with peak lr {base[0]:.6g}, not the {wanted:.6g} that model.lr "
                    f"{self.hparams.lr:g} and global batch {self.global_batch_size()} give now. To train with "
                    "another lr, start a new run (a new trainer.default_root_dir) instead of resuming."
                )
                return

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("video_gn_rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])


def _named_tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def lr_factor_fn(total_steps: int, hp: Any):
    """Multiplier of the peak learning rate at each optimiser step: linear warm-up, then cosine or multistep.

    Args:
        total_steps: number of optimiser steps of the whole run.
        hp: object with ``schedule``, ``warmup_fraction``, ``milestones`` and ``gamma`` attributes.

    Returns:
        ``f(step) -> float`` for ``torch.optim.lr_scheduler.LambdaLR``.
    """
    warmup = int(hp.warmup_fraction * total_steps)
    milestones = sorted(m * total_steps if m <= 1 else m for m in (hp.milestones or [0.375, 0.75]))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if hp.schedule == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return hp.gamma ** sum(step >= m for m in milestones)

    return factor
