"""Small helpers shared by the data tools: a rich progress bar with totals and a process pool."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

__all__ = ["default_workers", "parallel_map", "process_pool", "progress_bar"]


def default_workers(workers: int | None) -> int:
    """Return ``workers`` or, if None, the number of CPUs available to this process (at least 1)."""
    if workers is not None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 or 1 = run in this process), got {workers}")
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def progress_bar(*, total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Show a progress bar with ``done/total``, elapsed time and ETA; yields ``advance(n=1)``.

    Args:
        total: number of items.
        description: text left of the bar.
        enabled: if False, nothing is shown (``advance`` is a no-op).
    """
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        transient=False,
        disable=not sys.stderr.isatty() and os.environ.get("VIDEO_GN_PROGRESS") != "1",
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor of ``workers`` processes (fork on Linux for a fast start, else spawn)."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        yield pool


def parallel_map(
    fn: Callable,
    items: list,
    *,
    workers: int | None = None,
    description: str = "",
    progress: bool = True,
    threads: bool = False,
) -> list:
    """Apply ``fn`` to every item in parallel with a progress bar; return results in input order.

    Args:
        fn: a picklable (module-level) function unless ``threads`` is True.
        items: the inputs.
        workers: processes/threads (default: CPUs available); 0 or 1 runs in this process.
        description: progress bar text.
        progress: show the progress bar.
        threads: use threads instead of processes (for I/O-bound work or unpicklable ``fn``).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    workers = default_workers(workers)
    results: list = [None] * len(items)
    with progress_bar(total=len(items), description=description, enabled=progress) as advance:
        if workers <= 1 or len(items) <= 1:
            for i, item in enumerate(items):
                results[i] = fn(item)
                advance()
            return results
        if threads:
            pool_cm = ThreadPoolExecutor(max_workers=workers)
        else:
            pool_cm = process_pool(workers)
        with pool_cm as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                advance()
    return results
