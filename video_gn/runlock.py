"""One run per output folder: an exclusive lock held while a ``fit`` or a ``sweep`` writes into it.

Two fits started into the same ``trainer.default_root_dir`` before either has saved a checkpoint would both
pass the "folder already holds checkpoints" check and mix their files (``last.ckpt`` and ``last-v1.ckpt``);
two sweeps into one ``--out`` would run every cell twice. The lock is an advisory ``flock`` on a file in the
folder: the kernel drops it when its process ends, however it ends, so a killed or requeued job never leaves
a stale lock behind. Where the file system does not support locks (some network mounts), or on a platform
without ``fcntl``, nothing is locked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

__all__ = ["FolderLocked", "lock_folder", "process_gone"]

LOCK_NAME = ".video-gn.lock"


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists on this host (so a work folder it named is abandoned).

    A live process of another user (``PermissionError``) counts as alive. Only meaningful for pids recorded on
    this host: callers put the host name beside the pid and leave other hosts' folders alone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class FolderLocked(RuntimeError):
    """Another live process holds the folder's lock."""


def lock_folder(folder: str | os.PathLike, what: str) -> IO[str] | None:
    """Take the folder's lock for this process, creating the folder if needed.

    Args:
        folder: the output folder.
        what: what this process is, for the other process's error message (e.g. ``"video-gn fit"``).

    Returns:
        The open lock file: the lock lasts until it is closed (or the process ends). None where locks are
        not supported.

    Raises:
        FolderLocked: another process holds it; the message names that process and the folder.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    f = open(path, "a+")  # noqa: SIM115 - kept open: closing it releases the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise FolderLocked(
            f"{folder} is in use by {holder}: wait for it to finish or stop it, or write this run elsewhere."
        ) from None
    except OSError:  # ENOLCK / EOPNOTSUPP: a file system without locks
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{what} (pid {os.getpid()} on {socket.gethostname()})\n")
    f.flush()
    return f
