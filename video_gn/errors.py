"""Errors a user can meet whose message says what to do: the ``video-gn`` command prints them without a
traceback (torch-free, so the command line imports it at start-up)."""

from __future__ import annotations

__all__ = ["FitInterrupted", "StartupError", "TooManyFailedVideos"]


class StartupError(Exception):
    """A problem found before training starts whose message says what to do (printed without traceback)."""


class TooManyFailedVideos(RuntimeError):
    """More videos of a split failed to decode in one epoch than ``data.max_fail_fraction`` allows.

    Attributes:
        saved_checkpoint: the ``last.ckpt`` written before fit stopped (the weights are not at fault), or None.
        synced: raised by every DDP process at the same point (:class:`~video_gn.callbacks.GracefulStop`), so a
            collective checkpoint save is safe.
    """

    saved_checkpoint: str | None = None
    synced: bool = False


class FitInterrupted(Exception):
    """Fit stopped at an optimizer step because the user pressed Ctrl-C (:class:`~video_gn.callbacks.GracefulStop`).

    Attributes:
        step: the optimizer step fit stopped at.
        saved_checkpoint: the ``last.ckpt`` written at that step, or None (checkpointing off, a debug run).
    """

    saved_checkpoint: str | None = None

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted by Ctrl-C at step {step}")
        self.step = step
