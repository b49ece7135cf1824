"""``path label`` file lists: reading and splitting their lines, writing them from the folder layout
(``data_scripts/make_filelists.py``), and copying them without bad files (``verify_videos.py --clean-csv``)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from video_gn.data.prep import VIDEO_EXTENSIONS, find_videos
from video_gn.data.progress import progress_bar
from video_gn.data.script_args import folder_problem

__all__ = ["make_filelists", "read_list", "split_list_line", "write_clean_csv"]


def split_list_line(line: str) -> tuple[str, str | None]:
    """Split one line of a ``path label`` list into ``(path, label)``; ``label`` is None if there is none.

    The label is the last whitespace-separated token, so paths may contain spaces, unless that token
    looks like a file name (it holds a ``/`` or ``\\``, or ends with a video extension): then the whole
    line is a path without a label (``train/swim fast/0.mp4`` is one path, not path ``train/swim`` with
    label ``fast/0.mp4``). A label-less path whose last part has a space and no video extension cannot be
    told from ``path label``; name such files with an extension.

    Args:
        line: one line, without the newline.

    Returns:
        ``(path, label or None)``, both stripped.
    """
    line = line.strip()
    parts = line.rsplit(None, 1)
    if len(parts) == 1:
        return line, None
    last = parts[1]
    if "/" in last or "\\" in last or last.lower().endswith(VIDEO_EXTENSIONS):
        return line, None
    return parts[0], last


def read_list(csv_path: Path) -> list[tuple[str, str]]:
    """Read a ``path label`` list into ``[(path, label)]`` (label ``""`` if none; :func:`split_list_line`); a
    header line such as ``path label`` is skipped with a warning.

    Raises:
        ValueError: the file is comma-separated (e.g. an official Kinetics annotation CSV), with the
            reason and how to convert it (:func:`video_gn.data.layout.check_not_comma_separated`).
    """
    from video_gn.data.layout import _read_csv  # layout imports this module (split_list_line)

    return [(path, label or "") for path, label, _ in _read_csv(Path(csv_path))]


def write_clean_csv(
    csv_in: str | os.PathLike,
    csv_out: str | os.PathLike,
    bad_paths: Iterable[str],
    *,
    root: str | None = None,
) -> int:
    """Copy the ``path label`` list ``csv_in`` to ``csv_out`` without the rows whose file is in ``bad_paths``.

    Paths in the list are resolved against ``root`` (default: the list's folder) before comparing.

    Returns:
        The number of rows removed.
    """
    csv_in = Path(csv_in)
    base = Path(root) if root is not None else csv_in.parent
    bad = {os.path.abspath(p) for p in bad_paths}
    kept, removed = [], 0
    for path, label in read_list(csv_in):
        if os.path.abspath(base / path) in bad:
            removed += 1
        else:
            kept.append(f"{path} {label}".rstrip())
    Path(csv_out).write_text("".join(k + "\n" for k in kept))
    return removed


def make_filelists(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    classes_from: str | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Turn the folder layout ``<root>/<split>/<class>/<video>`` into ``<split>.csv`` lists and classes.txt.

    Each list line is ``<path relative to out_dir> <label index>`` (pytorchvideo's ``LabeledVideoPaths``
    convention); the label index is the class's position in ``classes.txt``. Class order: ``classes`` if
    given, else an existing ``<root>/classes.txt``, else the sorted union of class folders of all splits.
    Listing the class folders (the slow part on a network file system: Kinetics-400 has 1,200 of them
    and 300,000 files) shows progress with totals (:func:`~video_gn.data.progress.progress_bar`).

    Args:
        root: dataset root.
        splits: split folder names (default: every sub-folder of root that contains class folders).
        out_dir: where to write the lists and classes.txt (default: root).
        classes: explicit class order.
        classes_from: where ``classes`` came from, for error messages (e.g. the file it was read from;
            default: "the classes argument").
        progress: show progress (class folders listed / all class folders).

    Returns:
        ``{split: csv_path}``.
    """
    root = Path(root)
    if why := folder_problem(root):
        raise FileNotFoundError(f"dataset root {root} {why}")
    out_dir = Path(out_dir) if out_dir is not None else root
    if splits is None:
        splits = sorted(
            d.name
            for d in root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and any(c.is_dir() for c in d.iterdir())
        )
    if not splits:
        raise ValueError(f"no split folders (<root>/<split>/<class>/...) found in {root}")
    class_dirs: dict[str, list[Path]] = {}
    for split in splits:
        sdir = root / split
        if not sdir.is_dir():
            found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
            raise FileNotFoundError(
                f"split folder {sdir} does not exist (folders in {root}: {', '.join(found) or 'none'})"
            )
        class_dirs[split] = [c for c in sorted(sdir.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    per_split: dict[str, dict[str, list[Path]]] = {split: {} for split in splits}
    total = sum(len(dirs) for dirs in class_dirs.values())
    with progress_bar(total=total, description=f"list {root.name}", enabled=progress) as advance:
        for split, dirs in class_dirs.items():
            for c in dirs:
                per_split[split][c.name] = find_videos(c)
                advance()
    folder_classes = sorted({c for s in per_split.values() for c in s})
    source = classes_from or "the classes argument"
    if classes is None and (root / "classes.txt").is_file():
        classes = [
            ln.strip()
            for ln in (root / "classes.txt").read_text(encoding="utf-8-sig").splitlines()
            if ln.strip()
        ]
        source = str(root / "classes.txt")
    if classes is None:
        classes = folder_classes
    if not classes:
        raise ValueError(
            f"no class folders in the splits {list(splits)} of {root} (and the class list is empty)"
        )
    twice = sorted(c for c, n in Counter(classes).items() if n > 1)
    if twice:
        raise ValueError(f"{source} lists classes twice: {twice[:10]}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in folder_classes if c not in index]
    if unknown:
        raise ValueError(
            f"class folders {unknown[:10]} are not in the class list ({len(classes)} classes, from "
            f"{'the folders' if classes is folder_classes else source})"
        )
    # Paths relative to the folder holding the lists, which is what the loader resolves them against
    # (with out_dir elsewhere they start with ../ ). Every list is built and checked before any file is
    # written, so a failure leaves the old lists as they were.
    base = out_dir.absolute()
    lists = {}
    for split, by_class in per_split.items():
        lines = [
            f"{Path(os.path.relpath(p.absolute(), base)).as_posix()} {index[c]}\n"
            for c in sorted(by_class)
            for p in by_class[c]
        ]
        if not lines:
            raise ValueError(f"split {split!r} in {root} holds no video files (nothing written)")
        lists[split] = "".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    written = {}
    for split, text in lists.items():
        written[split] = out_dir / f"{split}.csv"
        written[split].write_text(text)
    return written
