"""Small helpers shared by the data tools: progress with totals and ETA (a rich bar on a terminal, plain
lines in logs) and a process pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TextIO

__all__ = [
    "DEFAULT_LOG_INTERVAL",
    "TextProgress",
    "default_workers",
    "forced_progress_mode",
    "format_hms",
    "log_interval",
    "parallel_map",
    "process_pool",
    "progress_bar",
]


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


#: Seconds between two plain-text progress lines (overridden by the VIDEO_GN_PROGRESS_INTERVAL variable).
DEFAULT_LOG_INTERVAL = 30.0


def format_hms(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds (rounded, negatives as 0)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TextProgress:
    """Plain-text progress for logs (batch/SLURM jobs): one line per ``interval`` seconds, and one at the end.

    Each line reads ``description: done/total (pct%) elapsed H:MM:SS eta H:MM:SS`` (the ETA extrapolates
    the mean rate so far). A first line with the total is written at the start.

    Args:
        total: number of items.
        description: text at the start of each line.
        interval: minimum seconds between two lines (0: a line per update).
        stream: where to write (default: ``sys.stderr`` at the time of each write).
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        interval: float = DEFAULT_LOG_INTERVAL,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.total, self.description, self.interval = total, description or "progress", interval
        self.stream, self.clock = stream, clock
        self.done = 0
        self.start = self.clock()
        self._last_time = self.start
        self._last_done = -1
        self._write(self.start)

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = now - self.start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        if self.done >= self.total:
            eta = "0:00:00"
        elif self.done > 0:
            eta = format_hms(elapsed / self.done * (self.total - self.done))
        else:
            eta = "?"
        return f"{self.description}: {self.done}/{self.total} ({pct:.0f}%) elapsed {format_hms(elapsed)} eta {eta}"

    def _write(self, now: float) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(now), file=stream, flush=True)
        self._last_time, self._last_done = now, self.done

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; write a line if ``interval`` seconds passed since the last one."""
        self.done += n
        now = self.clock()
        if now - self._last_time >= self.interval:
            self._write(now)

    def close(self) -> None:
        """Write the final line (unless the last line written already shows the current count)."""
        if self.done != self._last_done:
            self._write(self.clock())


PROGRESS_MODES = {
    **dict.fromkeys(("0", "off", "false", "no"), "off"),
    **dict.fromkeys(("1", "rich", "bar"), "rich"),
    **dict.fromkeys(("text", "plain", "log"), "text"),
}
_warned_values: set[str] = set()


def forced_progress_mode() -> str | None:
    """The mode ``VIDEO_GN_PROGRESS`` forces ("rich", "text" or "off"), or None (unset: choose by terminal).

    An unknown value warns once (naming the valid ones) and counts as unset.
    """
    raw = os.environ.get("VIDEO_GN_PROGRESS", "")
    env = raw.strip().lower()
    if env in PROGRESS_MODES:
        return PROGRESS_MODES[env]
    if env and env not in _warned_values:
        _warned_values.add(env)
        warnings.warn(
            f"VIDEO_GN_PROGRESS={raw!r} is not a known value; use rich (or 1, bar), text (or plain, log) or 0 "
            "(or off, false, no). Choosing by the terminal instead (rich on a terminal, text otherwise).",
            stacklevel=2,
        )
    return None


def _progress_mode() -> str:
    """The mode: "rich", "text" or "off", from VIDEO_GN_PROGRESS and whether stderr is a terminal."""
    return forced_progress_mode() or ("rich" if sys.stderr.isatty() else "text")


def log_interval(interval: float | None) -> float:
    """Seconds between plain progress lines: ``interval`` if given, else ``VIDEO_GN_PROGRESS_INTERVAL``, else
    the default."""
    if interval is not None:
        return interval
    env = os.environ.get("VIDEO_GN_PROGRESS_INTERVAL")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ValueError(f"VIDEO_GN_PROGRESS_INTERVAL must be a number of seconds, got {env!r}") from None
    return DEFAULT_LOG_INTERVAL


@contextmanager
def progress_bar(
    *, total: int, description: str, enabled: bool = True, interval: float | None = None
) -> Iterator[Callable[..., None]]:
    """Show progress with ``done/total``, elapsed time and ETA on stderr; yields ``advance(n=1)``.

    On a terminal this is a rich progress bar. When stderr is not a terminal (batch and SLURM jobs, logs
    redirected to a file) it writes plain lines instead (:class:`TextProgress`): the total at the start,
    ``description: done/total (pct%) elapsed H:MM:SS eta H:MM:SS`` at most every ``interval`` seconds,
    and always a last line at the end. The environment variable ``VIDEO_GN_PROGRESS`` forces a mode:
    ``1``/``rich`` (the bar), ``text`` (the lines), ``0``/``off`` (nothing).

    Args:
        total: number of items.
        description: text left of the bar (start of each line).
        enabled: if False, nothing is shown (``advance`` is a no-op).
        interval: seconds between two plain-text lines (default: ``VIDEO_GN_PROGRESS_INTERVAL`` or 30).
    """
    mode = _progress_mode() if enabled else "off"
    if mode == "off":
        yield lambda n=1: None
        return
    if mode == "text":
        text = TextProgress(total, description, interval=log_interval(interval))
        try:
            yield text.advance
        finally:
            text.close()
        return
    from rich.console import Console
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
        console=Console(stderr=True),  # the terminal the mode was chosen by; stdout stays for results
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor of ``workers`` processes (fork on Linux for a fast start, else spawn)."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context(method), initializer=_ignore_sigint
    ) as pool:
        yield pool


def _ignore_sigint() -> None:
    """Workers ignore Ctrl-C (the terminal sends it to every process of the group): the parent alone stops
    the map, the items in progress finish cleanly, and no worker prints a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_script(main: Callable[[], int], on_interrupt: str) -> int:
    """Run a data script's ``main``; Ctrl-C prints one line (``on_interrupt``: what to do next) and exits 130
    instead of a traceback."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {on_interrupt}", file=sys.stderr, flush=True)
        return 130


def parallel_map(
    fn: Callable,
    items: list,
    *,
    workers: int | None = None,
    description: str = "",
    progress: bool = True,
    threads: bool = False,
    stop: threading.Event | None = None,
) -> list:
    """Apply ``fn`` to every item in parallel with a progress bar; return results in input order.

    Args:
        fn: a picklable (module-level) function unless ``threads`` is True.
        items: the inputs.
        workers: processes/threads (default: CPUs available); 0 or 1 runs in this process.
        description: progress bar text.
        progress: show the progress bar.
        threads: use threads instead of processes (for I/O-bound work or unpicklable ``fn``).
        stop: set when the map stops early, before the items in progress are waited for: a long ``fn`` (a
            download with retries) can check it to give up instead of starting another attempt.

    An exception from ``fn`` (or Ctrl-C) stops the map: the items not started yet are dropped, those in
    progress are waited for, and the exception is raised.
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
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    advance()
            except BaseException:
                # Ctrl-C or a failing item: drop the queued items, or leaving the `with` would run them all
                # first (a download run would go on for hours after Ctrl-C, with no progress shown).
                if stop is not None:
                    stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return results
