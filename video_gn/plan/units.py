"""Memory sizes as users type them (``80GiB``, ``16 GB``) and as ``video-gn plan`` prints them."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_bytes(text: str | int | float) -> int:
    """Parse a memory size such as ``"80GiB"``, ``"16 GB"``, ``"512M"`` or ``1e9`` into bytes.

    Args:
        text: a number with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB or the bare
            letters K/M/G/T (powers of 1024, as GPU memory is quoted).

    Returns:
        The size in bytes.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(
                f"Cannot parse memory size {text!r}; expected a number with an optional unit, "
                "e.g. 80GiB, 16GB, 512MiB, 24G."
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    n = value * _UNITS[unit]
    if not math.isfinite(n) or n < 1:
        raise ValueError(f"Memory size must be at least one byte and finite, got {text!r}.")
    return int(n)


def format_bytes(n: float | None) -> str:
    """Human-readable binary size (``"1.50 GiB"``); ``"-"`` for None."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
