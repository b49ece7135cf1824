"""Checkpoint files that are either the old one or the new one, never half of either.

Lightning's own writer (``_atomic_save``) goes through fsspec, which for a local path writes a temporary file
in ``$TMPDIR`` and then ``shutil.move``-s it over the checkpoint. When ``$TMPDIR`` is on another file system
than the run (the usual cluster layout: node-local ``/tmp``, runs on NFS or Lustre) that move is a
truncate-and-copy: a job killed during it, or a full disk, leaves ``last.ckpt`` empty or cut short and the
previous good one gone. :class:`AtomicCheckpointIO` writes next to the target and renames, which is atomic on
one file system; every ``video-gn fit`` uses it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from video_gn.models.pretrained import why_torch_load_failed

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` whose local saves are atomic.

    A local checkpoint is written to ``.<name>.tmp-<pid>`` in its own folder, flushed to disk, then renamed
    over ``<name>`` (``os.replace``). If the write fails (a full disk, an interruption), the temporary file is
    removed and the exception propagates, with the previous checkpoint intact. Remote paths (``s3://`` ...)
    are left to Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        text = os.fspath(path)
        if storage_options is not None or ("://" in text and not text.startswith("file://")):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(text.removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def read_checkpoint(
    path: str | os.PathLike, *, option: str = "--ckpt_path", mmap: bool = False
) -> dict[str, Any]:
    """Load a ``video-gn fit`` checkpoint (tensors only: ``weights_only=True``), or say why it is not one.

    Args:
        path: the ``.ckpt`` file.
        option: how the user named it, for the messages.
        mmap: map the tensors instead of reading them (to look at the hyper-parameters only).

    Returns:
        The checkpoint dict (``state_dict``, ``hyper_parameters``, loop state ...).

    Raises:
        ValueError: the file is not a torch file, holds pickled objects beyond tensors, is cut short or corrupt,
            or is not a training checkpoint (e.g. a bare state dict); the message says which.
    """
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap can only be used" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) torch file
    except Exception as err:  # empty, truncated, not a torch file, or pickled objects beyond tensors
        raise ValueError(
            f"{option} {path} could not be read as a checkpoint: {why_torch_load_failed(path, err)}. Use another "
            "checkpoint of the run (best-*.ckpt or last.ckpt in <trainer.default_root_dir>/checkpoints)."
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(
            f"{option} {path} is not a checkpoint written by `video-gn fit` (no state_dict / hyper_parameters). "
            "To start a model from a bare weights file (state dict, 2D ImageNet checkpoint), set "
            f"model.pretrained: {path} instead."
        )
    return ckpt
