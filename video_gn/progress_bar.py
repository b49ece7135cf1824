"""The training progress bar: Rich on a terminal, and on a log file (SLURM, nohup, ``> fit.out``) plain timed
lines with totals, rates, ETAs and the latest metrics (:class:`TextProgressBar`); ``VIDEO_GN_PROGRESS``
chooses (see :func:`progress_mode`)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

# Light (stdlib only): the mode, interval rule and time format of the data scripts' progress lines.
from video_gn.data.progress import forced_progress_mode, format_hms, log_interval

__all__ = [
    "SilentProgressBar",
    "TextProgressBar",
    "format_metric",
    "metric_value",
    "progress_bar_callback",
    "progress_mode",
    "run_totals",
    "stdout_is_terminal",
]


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


def metric_value(v: Any) -> float | int | None:
    """A Python number from a number or a one-element tensor (None for anything else)."""
    if hasattr(v, "numel"):
        if v.numel() != 1:
            return None
        v = v.item()
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def format_metric(v: float | int) -> str:
    """Integers as they are, floats with 4 significant digits (``1.234``, ``0.4123``, ``1.2e-05``)."""
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def _metrics_text(metrics: Mapping[str, Any], prefix: str = "") -> str:
    """``name value | name value`` for the scalar metrics whose name starts with ``prefix``."""
    items = []
    for name, value in metrics.items():
        if name.startswith(prefix) and (x := metric_value(value)) is not None:
            items.append(f"{name} {format_metric(x)}")
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
