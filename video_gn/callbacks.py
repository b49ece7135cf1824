"""Lightning callbacks that video_gn adds to every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only


class ClassNamesWriter(L.Callback):
    """Write ``classes.txt`` and ``classes.json`` (index → name) next to the checkpoints at fit start.

    ``video-gn predict`` reads the names from the checkpoint's hyper-parameters, and falls back to
    this file, so a checkpoint copied without its run directory still names its classes.
    """

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = getattr(pl_module.hparams, "class_names", None)
        if not names:
            return
        ckpt_cb = trainer.checkpoint_callback
        out = Path(ckpt_cb.dirpath if ckpt_cb is not None and ckpt_cb.dirpath else trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "classes.txt").write_text("".join(f"{n}\n" for n in names))
        (out / "classes.json").write_text(json.dumps(dict(enumerate(names)), indent=1))


class VideoCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the newest state worth keeping.

    Lightning writes ``last.ckpt`` only together with a top-k save (≥ 2.5), i.e. only at validation
    epochs. With ``check_val_every_n_epoch: 10`` and ``max_steps`` (the Kinetics recipe) a crash lost up to
    10 epochs and the final weights were never saved. Here ``last.ckpt`` is also written

    - at every validation, whether or not the monitored metric improved;
    - every ``last_every_n_steps`` optimiser steps (``checkpoint.last_every_n_steps`` in the CLI);
    - when fit ends normally (``max_steps``, ``max_epochs`` or a callback's ``should_stop``).

    A state with non-finite weights is never written: ``VideoClassifier.on_save_checkpoint`` raises before
    anything reaches the disk, so the previous ``last.ckpt`` stays.

    Args:
        *args: as :class:`~lightning.pytorch.callbacks.ModelCheckpoint`.
        last_every_n_steps: also write ``last.ckpt`` every this many optimiser steps (None: only at
            validation and at the end of fit). Step-based, so every DDP rank takes the same decision.
        **kwargs: as :class:`~lightning.pytorch.callbacks.ModelCheckpoint`.
    """

    def __init__(self, *args: Any, last_every_n_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if last_every_n_steps is not None and last_every_n_steps < 1:
            raise ValueError(f"last_every_n_steps must be a positive int or None, got {last_every_n_steps}.")
        self.last_every_n_steps = last_every_n_steps
        self._last_written_step = -1  # step of the newest last.ckpt written at a validation
        self._periodic_step = -1  # step of the newest last.ckpt written by last_every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n, step = self.last_every_n_steps, trainer.global_step
        # With gradient accumulation several batches end at the same global step: write once.
        if n and step > 0 and step % n == 0 and step not in (self._periodic_step, self._last_written_step):
            self._write_last_only(trainer)
            self._periodic_step = step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not called when fit stops on an exception (e.g. a non-finite loss): nothing is written then.
        step = trainer.global_step
        if self.save_last and not trainer.fast_dev_run and step > 0:
            if step not in (self._periodic_step, self._last_written_step):
                self._write_last_only(trainer)

    def _write_last_only(self, trainer: L.Trainer) -> None:
        saved_step = self._last_global_step_saved
        # Past the once-per-step guard below: a validation at this same step writes last.ckpt again, with
        # its metrics and the updated best-checkpoint state.
        super()._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        # Lightning skips every save at a step it already saved; a last-only save must not suppress the
        # best-checkpoint save of a validation at this same step.
        self._last_global_step_saved = saved_step

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self._last_written_step == trainer.global_step:
            return  # already written at this step
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step
