"""Lightning callbacks that video_gn adds to every run."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only

# Light (stdlib only): the mode, interval rule and time format of the data scripts' progress lines.
from video_gn.data.layout import write_classes
from video_gn.data.progress import forced_progress_mode, format_hms, log_interval


class ClassNamesWriter(L.Callback):
    """Write ``classes.txt`` and ``classes.json`` (``{"classes": [...]}``, as the data module writes it) next to
    the checkpoints at fit start.

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
        write_classes(list(names), out)


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
        if (
            n
            and not trainer.fast_dev_run  # Lightning writes no checkpoint in a debug run: neither do we
            and step > 0
            and step % n == 0
            and step not in (self._periodic_step, self._last_written_step)
        ):
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


# ----------------------------------------------------------------------------------------------------------
# Progress and summaries that read well in log files (SLURM, nohup, `> fit.out`)


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal that can show a live bar (a tty, and ``TERM`` is not dumb)."""
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def progress_mode() -> str:
    """``"rich"``, ``"text"`` or ``"off"``: the ``VIDEO_GN_PROGRESS`` variable, else rich on a terminal.

    Unset (or unknown, with a warning once per value) it is ``rich`` when stdout is a terminal and ``text``
    otherwise: Rich's live display garbles a redirected log, Lightning's tqdm bar fills it with carriage
    returns that show as one line.
    """
    return forced_progress_mode() or ("rich" if stdout_is_terminal() else "text")


def progress_bar_callback(enabled: bool = True) -> ProgressBar | None:
    """The training progress bar for ``trainer.enable_progress_bar`` = ``enabled`` (see :func:`progress_mode`).

    Returns None when ``enabled`` is False (Lightning then shows none), a
    :class:`~lightning.pytorch.callbacks.RichProgressBar` in ``rich`` mode, a :class:`TextProgressBar` in
    ``text`` mode, and a :class:`SilentProgressBar` with ``VIDEO_GN_PROGRESS=0``: with the trainer's progress
    bar enabled and none in its callbacks, Lightning would add its own.
    """
    if not enabled:
        return None
    mode = progress_mode()
    if mode == "off":
        return SilentProgressBar()
    if mode == "rich":
        try:
            from lightning.pytorch.callbacks import RichProgressBar

            return RichProgressBar()
        except ModuleNotFoundError:  # rich not installed
            pass
    return TextProgressBar()


class SilentProgressBar(ProgressBar):
    """A progress bar that shows nothing (it only keeps Lightning from adding its default one)."""

    @property
    def is_enabled(self) -> bool:
        return False

    def disable(self) -> None:
        pass

    def enable(self) -> None:
        pass


def _count(x: float | None) -> str:
    """An integer count, or ``?`` when unknown or infinite."""
    return str(int(x)) if x is not None and math.isfinite(x) else "?"


def _pct(done: float, total: float | None) -> str:
    return f" ({100.0 * done / total:.1f}%)" if total and math.isfinite(total) else ""


def _eta(remaining: float, rate: float | None) -> str:
    if remaining <= 0:
        return "0:00:00"
    if not rate or not math.isfinite(remaining):
        return "?"
    return format_hms(remaining / rate)


def _rate(rate: float | None) -> str:
    """``12.3 it/s``, or ``4.56 s/it`` below one iteration a second (``? it/s`` before any)."""
    if not rate:
        return "? it/s"
    return f"{rate:.1f} it/s" if rate >= 1 else f"{1.0 / rate:.2f} s/it"


def _scalar(v: Any) -> float | int | None:
    """A Python number from a number or a one-element tensor (None for anything else)."""
    if hasattr(v, "numel"):
        if v.numel() != 1:
            return None
        v = v.item()
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _fmt(v: float | int) -> str:
    """Integers as they are, floats with 4 significant digits (``1.234``, ``0.4123``, ``1.2e-05``)."""
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def _metrics_text(metrics: Mapping[str, Any], prefix: str = "") -> str:
    """``name value | name value`` for the scalar metrics whose name starts with ``prefix``."""
    items = []
    for name, value in metrics.items():
        if name.startswith(prefix) and (x := _scalar(value)) is not None:
            items.append(f"{name} {_fmt(x)}")
    return " | ".join(items)


def run_totals(trainer: L.Trainer) -> tuple[float, float]:
    """``(epochs, optimizer steps)`` this fit will run in all, ``inf`` where unknown or unlimited.

    The smaller of ``max_steps`` and ``max_epochs`` × optimizer steps per epoch (batches per epoch divided
    by ``accumulate_grad_batches``, rounded up).
    """
    batches = trainer.num_training_batches
    accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
    per_epoch = math.ceil(batches / accumulate) if math.isfinite(batches) else math.inf
    max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps >= 0 else math.inf
    max_epochs = (
        trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else math.inf
    )
    steps_by_epochs = max_epochs * per_epoch if per_epoch > 0 and max_epochs > 0 else 0
    epochs = max_epochs
    if math.isfinite(max_steps) and 0 < per_epoch < math.inf:
        epochs = min(epochs, math.ceil(max_steps / per_epoch))
    return epochs, min(max_steps, steps_by_epochs)


class TextProgressBar(ProgressBar):
    """Plain progress lines for logs: at most one every ``interval`` seconds, and one at each epoch's end.

    While training::

        fit: 32 epochs x 1440 train batches = 46080 optimizer steps | a line every 30 s
        epoch 3/32 batch 140/1440 (9.7%) | 12.3 it/s | epoch ETA 0:01:46 | step 3020/46080 (6.6%) \
| elapsed 0:04:05 | run ETA 0:58:12 | train/loss 1.234 | val/video_top1 0.412
        validation (epoch 3, step 4320) 20/45 (44.4%) | 5.1 it/s | ETA 0:00:05
        validation (epoch 3, step 4320) done: 45 batches in 0:00:09 | val/loss 1.02 | val/clip_top1 0.35 | ...

    The batch rate and epoch ETA leave out the time spent in validation; the run ETA extrapolates the
    optimizer steps per second of wall time (validation included) since this fit (or resume) started.
    ``validate`` and ``test`` write their batch progress and a last line with the metrics; ``predict`` its
    progress. Only global rank zero writes (Lightning disables the bar on the other ranks).

    Args:
        interval: minimum seconds between two progress lines (default: ``VIDEO_GN_PROGRESS_INTERVAL`` or 30,
            as the data scripts' progress lines; 0: a line per batch).
        stream: where to write (default: ``sys.stderr`` at the time of each write, as the data scripts).
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        interval: float | None = None,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = log_interval(interval)
        if self.interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {self.interval}")
        self.stream, self.clock = stream, clock
        self._enabled = True
        self._last_write = -math.inf
        # fit
        self._run_t0 = 0.0
        self._run_step0 = 0
        self._epoch_t0 = 0.0
        self._epoch_eval_time = 0.0  # seconds of validation inside the current epoch
        self._epoch_total: float = math.inf
        self._epoch_n0: int | None = None  # batches of this epoch done before this process ran any (resume)
        self._epoch_done = 0
        self._epoch_written = -1
        # validation / test / predict
        self._eval_t0 = 0.0
        self._eval_total: float = math.inf
        self._eval_done = 0

    # Lightning's progress-bar interface -------------------------------------------------------------------

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The ``prog_bar=True`` metrics (without Lightning's ``v_num``, the logger version)."""
        return {k: v for k, v in trainer.progress_bar_metrics.items() if k != "v_num"}

    # writing ---------------------------------------------------------------------------------------------

    def write(self, line: str) -> None:
        """Write ``line`` (if enabled) and restart the interval."""
        if not self._enabled:
            return
        print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)
        self._last_write = self.clock()

    def _due(self) -> bool:
        return self._enabled and self.clock() - self._last_write >= self.interval

    # fit ---------------------------------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run_t0, self._run_step0 = self.clock(), trainer.global_step
        epochs, steps = run_totals(trainer)
        n = _count(epochs)
        head = (
            f"fit: {n} epoch{'' if n == '1' else 's'} x {_count(trainer.num_training_batches)} train batches"
        )
        accumulate = getattr(trainer, "accumulate_grad_batches", 1)
        if accumulate > 1:
            head += f" (accumulating {accumulate})"
        head += f" = {_count(steps)} optimizer steps"
        if trainer.global_step:
            head += f" | resuming at epoch {trainer.current_epoch + 1}, step {trainer.global_step}"
        self.write(f"{head} | a line every {self.interval:g} s")
        # Resuming mid-epoch, Lightning does not call on_train_epoch_start for the epoch it re-enters.
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_t0 = self.clock()
        self._epoch_eval_time = 0.0
        self._epoch_total = _epoch_batches(trainer)
        self._epoch_n0 = None
        self._epoch_done = 0
        self._epoch_written = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._epoch_n0 is None:
            self._epoch_n0 = batch_idx
        self._epoch_done = batch_idx + 1
        if not self._enabled:
            return
        if self._epoch_done >= self._epoch_total or self._due():
            self.write(self.train_line(trainer, pl_module))
            self._epoch_written = self._epoch_done

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The epoch's last batch already wrote its line unless the epoch ended early (max_steps, should_stop)
        # or its length is unknown.
        if self._enabled and self._epoch_done and self._epoch_done != self._epoch_written:
            self.write(self.train_line(trainer, pl_module))
            self._epoch_written = self._epoch_done

    def train_line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """The progress line of the training batch just done."""
        now = self.clock()
        epochs, steps = run_totals(trainer)
        n, total = self._epoch_done, self._epoch_total
        n0 = self._epoch_n0 or 0
        train_time = now - self._epoch_t0 - self._epoch_eval_time
        rate = (n - n0) / train_time if train_time > 0 and n > n0 else None
        step = trainer.global_step
        run_time = now - self._run_t0
        run_rate = (step - self._run_step0) / run_time if run_time > 0 and step > self._run_step0 else None
        parts = [
            f"epoch {trainer.current_epoch + 1}/{_count(epochs)} batch {n}/{_count(total)}{_pct(n, total)}",
            _rate(rate),
            f"epoch ETA {_eta(total - n, rate)}",
            f"step {step}/{_count(steps)}{_pct(step, steps)}",
            f"elapsed {format_hms(run_time)}",
            f"run ETA {_eta(steps - step, run_rate)}",
        ]
        metrics = _metrics_text(self.get_metrics(trainer, pl_module))
        return " | ".join(parts + ([metrics] if metrics else []))

    # validation, test, predict ---------------------------------------------------------------------------

    @staticmethod
    def _label(trainer: L.Trainer, stage: str) -> str:
        if stage == "validation" and trainer.state.fn == "fit":
            return f"validation (epoch {trainer.current_epoch + 1}, step {trainer.global_step})"
        return {"validation": "validate"}.get(stage, stage)

    def _eval_start(self, trainer: L.Trainer, stage: str) -> None:
        self._eval_t0 = self.clock()
        self._eval_done = 0
        batches = {
            "validation": trainer.num_val_batches,
            "test": trainer.num_test_batches,
            "predict": trainer.num_predict_batches,
        }[stage]
        self._eval_total = sum(batches) if isinstance(batches, list) else batches
        if trainer.state.fn != "fit":
            self.write(f"{self._label(trainer, stage)}: {_count(self._eval_total)} batches")

    def _eval_batch(self, trainer: L.Trainer, stage: str) -> None:
        self._eval_done += 1
        if not self._due():
            return
        elapsed = self.clock() - self._eval_t0
        rate = self._eval_done / elapsed if elapsed > 0 else None
        done, total = self._eval_done, self._eval_total
        self.write(
            f"{self._label(trainer, stage)} {done}/{_count(total)}{_pct(done, total)} | {_rate(rate)}"
            f" | ETA {_eta(total - done, rate)}"
        )

    def _eval_end(self, trainer: L.Trainer, stage: str) -> None:
        elapsed = self.clock() - self._eval_t0
        if trainer.state.fn == "fit":
            self._epoch_eval_time += elapsed
        self.reset_dataloader_idx_tracker()
        line = f"{self._label(trainer, stage)} done: {self._eval_done} batches in {format_hms(elapsed)}"
        prefix = {"validation": "val", "test": "test"}.get(stage)
        metrics = _metrics_text(trainer.callback_metrics, prefix) if prefix else ""
        self.write(f"{line} | {metrics}" if metrics else line)

    # Validation (outside the sanity check), test and predict: one line at the start, timed lines per batch,
    # and the result at the end; the same three hooks per stage.
    def _eval_hook(stage: str, what: str):
        def hook(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
            if not trainer.sanity_checking:
                getattr(self, f"_eval_{what}")(trainer, stage)

        hook.__name__ = f"on_{stage}_{what}" if what != "batch" else f"on_{stage}_batch_end"
        return hook

    on_validation_start = _eval_hook("validation", "start")
    on_validation_batch_end = _eval_hook("validation", "batch")
    on_validation_end = _eval_hook("validation", "end")
    on_test_start = _eval_hook("test", "start")
    on_test_batch_end = _eval_hook("test", "batch")
    on_test_end = _eval_hook("test", "end")
    on_predict_start = _eval_hook("predict", "start")
    on_predict_batch_end = _eval_hook("predict", "batch")
    on_predict_end = _eval_hook("predict", "end")
    del _eval_hook


def _epoch_batches(trainer: L.Trainer) -> float:
    """Batches this epoch will run: the loader's (after ``limit_train_batches``), cut by what ``max_steps``
    leaves in batches (optimizer steps × ``accumulate_grad_batches``). Lightning's ``total_train_batches``
    counts the remaining *steps* instead when ``max_epochs`` is -1, which is wrong with accumulation."""
    total = trainer.num_training_batches
    if trainer.max_steps is not None and trainer.max_steps > 0:
        left = (trainer.max_steps - trainer.global_step) * trainer.accumulate_grad_batches
        total = min(total, max(left, 0))
    return total


class FitSummary(L.Callback):
    """At the end of ``fit`` (global rank zero), a few lines on what it did and where its results are::

        fit done in 1:02:03: 46080 optimizer steps (46080 in this run), 32 epochs; max_steps reached
        best val/video_top1 0.4123: runs/k400/checkpoints/best-epoch031-step46080.ckpt
        last checkpoint: runs/k400/checkpoints/last.ckpt
        logs: runs/k400/logs/version_0
        evaluate: video-gn validate -c runs/k400/logs/version_0/config.yaml --ckpt_path <best>

    When the run stopped after its last validation (``max_steps`` in the middle of an epoch, or between
    ``check_val_every_n_epoch`` epochs), the "best" checkpoint is older than the final model: a line says so and
    gives the command that validates ``last.ckpt``.

    Lines without a subject are left out (no checkpoint callback, no logger). If fit stops on an exception
    (a crash, Ctrl-C) it writes one line saying so instead. It never raises.

    Args:
        stream: where to write (default: ``sys.stderr`` at the time of writing, as :class:`TextProgressBar`).
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, *, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.clock = stream, clock
        self._t0: float | None = None
        self._step0 = 0
        self._validated_step: int | None = None  # global step of the last (non-sanity) validation in this fit

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self.clock()
        self._validated_step = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step0 = trainer.global_step  # after a resume restored it (on_fit_start is too early)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, None)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._report(trainer, exception)

    def _report(self, trainer: L.Trainer, exception: BaseException | None) -> None:
        if self._t0 is None:  # not in fit (validate, test) or already reported
            return
        try:
            if trainer.is_global_zero:
                lines = (
                    self.summary_lines(trainer)
                    if exception is None
                    else [self.exception_line(trainer, exception)]
                )
                print(
                    "\n".join(lines), file=self.stream if self.stream is not None else sys.stderr, flush=True
                )
        except Exception as err:  # a summary must never turn a finished fit into a failed one
            try:
                print(f"fit summary: could not be written ({type(err).__name__}: {err})", file=sys.stderr)
            except Exception:
                pass
        finally:
            self._t0 = None

    def _elapsed(self) -> str:
        return format_hms(self.clock() - (self._t0 if self._t0 is not None else self.clock()))

    def exception_line(self, trainer: L.Trainer, exception: BaseException) -> str:
        """One line: how long fit ran, where it stopped, and the newest ``last.ckpt`` to resume from."""
        line = (
            f"fit stopped by {type(exception).__name__} after {self._elapsed()} at step {trainer.global_step}"
            f" (epoch {trainer.current_epoch + 1})"
        )
        last = getattr(trainer.checkpoint_callback, "last_model_path", "")
        if last and os.path.isfile(last):
            line += f"; resume from {last} with --ckpt_path last"
        return line

    def summary_lines(self, trainer: L.Trainer) -> list[str]:
        """The summary written at the end of fit."""
        step, epochs = trainer.global_step, trainer.current_epoch
        line = f"fit done in {self._elapsed()}: {step} optimizer steps"
        if self._step0:
            line += f" ({step - self._step0} in this run)"
        line += f", {epochs} epoch{'' if epochs == 1 else 's'}"
        if trainer.max_steps is not None and 0 <= trainer.max_steps <= step:
            line += "; max_steps reached"
        elif trainer.max_epochs is not None and 0 <= trainer.max_epochs <= epochs:
            line += "; max_epochs reached"
        elif trainer.should_stop:
            line += "; stopped early (should_stop, e.g. early stopping)"
        lines = [line]
        ckpt = trainer.checkpoint_callback
        best = last = ""
        if ckpt is None:
            lines.append("checkpoints: none (no checkpoint callback)")
        else:
            best = getattr(ckpt, "best_model_path", "") or ""
            monitor = getattr(ckpt, "monitor", None)
            score = _scalar(getattr(ckpt, "best_model_score", None))
            if monitor and best:
                lines.append(f"best {monitor} {_fmt(score) if score is not None else '?'}: {best}")
            elif monitor:
                lines.append(f"best {monitor}: none (no validation logged it)")
            last = getattr(ckpt, "last_model_path", "") or ""
            if last:
                lines.append(f"last checkpoint: {last}")
        log_dir = _log_dir(trainer)
        if log_dir:
            lines.append(f"logs: {log_dir}")
        # LightningCLI saves the resolved config in the log folder, or in default_root_dir without a logger
        saved = [os.path.join(d, "config.yaml") for d in (log_dir, trainer.default_root_dir) if d]
        config = next((c for c in saved if os.path.isfile(c)), "CONFIG")
        if best:
            lines.append(f"evaluate: video-gn validate -c {config} --ckpt_path {best}")
        loaders = trainer.val_dataloaders  # None until validation was set up (sanity check or a first run)
        has_val = loaders is not None and (len(loaders) > 0 if isinstance(loaders, (list, tuple)) else True)
        validates = has_val and trainer.limit_val_batches != 0
        if last and validates and step > self._step0 and self._validated_step != step:
            when = f"step {self._validated_step}" if self._validated_step is not None else "never in this run"
            lines.append(
                f"the final model (step {step}) was not validated (last validation: {when}): "
                f"video-gn validate -c {config} --ckpt_path {last}"
            )
        return lines


def _log_dir(trainer: L.Trainer) -> str | None:
    """The first logger's directory, as ``trainer.log_dir`` (which broadcasts: not callable on one rank)."""
    if not trainer.loggers:
        return None
    logger = trainer.loggers[0]
    return getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
