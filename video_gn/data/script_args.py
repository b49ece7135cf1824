"""Argument checks shared by the ``data_scripts/`` command lines: bounded integers, and input folders and
output paths checked before any work starts (so a long run does not fail only when it writes its results)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["bounded_int", "folder_problem", "output_path_problem"]


def bounded_int(minimum: int, maximum: int | None = None):
    """An argparse ``type``: integers ``>= minimum`` (and ``<= maximum``); a usage error otherwise."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not an existing input folder (``"does not exist"``, ``"is not a directory"``), or None."""
    path = Path(path)
    if path.is_dir():
        return None
    return "is not a directory" if path.exists() else "does not exist"


def output_path_problem(path: str | os.PathLike, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written as an output file (``directory=False``) or folder, or None if it can.

    Checks what can be known before any work is done: the path is a folder where a file is wanted (or the
    reverse), one of its parents exists as a file, or this user may not write it (the existing path, or
    the folder in which it would be created), so a long run does not fail only when it writes its results.
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is not a directory"
        if not directory and path.is_dir():
            return f"{path} is a directory, expected a file name"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable (permission denied)"
        return None
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create {path}: {parent} is a file, not a directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot create {path}: no permission to write in {parent}"
            return None
    return None
