"""The argument parser of the argparse-based commands (``video-gn plan|sweep|predict``, ``data_scripts/``).

It behaves like ``video-gn fit`` (LightningCLI, see ``video_gn/lightning_cli.py``) where argparse's defaults
differ: an abbreviated option is refused rather than taken for the option it starts (``--frame 8`` silently
meaning ``--frames 8`` hides typos, and an abbreviation that works today breaks when an option is added), and an
unknown option gets a "did you mean" hint. Torch-free, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

__all__ = ["CommandParser", "did_you_mean"]


def did_you_mean(name: str, known: Sequence[str], cutoff: float = 0.7) -> str | None:
    """The hint line for an unknown option ``name``: ``"  NAME: did you mean A or B?"``, or None if nothing in
    ``known`` is close (``difflib`` ratio ≥ ``cutoff``, at most 3 names) or ``name`` is itself known."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=cutoff)
    if not close or name in known:
        return None
    return f"  {name}: did you mean {' or '.join(close)}?"


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without abbreviations, suggesting the option meant for an unknown one."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        """Parse like argparse; any usage error (status 2) also names the options close to an unknown one."""
        args = list(sys.argv[1:] if args is None else args)
        self._hints = self._suggestions(args)
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def error(self, message: str):
        """Exit with status 2: usage, the message, then the did-you-mean hints (also after, e.g., a missing
        required option that the misspelt one was meant to give)."""
        super().error("\n".join([message, *getattr(self, "_hints", [])]))

    def _suggestions(self, args: list[str]) -> list[str]:
        known = [s for action in self._actions for s in action.option_strings]
        hints = []
        for arg in args:
            if arg == "--":  # the rest is passed on (e.g. sweep's fit overrides)
                break
            name = arg.split("=", 1)[0]
            if not name.startswith("-") or name in known or name.lstrip("-").replace(".", "", 1).isdigit():
                continue
            hint = did_you_mean(name, known)
            if hint:
                hints.append(hint)
        return hints
