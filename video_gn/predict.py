"""``video-gn predict``: top-k classes for video files, averaged over several views per video.

The model (architecture, weights, class names) always comes from the checkpoint. The view settings (clip
length, sampling rate, resize, crop, views, normalisation: the ``data.*`` keys of :data:`VIEW_KEYS`) come, first
match wins, from

1. the flags of the same names (``--num_frames 32``, ``--mean 0.5 0.5 0.5``, ...);
2. ``-c CONFIG.yaml``: a ``video-gn fit`` config, read as ``video-gn validate -c CONFIG`` reads it (includes,
   defaults); its ``model.*`` and ``trainer.*`` are ignored;
3. the checkpoint's saved data-module hyper-parameters (the settings it was trained and validated with);
4. the data module's defaults.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from video_gn.argparsing import CommandParser
from video_gn.data import prep

# The data options predict uses, with the fallbacks used when neither a flag, a config nor the checkpoint
# gives them (KineticsDataModule's defaults).
VIEW_KEYS = {
    "num_frames": 8,
    "sampling_rate": 8,
    "test_short_side": 256,
    "crop_size": 224,
    "num_clips": 10,
    "num_crops": 1,
    "mean": (0.45, 0.45, 0.45),
    "std": (0.225, 0.225, 0.225),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``video-gn predict`` argument parser."""
    p = CommandParser(
        prog="video-gn predict",
        description="Classify video files with a trained checkpoint: top-k class names and probabilities "
        "per video, averaged over num_clips x num_crops views. View settings (clip length, sampling rate, "
        "resize, crop, normalisation), first match wins: the flags below, then -c CONFIG's data.* keys, then "
        "the checkpoint's data settings.",
        allow_abbrev=False,  # as fit/validate/test: a misspelt option must not pass as an abbreviation
    )
    p.add_argument("paths", nargs="+", help="video files and/or folders (searched recursively)")
    p.add_argument(
        "--ckpt_path", required=True, help="checkpoint written by `video-gn fit` (e.g. best or last.ckpt)"
    )
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="CONFIG.yaml",
        help="`video-gn fit` config(s) whose data.* view settings to use (includes composed, repeatable); "
        "without it the settings saved in the checkpoint are used",
    )
    p.add_argument("--top_k", type=int, default=5, help="number of classes to show per video (default 5)")
    views = p.add_argument_group(
        "view settings (default: -c CONFIG, else as trained; each also as --data.<name>, as in fit/validate)"
    )

    def view(name: str, **kw: Any) -> None:
        views.add_argument(f"--{name}", f"--data.{name}", dest=name, **kw)

    view("num_frames", type=int, help="frames per clip (T)")
    view("sampling_rate", type=int, help="take every s-th frame")
    view("test_short_side", type=int, help="resize the short side to this many pixels")
    view("crop_size", type=int, help="square crop size")
    view("num_clips", type=int, help="temporal views per video")
    view("num_crops", type=int, choices=(1, 3), help="spatial views per clip")
    view("mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean")
    view("std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation std")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda[:N] (default: cuda when available)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def config_view_settings(configs: list[str]) -> dict[str, Any]:
    """The :data:`VIEW_KEYS` of ``data.*`` in ``video-gn fit`` config files, resolved as the CLI resolves them.

    Args:
        configs: config paths, applied in order (each one's ``config:`` includes first).

    Returns:
        ``{key: value}`` for every key of :data:`VIEW_KEYS` (data-module defaults where the files are silent).

    Raises:
        FileNotFoundError: a config (or a file it includes) does not exist.
    """
    from video_gn.cli import parse_config

    for c in configs:
        if not Path(c).is_file():
            raise FileNotFoundError(
                f"-c {c} does not exist; give a `video-gn fit` config such as configs/quickstart.yaml."
            )
    data = parse_config([arg for c in configs for arg in ("-c", c)]).data
    return {k: data[k] for k in VIEW_KEYS}


def resolve_view_settings(
    checkpoint: dict[str, Any], config: dict[str, Any] | None, flags: dict[str, Any]
) -> dict[str, Any]:
    """Merge the view settings: flags (non-None) over the config over the checkpoint over the defaults.

    Args:
        checkpoint: the checkpoint's data-module hyper-parameters (any keys; others are ignored).
        config: :func:`config_view_settings` of ``-c``, or None.
        flags: the command-line values, None where not given.

    Returns:
        ``{key: value}`` for every key of :data:`VIEW_KEYS`; mean/std as tuples.
    """
    out = dict(VIEW_KEYS)
    for layer in (checkpoint, config or {}, flags):
        out.update({k: v for k, v in layer.items() if k in VIEW_KEYS and v is not None})
    out["mean"], out["std"] = tuple(out["mean"]), tuple(out["std"])
    return out


def view_settings_problem(settings: dict[str, Any]) -> tuple[str, str] | None:
    """The first invalid view setting as (key, message), or None when all are usable."""
    for key in ("num_frames", "sampling_rate", "test_short_side", "crop_size", "num_clips"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return key, f"{key} must be an integer >= 1, got {value!r}"
    if settings["num_crops"] not in (1, 3):
        return "num_crops", f"num_crops must be 1 or 3, got {settings['num_crops']!r}"
    for key in ("mean", "std"):
        if len(settings[key]) != 3:
            return key, f"{key} needs 3 values (R, G, B), got {list(settings[key])}"
    if any(v <= 0 for v in settings["std"]):
        return "std", f"std must be positive, got {list(settings['std'])}"
    return None


def find_videos(paths: list[str]) -> list[Path]:
    """Expand files and folders into a sorted list of video files.

    Raises:
        FileNotFoundError: a given path does not exist, or a folder holds no video files.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = prep.find_videos(p)
            if not found:
                raise FileNotFoundError(
                    f"No video files ({', '.join(sorted(prep.VIDEO_EXTENSIONS))}) under folder {p}."
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist: give video files or folders that contain them.")
    return out


def load_classifier(ckpt_path: str, device: str):
    """Load a :class:`VideoClassifier` and its data settings from a ``video-gn fit`` checkpoint.

    Returns:
        (model in eval mode on ``device``, the checkpoint's data-module hyper-parameters, class names list)

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist.
        ValueError: the file is not a ``video-gn fit`` checkpoint.
    """
    from video_gn.checkpoint_io import read_checkpoint
    from video_gn.module import VideoClassifier

    path = Path(ckpt_path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"--ckpt_path {path} {what}; point it at a .ckpt written by `video-gn fit` "
            "(<trainer.default_root_dir>/checkpoints/last.ckpt or best-*.ckpt)."
        )
    ckpt = read_checkpoint(path)
    accepted = inspect.signature(VideoClassifier.__init__).parameters
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k in accepted}  # drops LightningCLI's extras
    hp["pretrained"] = None  # the checkpoint already holds the trained weights
    model = VideoClassifier(**hp)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:  # hyper-parameters and weights disagree: an edited or foreign file
        raise ValueError(
            f"--ckpt_path {path}: its weights do not fit the model its hyper-parameters describe "
            f"({', '.join(f'{k}={v!r}' for k, v in hp.items() if k in ('name', 'width', 'num_classes'))}): "
            f"it was not written by `video-gn fit`, or was edited. ({str(err).splitlines()[0]})"
        ) from err
    model.eval().to(device)
    data_hp = dict(ckpt.get("datamodule_hyper_parameters", {}))
    num_classes = hp["num_classes"]
    names = (
        hp.get("class_names")
        or _class_names_beside(path, num_classes)
        or [str(i) for i in range(num_classes)]
    )
    return model, data_hp, list(names)


def _class_names_beside(ckpt: Path, num_classes: int) -> list[str] | None:
    """Class names from a ``classes.txt`` next to a checkpoint that records none (older checkpoints)."""
    txt = ckpt.parent / "classes.txt"
    if not txt.is_file():
        return None
    names = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
    if len(names) != num_classes:  # another dataset's list: its names would be wrong, or run out
        warnings.warn(
            f"{txt} lists {len(names)} classes but the model in {ckpt} has {num_classes}: not using its names "
            "(classes are printed as indices)",
            stacklevel=2,
        )
        return None
    return names


def predict_videos(model, data_hp: dict[str, Any], names: list[str], videos: list[Path], *, top_k: int = 5):
    """Average the softmax over all views of each video and return its top-k.

    Returns:
        (results, failures): results is a list of ``{"path", "top": [(name, prob), ...]}``; failures
        lists ``(path, error message)`` for files that are not videos (by extension, as in a folder search)
        or could not be decoded (skipped with a warning, not fatal).
    """
    from video_gn.data.progress import progress_bar

    device = next(model.parameters()).device
    results, failures = [], []
    # progress on stderr (stdout holds the results): a bar on a terminal, timed plain lines otherwise
    with progress_bar(total=len(videos), description="predict (videos)", enabled=len(videos) > 1) as advance:
        for path in videos:
            result, failure = _predict_one(model, data_hp, names, path, top_k, device)
            if result is not None:
                results.append(result)
            else:
                failures.append(failure)
            advance()
    return results, failures


def _predict_one(model, data_hp: dict[str, Any], names: list[str], path: Path, top_k: int, device):
    """``({"path", "top"}, None)`` for one video, or ``(None, (path, reason))`` when it is skipped (warned)."""
    from video_gn.data import load_video_views

    if Path(path).suffix.lower() not in prep.VIDEO_EXTENSIONS:
        # FFmpeg "decodes" some other files (its tty demuxer renders a .txt as a video): refuse them by name
        reason = (
            f"not a video file type ({Path(path).suffix or 'no extension'}; video files end in "
            f"{', '.join(sorted(prep.VIDEO_EXTENSIONS))})"
        )
        warnings.warn(f"Skipping {path}: {reason}", stacklevel=3)
        return None, (str(path), reason)
    try:
        views = load_video_views(
            path,
            num_frames=data_hp["num_frames"],
            sampling_rate=data_hp["sampling_rate"],
            num_clips=data_hp["num_clips"],
            num_crops=data_hp["num_crops"],
            short_side=data_hp["test_short_side"],
            crop_size=data_hp["crop_size"],
            mean=data_hp["mean"],
            std=data_hp["std"],
        )  # (V, C, T, H, W)
    except Exception as err:  # noqa: BLE001 - any decode failure skips the file
        warnings.warn(f"Skipping {path}: could not decode it ({type(err).__name__}: {err})", stacklevel=3)
        return None, (str(path), f"{type(err).__name__}: {err}")
    with torch.inference_mode():
        probs = model(views.to(device)).float().softmax(dim=-1).mean(dim=0)  # (num_classes,)
    p, idx = probs.topk(min(top_k, probs.numel()))
    return {"path": str(path), "top": [(names[i], float(v)) for v, i in zip(p.tolist(), idx.tolist())]}, None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``video-gn predict``; returns the exit status (2: a path or the checkpoint is wrong)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be >= 1, got {args.top_k}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    try:
        videos = find_videos(args.paths)
        config = config_view_settings(args.config) if args.config else None
        model, ckpt_data, names = load_classifier(args.ckpt_path, args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"video-gn predict: error: {err}", file=sys.stderr)
        return 2
    flags = {k: getattr(args, k) for k in VIEW_KEYS}
    data_hp = resolve_view_settings(ckpt_data, config, flags)
    if problem := view_settings_problem(data_hp):
        where = "--" + problem[0] if flags.get(problem[0]) is not None else "-c CONFIG or the checkpoint"
        print(f"video-gn predict: error: {problem[1]} (from {where})", file=sys.stderr)
        return 2
    results, failures = predict_videos(model, data_hp, names, videos, top_k=args.top_k)
    if args.json:
        print(
            json.dumps(
                {"predictions": results, "failed": [{"path": p, "error": e} for p, e in failures]}, indent=1
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"video-gn predict ({data_hp['num_clips']}x{data_hp['num_crops']} views per video)"
        )
        table.add_column("video", overflow="fold", ratio=2)
        for k in range(1, min(args.top_k, len(names)) + 1):  # a 3-class model has no top-5
            table.add_column(f"top-{k}")
        for r in results:
            table.add_row(r["path"], *[f"{n} {p:.2f}" for n, p in r["top"]])
        # Redirected output has no terminal width (rich assumes 80): size the table to its content instead of
        # folding every path over several lines.
        width = None
        if not sys.stdout.isatty():
            longest = max((len(r["path"]) for r in results), default=10)
            width = max(80, longest + 8 + 24 * min(args.top_k, len(names)))
        Console(width=width).print(table)
        folders = [Path(r["path"]).parent.name for r in results]
        if results and all(f in names for f in folders):  # class-named folders (e.g. a val split): how right
            hits = sum(r["top"][0][0] == f for r, f in zip(results, folders))
            print(
                f"top-1 against the folder names: {hits}/{len(results)} ({100 * hits / len(results):.1f} %)"
            )
        if failures:
            print(
                f"{len(failures)} of {len(videos)} files are not videos or could not be decoded; skipped:",
                file=sys.stderr,
            )
            for p, e in failures:
                print(f"  {p}: {e}", file=sys.stderr)
    return 1 if failures and not results else 0
