"""Download Kinetics-400/600/700 clips from YouTube and cut them to their annotated segment.

Library code behind ``data_scripts/download_kinetics.py``. Reads the official annotation CSVs
(``label,youtube_id,time_start,time_end,split`` with a header; extra columns such as the 700-2020
``is_cc`` and a missing ``label`` column (test split) are tolerated), downloads each video with yt-dlp
(``pip install "video_gn[download]"``; run as a subprocess with an argument list, never a shell), cuts
``[time_start, time_end)`` with PyAV (re-encoded H.264, frame rate kept) and writes::

    <out>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4

Resumable (an existing output is complete: it is written under a temporary name and renamed; the downloads
that a killed run left in ``<out>/.downloads`` are deleted by the next run on the same host), parallel
(threads: the work is mostly network and subprocess), with bounded retries (none for a video yt-dlp reports
removed or private); rows that fail or are rejected are written to a failures CSV in the input format plus
an ``error`` column, so it can be fed back in. yt-dlp is checked to be installed before anything is done.
Labels, splits and ids from the CSV are sanitised before they become path components.

Split names: the validation split goes to ``<out>/val/``, the folder :class:`~video_gn.data.KineticsDataModule`
reads, whatever the annotations call it. DeepMind's original tarballs ship ``validate.csv`` (K600/K700 rows
say ``validate``), the CVDF mirror ``val.csv``; ``validate``, ``validation`` and ``valid`` (in the split
column, in the file name of a CSV without that column, and in ``split=``) all mean ``val``
(:func:`normalize_split`).
"""

from __future__ import annotations

import csv
import glob
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from video_gn.data.prep import transcode, write_rows_csv
from video_gn.data.progress import parallel_map
from video_gn.runlock import process_gone

__all__ = [
    "Annotation",
    "DownloadFn",
    "DownloadSummary",
    "DownloaderNotFound",
    "VideoGone",
    "clip_path",
    "download_kinetics",
    "normalize_split",
    "read_annotations",
    "sanitize_name",
    "yt_dlp_command",
    "yt_dlp_download",
]

#: ``download_fn(youtube_id, dest_dir) -> path of the downloaded full video`` (injectable for tests).
DownloadFn = Callable[[str, Path], Path]

_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
FAILURE_HEADER = ("label", "youtube_id", "time_start", "time_end", "split", "error")
OFFICIAL_HEADER = "label,youtube_id,time_start,time_end,split"
YT_DLP_MISSING = "yt-dlp is not installed: pip install -e '.[download]' or pip install yt-dlp"


class DownloaderNotFound(RuntimeError):
    """The default downloader, yt-dlp, is not installed (checked before any clip is tried)."""


class VideoGone(RuntimeError):
    """The video cannot be downloaded by anyone (removed, private, account closed): not retried.

    A ``download_fn`` may raise it to skip the retries of :func:`download_kinetics`.
    """


#: yt-dlp messages of videos that are gone for good (retrying cannot help): a sizeable share of Kinetics.
_GONE = re.compile(
    r"video unavailable|private video|has been removed|account associated with this video has been "
    r"terminated|no longer available|video is not available",
    re.IGNORECASE,
)
#: ...unless YouTube says it is rate-limiting this client ("Video unavailable. This content isn't available,
#: try again later"): then the video is fine and a later attempt can succeed.
_TRANSIENT = re.compile(r"try again later|rate.?limit|too many requests|HTTP Error 429", re.IGNORECASE)


def sanitize_name(name: str) -> str:
    """Make ``name`` a safe single path component: only ``[A-Za-z0-9_.-]``, no leading ``.``/``-``.

    Runs of other characters (spaces, ``/``, ``\\``, quotes, parentheses, shell metacharacters) become one
    ``_``; e.g. ``"passing American football (in game)"`` -> ``"passing_American_football_in_game"``.

    Raises:
        ValueError: if nothing usable is left (e.g. ``".."`` or ``"///"``).
    """
    safe = _UNSAFE.sub("_", str(name)).strip("._-")
    if not safe:
        raise ValueError(f"name {name!r} has no usable characters for a file name")
    return safe


@dataclass(frozen=True)
class Annotation:
    """One Kinetics clip: raw ``label``/``youtube_id`` from the CSV, segment in whole seconds, split.

    ``folder`` is the sanitised label used as the class folder name.
    """

    label: str
    youtube_id: str
    start: int
    end: int
    split: str
    folder: str = field(default="")

    def row(self) -> list:
        """The annotation as a CSV row in the official column order."""
        return [self.label, self.youtube_id, self.start, self.end, self.split]


#: Other names of the validation split in Kinetics annotation files (DeepMind's ``validate.csv``).
SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val"}


def normalize_split(name: str) -> str:
    """Map a split name from annotations to the dataset folder name: ``validate``/``validation``/``valid``
    -> ``val``; other names are returned stripped (``train``, ``test``, ...)."""
    name = name.strip()
    return SPLIT_ALIASES.get(name.lower(), name)


def _seconds(name: str, value: str) -> int:
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} {value!r} is not a finite time >= 0 seconds")
    return int(round(x))


def read_annotations(
    csv_path: str | os.PathLike, *, split: str | None = None
) -> tuple[list[Annotation], list[tuple[list, str]]]:
    """Read an official Kinetics annotation CSV.

    Args:
        csv_path: the CSV (with header; columns found by name, extra columns ignored).
        split: split to use when the CSV has no ``split`` column (default: the file's stem, e.g. ``val``),
            and a filter otherwise (keep only rows of this split) when given. Split names are normalised
            with :func:`normalize_split` (``validate`` -> ``val``) before use and before comparing.

    Returns:
        ``(annotations, rejected)`` where ``rejected`` holds ``(row, reason)`` for rows with an invalid
        youtube id (must match ``[A-Za-z0-9_-]{11}``), an unusable label/split, or bad times.
    """
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        raise IsADirectoryError(f"annotation CSV {csv_path} is a directory, not a CSV file")
    if not csv_path.is_file():
        raise FileNotFoundError(f"annotation CSV {csv_path} not found")
    if csv_path.suffix.lower() == ".json":
        raise ValueError(
            f"{csv_path}: JSON annotations are not read; pass the CSV files of the same release "
            f"(header {OFFICIAL_HEADER})"
        )
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(
            f"{csv_path}: not a readable UTF-8 CSV ({e}); expected the official Kinetics header "
            f"{OFFICIAL_HEADER}"
        ) from None
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    needed = ("youtube_id", "time_start", "time_end")
    missing = [c for c in needed if c not in header]
    if missing:
        found = f"found {','.join(header)}" if any(header) else "the file is empty"
        raise ValueError(
            f"{csv_path}: missing columns {','.join(missing)} (expected the official Kinetics header "
            f"{OFFICIAL_HEADER}; {found})"
        )
    col = {name: header.index(name) for name in header}
    anns, rejected = [], []
    for row in rows[1:]:
        if not row or all(not c.strip() for c in row):
            continue

        def get(name: str, default: str = "", row: list = row) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else default

        label = get("label", "unlabeled") or "unlabeled"
        row_split = normalize_split(get("split") or split or csv_path.stem)
        if split is not None and "split" in col and row_split != normalize_split(split):
            continue
        out_row = [label, get("youtube_id"), get("time_start"), get("time_end"), row_split]
        vid = get("youtube_id")
        if not _YOUTUBE_ID.fullmatch(vid):
            rejected.append((out_row, f"invalid youtube id {vid!r} (expected 11 of [A-Za-z0-9_-])"))
            continue
        try:
            start, end = _seconds("time_start", get("time_start")), _seconds("time_end", get("time_end"))
            if end <= start:
                raise ValueError(f"time_end {end} <= time_start {start}")
            folder = sanitize_name(label)
            safe_split = sanitize_name(row_split)
        except ValueError as e:
            rejected.append((out_row, str(e)))
            continue
        anns.append(Annotation(label, vid, start, end, safe_split, folder))
    return anns, rejected


def clip_path(out_root: str | os.PathLike, ann: Annotation) -> Path:
    """Return ``<out>/<split>/<label folder>/<id>_<start:06d>_<end:06d>.mp4``, checked to stay inside out."""
    root = Path(out_root).absolute()
    folder = ann.folder or sanitize_name(ann.label)
    if not _YOUTUBE_ID.fullmatch(ann.youtube_id):
        raise ValueError(f"invalid youtube id {ann.youtube_id!r}")
    p = root / sanitize_name(ann.split) / folder / f"{ann.youtube_id}_{ann.start:06d}_{ann.end:06d}.mp4"
    if root not in p.parents:  # defence in depth; sanitize_name already forbids separators and ".."
        raise ValueError(f"clip path {p} escapes the output folder {root}")
    return p


def yt_dlp_command() -> list[str]:
    """The command that runs yt-dlp: the ``yt-dlp`` executable on PATH, else ``python -m yt_dlp``.

    Raises:
        DownloaderNotFound: neither is installed (message: how to install it).
    """
    exe = shutil.which("yt-dlp")
    if exe:
        return [exe]
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        raise DownloaderNotFound(YT_DLP_MISSING) from None
    return [sys.executable, "-m", "yt_dlp"]


def yt_dlp_download(
    youtube_id: str,
    dest_dir: Path,
    *,
    fmt: str = "best[height<=480][ext=mp4]/best[height<=480]/best",
    timeout: float = 600.0,
) -> Path:
    """Download one YouTube video with yt-dlp into ``dest_dir`` and return the file's path.

    Runs ``yt-dlp`` (or ``python -m yt_dlp``) with an argument list (no shell). ``fmt`` selects a single
    progressive format so no FFmpeg merge is needed.

    Raises:
        VideoGone: yt-dlp says the video is unavailable, private or removed (not worth retrying).
        RuntimeError: any other failure.
    """
    if not _YOUTUBE_ID.fullmatch(youtube_id):
        raise ValueError(f"invalid youtube id {youtube_id!r}")
    cmd = yt_dlp_command()
    cmd += [
        "--quiet", "--no-warnings", "--no-playlist", "--no-progress",
        "-f", fmt,
        "-o", str(Path(dest_dir) / f"{youtube_id}.%(ext)s"),
        "--", f"https://www.youtube.com/watch?v={youtube_id}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        gone = _GONE.search(tail[0]) and not _TRANSIENT.search(tail[0])
        error = VideoGone if gone else RuntimeError
        raise error(f"yt-dlp failed for {youtube_id} (exit {proc.returncode}): {tail[0]}")
    files = [p for p in Path(dest_dir).glob(f"{youtube_id}.*") if not p.name.endswith(".part")]
    if not files:
        raise RuntimeError(f"yt-dlp reported success for {youtube_id} but wrote no file in {dest_dir}")
    return max(files, key=lambda p: p.stat().st_size)


@dataclass
class DownloadSummary:
    """Outcome of :func:`download_kinetics` (lists of output paths / ``(row, error)`` pairs).

    ``upscaled`` lists the clips written in this run whose source was smaller than ``short_side`` (they
    were scaled up); ``failures_csv`` is where the failed and rejected rows were written.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[list, str]] = field(default_factory=list)
    rejected: list[tuple[list, str]] = field(default_factory=list)
    upscaled: list[Path] = field(default_factory=list)
    failures_csv: Path | None = None

    def __str__(self) -> str:
        return (
            f"{len(self.done)} downloaded, {len(self.skipped)} already present, "
            f"{len(self.failed)} failed, {len(self.rejected)} rejected rows"
        )

    def report(self, examples: int = 2) -> str:
        """The end-of-run summary: counts, and where the failures are, with the first ``examples`` reasons."""
        lines = [str(self)]
        if self.upscaled:
            lines.append(
                f"{len(self.upscaled)} clips were smaller than the target short side and were upscaled "
                f"(first: {self.upscaled[0]})"
            )
        bad = self.failed + self.rejected
        if bad:
            where = self.failures_csv if self.failures_csv is not None else "the failures CSV"
            what = [f"{len(self.failed)} failed clips"] if self.failed else []
            what += [f"{len(self.rejected)} rejected rows"] if self.rejected else []
            lines.append(
                f"{' and '.join(what)} listed with the reason in {where} (the annotation format plus an "
                "error column: pass it back as input to retry)"
            )
            for row, err in bad[:examples]:
                lines.append(f"  e.g. {row[1] or '(no id)'} ({row[0]}): {err}")
        return "\n".join(lines)


def _work_prefix(pid: int | None = None) -> str:
    """``<host>.<pid>.``: names this process's work folders in ``<out>/.downloads`` (see :func:`_remove_stale`)."""
    return f"{socket.gethostname()}.{os.getpid() if pid is None else pid}."


def _remove_stale(downloads: Path) -> None:
    """Delete the work folders (full downloaded videos) that runs killed on this host left in ``downloads``.

    A folder is stale when the process named in it (:func:`_work_prefix`) is gone; folders of live
    processes and of other hosts (a shared file system) are left alone.
    """
    host = socket.gethostname()
    for d in downloads.glob(f"{glob.escape(host)}.*"):
        pid = d.name[len(host) + 1 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and process_gone(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _fetch_one(
    ann: Annotation,
    *,
    out_root: Path,
    download_fn: DownloadFn,
    retries: int,
    retry_wait: float,
    short_side: int | None,
    crf: int,
    stop: threading.Event | None = None,
) -> tuple[str, Path | list, str]:
    target = clip_path(out_root, ann)
    if target.exists():
        return "skipped", target, ""
    stop = stop or threading.Event()  # never set: its wait() is a plain sleep
    error = ""
    for attempt in range(retries + 1):
        # The run is stopping (Ctrl-C also killed yt-dlp, which looks like a failure): no further attempt.
        if attempt and stop.wait(retry_wait * attempt):
            return "failed", ann.row(), f"stopped before attempt {attempt + 1}: {error}"
        work = Path(
            tempfile.mkdtemp(prefix=f"{_work_prefix()}{ann.youtube_id}-", dir=out_root / ".downloads")
        )
        try:
            raw = Path(download_fn(ann.youtube_id, work))
            info = transcode(raw, target, start=ann.start, end=ann.end, short_side=short_side, crf=crf)
            return "done", target, "upscaled" if info.get("upscaled") else ""
        except VideoGone as e:
            return "failed", ann.row(), f"not retried, the video is gone: {e}".replace("\n", " ")
        except Exception as e:  # noqa: BLE001 - recorded in the failures CSV after the last retry
            error = f"{type(e).__name__}: {e}".replace("\n", " ")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return "failed", ann.row(), f"after {retries + 1} attempts: {error}"


def download_kinetics(
    csv_paths: Sequence[str | os.PathLike] | str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    split: str | None = None,
    download_fn: DownloadFn | None = None,
    workers: int | None = None,
    retries: int = 2,
    retry_wait: float = 5.0,
    short_side: int | None = None,
    crf: int = 23,
    failures_csv: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> DownloadSummary:
    """Download, cut and store every clip listed in ``csv_paths`` (see the module docstring).

    Args:
        csv_paths: one or more official annotation CSVs.
        out_root: output root.
        split: keep only this split (or name the split of CSVs without a ``split`` column).
        download_fn: ``(youtube_id, dest_dir) -> path``; default :func:`yt_dlp_download`, checked to be
            installed once the CSVs and ``out_root`` are checked, before anything is written or downloaded
            (:class:`DownloaderNotFound` otherwise).
        workers: parallel downloads (threads; default ``2 * CPUs``).
        retries: extra attempts per clip after a failure (bounded); a :class:`VideoGone` error (removed,
            private) is not retried.
        retry_wait: seconds before the first retry (grows linearly).
        short_side: also resize the cut clip to this short side (e.g. 256 or 320).
        crf: x264 quality of the re-encoded clip.
        failures_csv: where to write failed/rejected rows (default ``<out>/failures.csv``; written even
            when empty so a run's outcome is visible).
        limit: process at most this many clips (for trying things out).
        progress: show a progress bar with totals.

    Returns:
        A :class:`DownloadSummary`.

    Raises:
        DownloaderNotFound: ``download_fn`` is None and yt-dlp is not installed.
        FileNotFoundError, IsADirectoryError: an annotation CSV does not exist, or is a folder.
        ValueError: an annotation CSV is not in the official format, the CSVs list no clips (of ``split``),
            two labels map to the same folder name, ``out_root`` is a file, or ``retries < 0``.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if isinstance(csv_paths, (str, os.PathLike)):
        csv_paths = [csv_paths]
    out_root = Path(out_root).absolute()
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"output root {out_root} exists and is not a directory")
    summary = DownloadSummary()
    anns: list[Annotation] = []
    for p in csv_paths:
        a, rej = read_annotations(p, split=split)
        anns += a
        summary.rejected += rej
    if not anns and not summary.rejected:
        names = ", ".join(str(p) for p in csv_paths)
        if split is None:
            raise ValueError(f"the annotation CSVs ({names}) list no clips")
        present = sorted({a.split for p in csv_paths for a in read_annotations(p)[0]})
        raise ValueError(
            f"no clips of split {normalize_split(split)!r} in {names} "
            f"(splits there: {', '.join(present) or 'none'})"
        )
    labels_of: dict[tuple[str, str], set[str]] = {}
    for a in anns:
        labels_of.setdefault((a.split, a.folder), set()).add(a.label)
    clashes = {f: sorted(ls) for (_, f), ls in labels_of.items() if len(ls) > 1}
    if clashes:
        raise ValueError(f"different labels map to the same folder name after sanitising: {clashes}")
    seen: set[Path] = set()
    unique = []
    for a in anns:  # the same clip may be listed twice (or in two CSVs)
        if clip_path(out_root, a) not in seen:
            seen.add(clip_path(out_root, a))
            unique.append(a)
    anns = unique[:limit] if limit is not None else unique
    if download_fn is None:  # after the inputs are checked (a mistyped CSV path is the first thing to fix)
        yt_dlp_command()  # fail now, not after retrying every clip
    (out_root / ".downloads").mkdir(parents=True, exist_ok=True)
    _remove_stale(out_root / ".downloads")
    fn = download_fn or yt_dlp_download
    workers = 2 * (os.cpu_count() or 1) if workers is None else workers

    stop = threading.Event()

    def job(ann: Annotation) -> tuple[str, Path | list, str]:
        return _fetch_one(
            ann, out_root=out_root, download_fn=fn, retries=retries, retry_wait=retry_wait,
            short_side=short_side, crf=crf, stop=stop,
        )  # fmt: skip

    for status, item, err in parallel_map(
        job, anns, workers=workers, description="download+cut", progress=progress, threads=True, stop=stop
    ):
        if status == "failed":
            summary.failed.append((item, err))
        else:
            getattr(summary, status).append(item)
            if err == "upscaled":
                summary.upscaled.append(item)
    summary.failures_csv = Path(failures_csv or out_root / "failures.csv")
    _write_failures(summary.failures_csv, summary.failed + summary.rejected)
    _write_label_map(out_root, anns)
    try:
        (out_root / ".downloads").rmdir()
    except OSError:
        pass
    return summary


def _write_failures(path: str | os.PathLike, rows: Iterable[tuple[list, str]]) -> None:
    write_rows_csv(path, FAILURE_HEADER, ([*row, err] for row, err in rows))


def _write_label_map(out_root: Path, anns: Iterable[Annotation]) -> None:
    """Record folder name -> original label (merged with an existing map), so names can be restored."""
    path = out_root / "label_map.csv"
    mapping: dict[str, str] = {}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            mapping = {r["folder"]: r["label"] for r in csv.DictReader(f)}
    for a in anns:
        mapping[a.folder] = a.label
    write_rows_csv(path, ("folder", "label"), sorted(mapping.items()))
