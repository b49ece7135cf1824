"""Lightning callbacks that video_gn adds to every run: the checkpoints (best by val video top-1, last),
``classes.txt`` beside them, the stop of every process at one optimizer step with a checkpoint (Ctrl-C, too many
bad videos under DDP), and the end-of-fit summary; the progress bar is :mod:`video_gn.progress_bar`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

# Light (stdlib only): the mode, interval rule and time format of the data scripts' progress lines.
from video_gn.data.layout import write_classes
from video_gn.data.progress import format_hms
from video_gn.errors import FitInterrupted, TooManyFailedVideos
from video_gn.progress_bar import format_metric, metric_value


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


class GracefulStop(L.Callback):
    """Stops fit on every process at the same optimizer step, so that ``last.ckpt`` can be written, when

    * **Ctrl-C** is pressed (the first time). Lightning's own handling raises ``KeyboardInterrupt`` wherever the
      main thread happens to be, possibly in the middle of an optimizer step, so nothing can be saved and the
      steps since the last checkpoint are lost. Here the first Ctrl-C prints a note and the running training
      batch (and a running validation) finishes; then :class:`~video_gn.errors.FitInterrupted` stops fit and
      :class:`VideoCheckpoint` writes ``last.ckpt`` at that step (resume with ``--ckpt_path last``). A second
      Ctrl-C runs the handler that was there before (Python's: Lightning's immediate stop, nothing saved), for
      when a batch hangs. The handler is installed when training starts (a Ctrl-C during set-up or the sanity
      check stops at once: there is nothing to save yet), only from the main thread and only over Python's
      default one (a notebook's or a debugger's is left alone), and is restored when fit ends.
    * **too many videos fail to decode** on one DDP rank (``data.max_fail_fraction``). Raised where the data
      loader notices, on that rank alone, it left the others waiting in the next gradient all-reduce (with
      gloo: a crash traceback on each; with NCCL: a hang until its timeout) and nothing could be saved. Under
      DDP this callback makes the data module's :class:`~video_gn.data.datamodule.FailureTracker` hold the
      error back (``defer``) and raises it on every rank together: in training at the next optimizer step
      (``last.ckpt`` is written), in validation and test at the end of the loop (shards may hold different
      numbers of batches, so not per batch). Single-process runs raise at once, as before.

    With gradient accumulation the stop waits for the next optimizer step. Under DDP both flags are summed
    across processes at every optimizer step (one 2-element all-reduce; Lightning already syncs every batch
    for SIGTERM), so a terminal's Ctrl-C, which reaches every process, and a signal or data failure on one rank
    both stop all ranks at the same step.
    """

    def __init__(self) -> None:
        self._requested = False
        self._previous: Any = None  # the SIGINT handler to restore; None while ours is not installed
        self._loud = True  # whether this process prints the note (global rank zero)
        self._tracker: Any = None  # the data module's FailureTracker while it defers to us

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = getattr(trainer.datamodule, "tracker", None)
        if trainer.world_size > 1 and hasattr(tracker, "defer"):
            tracker.defer, self._tracker = True, tracker

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._tracker is not None:
            self._tracker.defer, self._tracker = False, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not in setup: Lightning snapshots every signal handler after setup and puts the snapshot back when fit
        # ends, which would reinstall ours. Before training starts there is nothing to save anyway.
        if self._previous is not None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._requested = False
        self._loud = trainer.is_global_zero
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._requested:  # the second press: stop now
            self._restore()
            raise KeyboardInterrupt
        self._requested = True
        if self._loud:
            print(
                "\nCtrl-C: fit stops after this training batch and writes last.ckpt "
                "(Ctrl-C again stops at once, without saving)",
                file=sys.stderr,
                flush=True,
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Weights change only at optimizer steps: stopping between them would drop the accumulated gradients.
        if (batch_idx + 1) % max(1, trainer.accumulate_grad_batches) != 0:
            return
        interrupted, failed = self._flags(trainer, self._requested)
        if failed:
            self._raise_data_failure()
        if interrupted:
            raise FitInterrupted(trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_data(trainer)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_data(trainer)

    def _check_data(self, trainer: L.Trainer) -> None:
        if self._tracker is not None and self._flags(trainer, False)[1]:
            self._raise_data_failure()

    def _flags(self, trainer: L.Trainer, interrupted: bool) -> tuple[bool, bool]:
        """(Ctrl-C pressed, a data failure held back), on any process: every rank calls this at the same
        points (the collective must match), whether or not its handler or tracker is installed."""
        failed = self._tracker is not None and self._tracker.pending is not None
        if trainer.world_size == 1:
            return interrupted, failed
        import torch

        flags = torch.tensor([int(interrupted), int(failed)], device=trainer.strategy.root_device)
        flags = trainer.strategy.reduce(flags, reduce_op="sum")
        return bool(flags[0]), bool(flags[1])

    def _raise_data_failure(self) -> None:
        err = self._tracker.pending if self._tracker is not None else None
        if err is None:  # another rank's videos: its own message lists them
            err = TooManyFailedVideos(
                "another DDP process stopped the run: more of its videos failed to decode than "
                "data.max_fail_fraction allows (its message lists them)"
            )
        else:
            self._tracker.pending = None
        err.synced = True  # every rank raises it at this same point: a collective save is safe
        raise err

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is None or threading.current_thread() is not threading.main_thread():
            return
        # Only if ours is still there: on a bare KeyboardInterrupt Lightning sets SIG_IGN for its shutdown.
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None


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
        #: Optimiser step of the newest ``last.ckpt`` this run wrote (None: none yet).
        self.last_ckpt_step: int | None = None

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

    def saves_on_exception(self, trainer: L.Trainer, exception: BaseException) -> bool:
        """Whether :meth:`on_exception` leaves ``last.ckpt`` at the step fit stopped at for ``exception``.

        True when fit stops for a reason that leaves the weights sound: SIGTERM (a scheduler's pre-emption or
        time limit; Lightning stops at a batch boundary, on every rank at once), a first Ctrl-C
        (:class:`GracefulStop` stops every rank at the same optimizer step) or too many unreadable videos (at once
        in a single-process run; under DDP only when :class:`GracefulStop` raised it on every rank at the same
        point, since a collective save would otherwise wait for ranks that go on). False on a bare
        ``KeyboardInterrupt`` (a second Ctrl-C, or a run without :class:`GracefulStop`), which can land in the
        middle of an optimizer step, on errors of the model (a non-finite loss), and when ``last.ckpt`` is not
        written at all.
        """
        return (
            self.save_last is True
            and not trainer.fast_dev_run
            and not trainer.sanity_checking
            and trainer.global_step > 0
            and trainer.state.fn == "fit"
            and (
                isinstance(exception, (SIGTERMException, FitInterrupted))
                or (
                    isinstance(exception, TooManyFailedVideos)
                    and (trainer.world_size == 1 or getattr(exception, "synced", False))
                )
            )
        )

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Write ``last.ckpt`` if :meth:`saves_on_exception` says so (and it is not already at this step)."""
        step = trainer.global_step
        if not self.saves_on_exception(trainer, exception):
            return
        if step not in (self._periodic_step, self._last_written_step):
            self._write_last_only(trainer)
        if isinstance(exception, (TooManyFailedVideos, FitInterrupted)):
            exception.saved_checkpoint = self.last_model_path
        if trainer.is_global_zero:
            print(
                f"{type(exception).__name__} at step {step}: wrote {self.last_model_path} "
                "(resume with --ckpt_path last)",
                file=sys.stderr,
                flush=True,
            )

    def _write_last_only(self, trainer: L.Trainer) -> None:
        saved_step = self._last_global_step_saved
        # Past the once-per-step guard below: a validation at this same step writes last.ckpt again, with
        # its metrics and the updated best-checkpoint state.
        super()._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._note_last_written(trainer)
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
        self._note_last_written(trainer)

    def _note_last_written(self, trainer: L.Trainer) -> None:
        # save_last="link" makes last.ckpt a link to the newest top-k file, which may be older than this step
        self.last_ckpt_step = trainer.global_step if self.save_last is True else None


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
        self._step0: int | None = None  # global step when training started in this fit
        self._validated_step: int | None = None  # global step of the last (non-sanity) validation in this fit

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self.clock()
        self._validated_step = None
        self._step0 = None  # set when training starts; a resumed run that was already done never starts

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
            saved = getattr(trainer.checkpoint_callback, "last_ckpt_step", None)
            saves_now = getattr(trainer.checkpoint_callback, "saves_on_exception", None)
            if saves_now is not None and saves_now(trainer, exception):  # it writes after this line is made
                saved = trainer.global_step
            behind = ""
            if saved is not None and saved != trainer.global_step:
                lost = trainer.global_step - saved
                behind = f" (step {saved}; the {lost} step{'' if lost == 1 else 's'} after it were not saved)"
            line += f"; resume from {last}{behind} with --ckpt_path last"
        return line

    def summary_lines(self, trainer: L.Trainer) -> list[str]:
        """The summary written at the end of fit."""
        step, epochs = trainer.global_step, trainer.current_epoch
        step0 = step if self._step0 is None else self._step0
        line = f"fit done in {self._elapsed()}: {step} optimizer steps"
        if step0:
            line += f" ({step - step0} in this run)"
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
            score = metric_value(getattr(ckpt, "best_model_score", None))
            if monitor and best:
                lines.append(f"best {monitor} {format_metric(score) if score is not None else '?'}: {best}")
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
        if last and validates and step > step0 and self._validated_step != step:
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
