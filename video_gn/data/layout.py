"""Dataset layouts on disk: which videos a split has, their labels, and the class list.

Two layouts are read (pytorchvideo's conventions):

- folders: ``<root>/<split>/<class_name>/<video>.<ext>`` for any container PyAV reads
  (extensions in :data:`VIDEO_EXTENSIONS`; other files are ignored);
- lists: ``<root>/<split>.csv`` with one ``path label`` per line (whitespace-separated, the label last,
  so paths may contain spaces); the label is a class index or a class name; relative paths are
  resolved against ``root``; a line with only a path has label -1 (unlabelled): a last token that looks
  like a file name (holds a ``/`` or ends with a video extension) is part of the path, not a label
  (:func:`~video_gn.data.filelists.split_list_line`); blank lines and ``#`` comments are skipped.
  Comma-separated files (``path,label``, or an official Kinetics annotation CSV
  ``label,youtube_id,time_start,time_end,split`` saved as ``<split>.csv``) are refused with an error that
  says how to convert them.

Listed or found files that do not exist (a stale list, a broken symlink) are checked at setup with one
``stat`` each: they are dropped with one warning giving their number and the first few paths, and
:func:`list_split` fails if more than ``max_missing_fraction`` of the split (or all of it) is missing.

When both exist for a split, the list wins (it is the explicit choice). The validation split is
``val``; a root without ``val/`` or ``val.csv`` but with ``validate/`` or ``validate.csv`` (the name in
DeepMind's Kinetics annotation files) uses those (:data:`SPLIT_ALIASES`). Classes come from
``<root>/classes.txt`` (one name per line) when present, otherwise from the sorted union of the class
folders of all splits, or of the class names used in the lists (or ``0..max`` when lists use integer
labels only). The same class-to-index mapping therefore holds for every split.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from video_gn._pytorchvideo import ptv_labeled_video_paths
from video_gn.data import prep
from video_gn.data.filelists import split_list_line

__all__ = [
    "VIDEO_EXTENSIONS",
    "SPLITS",
    "SPLIT_ALIASES",
    "check_not_comma_separated",
    "find_classes",
    "split_exists",
    "list_split",
    "write_classes",
]

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = frozenset(prep.VIDEO_EXTENSIONS)  # one list for the loader, predict and the data scripts


#: Other names a split may be stored under, used when the usual name is absent: DeepMind's Kinetics
#: annotation files call the validation split "validate" (data_scripts/download_kinetics.py writes val/).
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {"val": ("validate",)}


def _csv(root: Path, split: str) -> Path:
    return root / f"{split}.csv"


def _stored_as(root: Path, split: str) -> str:
    """The name ``split`` is stored under in ``root``: itself, else the first alias that exists."""
    for name in (split, *SPLIT_ALIASES.get(split, ())):
        if _csv(root, name).is_file() or (root / name).is_dir():
            return name
    return split


def split_exists(root: str | Path, split: str) -> bool:
    """Whether ``root`` has a list file or a folder for ``split`` (or for an alias: ``validate`` for ``val``)."""
    root = Path(root)
    name = _stored_as(root, split)
    return _csv(root, name).is_file() or (root / name).is_dir()


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


_KINETICS_COLUMNS = frozenset({"youtube_id", "time_start", "time_end"})
_HEADER_WORDS = frozenset(
    {"path", "label", "video", "filename", "file", "class", "split", *_KINETICS_COLUMNS}
)


def _read_csv(csv: Path) -> list[tuple[str, str | None, int]]:
    """(path, raw label or None, line number) for every non-empty, non-comment line."""
    rows = []
    for lineno, line in enumerate(csv.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not rows:  # the first data line decides whether this is a `path label` list at all
            check_not_comma_separated(csv, line, lineno)
            if skip_header_line(csv, line, lineno):
                continue
        path, label = split_list_line(line)
        rows.append((path, label, lineno))
    return rows


def skip_header_line(csv: Path, line: str, lineno: int) -> bool:
    """True (with a warning) when the first data line of a list is a header such as ``path label``.

    pytorchvideo's lists have no header; read as data, ``path label`` would add a class named "label" (and
    shift every class index after it) and a missing file named "path".
    """
    words = line.lower().split()
    if not words or not set(words) <= _HEADER_WORDS:
        return False
    warnings.warn(f"{csv}, line {lineno}: skipping the header line {line!r}", stacklevel=3)
    return True


def check_not_comma_separated(csv: Path, line: str, lineno: int) -> None:
    """Refuse a comma-separated file with an error that says what is expected and how to convert."""
    if "," not in line:
        return
    fields = [f.strip().lower() for f in line.split(",")]
    expected = (
        f"{csv.name} must list one `path label` per line, separated by whitespace (pytorchvideo's "
        "convention; the label last, a class name or a class index)"
    )
    if _KINETICS_COLUMNS & set(fields):
        raise ValueError(
            f"{csv}, line {lineno}: {line!r} is the header of an official Kinetics annotation CSV "
            f"(label,youtube_id,time_start,time_end,split), which lists YouTube ids, not video files; "
            f"{expected}. Download and cut the clips with data_scripts/download_kinetics.py (it writes "
            f"<out>/<split>/<class>/*.mp4, which data.root can point at directly), then, if you want lists, "
            f"write them with data_scripts/make_filelists.py; keep the annotation CSVs out of the dataset root"
        )
    last = fields[-1]
    single_token = len(line.split()) == 1
    looks_comma = bool(last) and (
        last.lstrip("-").isdigit()
        or (single_token and not last.endswith(prep.VIDEO_EXTENSIONS))
        or (single_token and set(fields) <= _HEADER_WORDS)
    )
    if looks_comma:
        raise ValueError(
            f"{csv}, line {lineno}: {line!r} looks comma-separated; {expected}. Convert it by replacing the "
            f"last comma of each line with a space (e.g. sed -E 's/,([^,]*)$/ \\1/' {csv.name}) and drop "
            f"any header line, or write the lists from a <split>/<class>/ folder layout with "
            f"data_scripts/make_filelists.py"
        )


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def find_classes(root: str | Path) -> list[str]:
    """The class names of a dataset root, index i being class i (see the module docstring for the rules).

    Args:
        root: dataset root.

    Returns:
        Class names.

    Raises:
        FileNotFoundError: root does not exist or holds no split.
        ValueError: no class can be found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset root {str(root)!r} does not exist (or is not a directory): point data.root at a folder "
            "with <split>/<class>/ videos or <split>.csv lists, or set data.synthetic to generate the demo dataset"
        )
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        names = [
            line.strip() for line in classes_txt.read_text(encoding="utf-8-sig").splitlines() if line.strip()
        ]
        if not names:
            raise ValueError(f"{classes_txt} is empty; write one class name per line")
        if len(set(names)) != len(names):
            raise ValueError(f"{classes_txt} lists a class twice")
        return names
    present = [s for s in SPLITS if split_exists(root, s)]
    if not present:
        raise FileNotFoundError(
            f"dataset root {str(root)!r} has none of the splits {SPLITS}: expected <root>/<split>/<class>/*.mp4 "
            f"folders or <root>/<split>.csv lists"
        )
    names: set[str] = set()
    max_int = -1
    for split in present:
        split = _stored_as(root, split)
        csv = _csv(root, split)
        if csv.is_file():
            for _, label, _ in _read_csv(csv):
                if label is None:
                    continue
                if _is_int(label):
                    max_int = max(max_int, int(label))
                else:
                    names.add(label)
        else:
            names.update(_class_dirs(root / split))
    if names and max_int >= 0:
        raise ValueError(
            f"{root}: the lists mix class names and integer labels without a classes.txt; add "
            f"{classes_txt} (one class name per line, line i = label i)"
        )
    if names:
        return sorted(names)
    if max_int >= 0:
        return [str(i) for i in range(max_int + 1)]
    raise ValueError(f"{root}: no classes found (no class folders, no labels in the lists, no classes.txt)")


def list_split(
    root: str | Path, split: str, classes: list[str], *, max_missing_fraction: float = 1.0
) -> ptv_labeled_video_paths.LabeledVideoPaths:
    """The (path, label) pairs of one split as pytorchvideo's LabeledVideoPaths.

    Every listed (or found) file is checked to exist (one ``stat`` each); missing ones are dropped with one
    warning that gives their number and the first few paths.

    Args:
        root: dataset root.
        split: "train", "val" or "test".
        classes: class names, index = label (from :func:`find_classes`).
        max_missing_fraction: the most of the split that may be missing (0 <= f <= 1); past it, or when
            every file is missing, this fails.

    Returns:
        LabeledVideoPaths with absolute paths; ``item[1]["label"]`` is the class index (-1: unlabelled).

    Raises:
        FileNotFoundError: the split has neither a list nor a folder, or too many of its files are missing.
        ValueError: the split is empty, a list has an unknown label, or a list is comma-separated.
    """
    if not 0.0 <= max_missing_fraction <= 1.0:
        raise ValueError(f"max_missing_fraction must be in [0, 1], got {max_missing_fraction}")
    root = Path(root)
    index = {name: i for i, name in enumerate(classes)}
    split = _stored_as(root, split)  # val may be stored as validate/ or validate.csv
    csv = _csv(root, split)
    pairs: list[tuple[str, int]] = []
    if csv.is_file():
        for path, label, lineno in _read_csv(csv):
            p = Path(path)
            p = p if p.is_absolute() else root / p
            if label is None:
                target = -1
            elif label in index:
                target = index[label]
            elif _is_int(label) and 0 <= int(label) < len(classes):
                target = int(label)
            else:
                raise ValueError(
                    f"{csv}, line {lineno}: unknown label {label!r}; expected a class name from the class "
                    f"list or an integer in [0, {len(classes)}) (classes: {_preview(classes)})"
                )
            pairs.append((str(p), target))
        where = str(csv)
    elif (root / split).is_dir():
        split_dir = root / split
        for name in _class_dirs(split_dir):
            if name not in index:
                raise ValueError(
                    f"{split_dir / name}: class folder {name!r} is not in the class list ({_preview(classes)}); "
                    f"add it to {root / 'classes.txt'} or remove the folder"
                )
            files = sorted(  # symlinks too: a broken one is reported as missing below, not hidden
                f
                for f in (split_dir / name).iterdir()
                if f.suffix.lower() in VIDEO_EXTENSIONS
                and not f.name.startswith(".")
                and (f.is_symlink() or f.is_file())
            )
            pairs.extend((str(f), index[name]) for f in files)
        where = str(split_dir)
    else:
        raise FileNotFoundError(
            f"split {split!r} not found under {str(root)!r}: expected {root / split}/<class>/*.mp4 or {csv}"
        )
    if not pairs:
        raise ValueError(
            f"split {split!r} is empty: {where} lists no video files ({sorted(VIDEO_EXTENSIONS)})"
        )
    pairs = _drop_missing(pairs, where, root, max_missing_fraction)
    return ptv_labeled_video_paths.LabeledVideoPaths(pairs)


def _drop_missing(
    pairs: list[tuple[str, int]], where: str, root: Path, max_missing_fraction: float
) -> list[tuple[str, int]]:
    """Drop pairs whose file does not exist, with one warning; fail past ``max_missing_fraction``."""
    missing = [path for path, _ in pairs if not os.path.isfile(path)]
    if not missing:
        return pairs
    n, total = len(missing), len(pairs)
    shown = ", ".join(repr(p) for p in missing[:3]) + (", ..." if n > 3 else "")
    if n == total or n > max_missing_fraction * total:
        raise FileNotFoundError(
            f"{where}: {n} of {total} listed videos do not exist ({100 * n / total:.1f} %, more than "
            f"max_fail_fraction={max_missing_fraction}); first: {shown}. Relative paths in a list are "
            f"resolved against the dataset root {str(root)!r}: fix the paths or the root, rewrite the list "
            f"(data_scripts/make_filelists.py), or raise data.max_fail_fraction"
        )
    warnings.warn(
        f"{where}: {n} of {total} listed videos do not exist and are skipped; first: {shown}",
        RuntimeWarning,
        stacklevel=3,
    )
    gone = set(missing)
    return [pair for pair in pairs if pair[0] not in gone]


def write_classes(classes: list[str], dirpath: str | Path) -> Path:
    """Write ``classes.txt`` (one name per line, line i = class i) and ``classes.json`` into ``dirpath``.

    Args:
        classes: class names.
        dirpath: directory (created if needed), e.g. the checkpoint directory.

    Returns:
        Path of classes.txt.
    """
    dirpath = Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    txt = dirpath / "classes.txt"
    txt.write_text("".join(f"{c}\n" for c in classes))
    (dirpath / "classes.json").write_text(json.dumps({"classes": list(classes)}, indent=1) + "\n")
    return txt


def _preview(classes: list[str], n: int = 8) -> str:
    shown = ", ".join(repr(c) for c in classes[:n])
    return f"{shown}, ... ({len(classes)} in all)" if len(classes) > n else shown
