"""The sweep grid: cells (norm x batch x frames), named sub-grids expanded and merged, the YAML file read.

The file format is in the :mod:`video_gn.sweep` docstring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from video_gn.norm_kinds import NORM_KINDS


@dataclass(frozen=True)
class Cell:
    """One training configuration of the grid (without the seed).

    Attributes:
        norm: norm spec, ``"<kind>"`` or ``"<kind>+ws"``.
        batch: per-device batch size.
        frames: clip length T.
        sampling_rate: frame stride inside the clip (None: the base config's).
        experiments: names of the sub-grids containing this cell.
    """

    norm: str
    batch: int
    frames: int
    sampling_rate: int | None = None
    experiments: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @property
    def kind(self) -> str:
        """The ``model.norm`` value."""
        return self.norm.split("+")[0]

    @property
    def ws(self) -> bool:
        """The ``model.ws`` value."""
        return self.norm.endswith("+ws")


@dataclass
class SweepSpec:
    """A parsed grid file (or command-line equivalent).

    Attributes:
        base: the ``video-gn fit`` configs every run starts from, applied in order (``-c a.yaml -c b.yaml``).
        clips: training clips seen per run (max_steps = clips // (batch × devices)).
        seeds: seeds, one run per cell and seed.
        devices: devices per run (DDP when > 1).
        cells: the configurations.
        overrides: extra ``video-gn fit`` arguments for every run.
    """

    base: list[str]
    clips: int
    seeds: list[int]
    devices: int
    cells: list[Cell]
    overrides: list[str] = field(default_factory=list)


def parse_norm(spec: str) -> str:
    """Validate a norm spec such as ``"gn+ws"`` and return it normalised (lower case, no spaces)."""
    norm = str(spec).strip().lower().replace(" ", "")
    kind, _, suffix = norm.partition("+")
    if kind not in NORM_KINDS or suffix not in ("", "ws"):
        raise ValueError(
            f"Unknown norm {spec!r}; expected one of {NORM_KINDS}, optionally followed by '+ws' (e.g. 'gn+ws')."
        )
    return norm


def _int_list(value: object, what: str, minimum: int = 1) -> list[int]:
    values = value if isinstance(value, list) else [value]
    # Whole numbers only: int() would turn 2.7 into 2, 0.5 into 0, true into 1 and run another grid than written.
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{what} must be an int or a list of ints, got {value!r}.")
    if any(v < minimum for v in values):
        raise ValueError(f"{what} must be integers >= {minimum}, got {value!r}.")
    return list(values)


def _one_int(value: object, what: str) -> int:
    """A single int >= 1 (a list would silently run with its first value only)."""
    if isinstance(value, list):
        raise ValueError(
            f"{what} must be one int (it is the same for the whole sweep), got the list {value!r}."
        )
    return _int_list(value, what)[0]


def expand_grid(experiments: dict, span: int | None = None) -> list[Cell]:
    """Turn named sub-grids into a de-duplicated list of cells (order kept, experiment names merged).

    Args:
        experiments: ``{name: {"norms": [...], "batch": [...], "frames": [...], "zip": bool}}``; with ``zip``
            batch and frames are paired element-wise (e.g. a fixed B×T budget), otherwise crossed.
        span: if set, each cell's sampling rate is ``span // frames`` (clips cover the same frames span).

    Returns:
        The cells.
    """
    if not isinstance(experiments, dict) or not experiments:
        raise ValueError("The grid needs an 'experiments' mapping of name -> {norms, batch, frames}.")
    cells: dict[Cell, Cell] = {}
    for name, sub in experiments.items():
        if not isinstance(sub, dict) or {"norms", "batch", "frames"} - set(sub):
            raise ValueError(f"Experiment {name!r} must give norms, batch and frames, got {sub!r}.")
        unknown = set(sub) - {"norms", "batch", "frames", "zip"}
        if unknown:
            raise ValueError(
                f"Experiment {name!r} has unknown keys {sorted(unknown)}; allowed: norms, batch, frames, zip."
            )
        norms = [parse_norm(n) for n in (sub["norms"] if isinstance(sub["norms"], list) else [sub["norms"]])]
        batches = _int_list(sub["batch"], f"{name}.batch")
        frames = _int_list(sub["frames"], f"{name}.frames")
        if not isinstance(sub.get("zip", False), bool):
            raise ValueError(f"Experiment {name!r}: zip must be true or false, got {sub['zip']!r}.")
        if sub.get("zip"):
            if len(batches) != len(frames):
                raise ValueError(
                    f"Experiment {name!r} has zip: true but {len(batches)} batches and {len(frames)} frames."
                )
            pairs = list(zip(batches, frames))
        else:
            pairs = [(b, t) for b in batches for t in frames]
        for norm in norms:
            for b, t in pairs:
                rate = None
                if span is not None:
                    if t > span:
                        raise ValueError(f"frames {t} is longer than span {span}; raise span or drop that T.")
                    rate = max(1, span // t)
                cell = Cell(norm, b, t, rate)
                old = cells.get(cell)
                names = (old.experiments if old else ()) + (name,)
                cells[cell] = Cell(norm, b, t, rate, tuple(dict.fromkeys(names)))
    return list(cells.values())


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a sweep grid YAML file (format in the :mod:`video_gn.sweep` docstring).

    Args:
        path: the YAML file.

    Returns:
        The :class:`SweepSpec`.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Sweep grid file {str(path)!r} does not exist; see configs/sweep/ for examples."
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep grid is a mapping (base, clips, experiments, ...), got {data!r}.")
    allowed = {"base", "clips", "seeds", "devices", "span", "overrides", "experiments"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}.")
    for key in ("base", "clips", "experiments"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}.")
    overrides = data.get("overrides") or []
    span = data.get("span")
    if not isinstance(overrides, list):
        raise ValueError(f"{path}: overrides must be a list of 'video-gn fit' arguments, got {overrides!r}.")
    return SweepSpec(
        base=[str(b) for b in (data["base"] if isinstance(data["base"], list) else [data["base"]])],
        clips=_one_int(data["clips"], "clips"),
        seeds=_int_list(data.get("seeds", [0]), "seeds", minimum=0),
        devices=_one_int(data.get("devices", 1), "devices"),
        cells=expand_grid(data["experiments"], None if span is None else _one_int(span, "span")),
        overrides=[str(o) for o in overrides],
    )
