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
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed at every save point.

    Lightning ≥ 2.5 writes ``last.ckpt`` only together with a top-k save, so an epoch whose monitored
    metric did not improve left ``last.ckpt`` behind, and ``fit --ckpt_path last`` after a crash
    silently repeated epochs. Here the last checkpoint always holds the newest state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_written_step = -1

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self._last_written_step == trainer.global_step:
            return  # already written at this step
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step
