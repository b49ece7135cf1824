"""The ``video-gn`` command line.

``fit``, ``validate`` and ``test`` are LightningCLI sub-commands over :class:`VideoClassifier` and
:class:`KineticsDataModule`: every option is a typed ``__init__`` argument, configs in ``configs/``
compose with a top-level ``config: base.yaml`` key, and the resolved config is saved beside the logs.
``predict``, ``plan`` and ``sweep`` are plain sub-commands with their own ``--help``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from video_gn.errors import FitInterrupted, StartupError, TooManyFailedVideos

SUBCOMMANDS = {
    "fit": "train a model (LightningCLI): video-gn fit -c configs/quickstart.yaml",
    "validate": "evaluate a checkpoint on the val split: video-gn validate -c CONFIG --ckpt_path CKPT",
    "test": "evaluate a checkpoint on the test split (multi-view): video-gn test -c CONFIG --ckpt_path CKPT",
    "predict": "top-5 classes for video files or folders: video-gn predict clip.mp4 --ckpt_path CKPT [-c CONFIG]",
    "plan": "memory/step time per (frames, batch): video-gn plan --model i3d_r50 --frames 8,32 --batch 1,2,4",
    "sweep": "grid of trainings norms x batch x frames: video-gn sweep -g configs/sweep/synthetic_batch.yaml --out DIR",
}

_LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def _usage() -> str:
    lines = ["usage: video-gn <subcommand> [options]", "", "Sub-commands:"]
    lines += [f"  {name:<9} {text}" for name, text in SUBCOMMANDS.items()]
    lines += ["", "Run `video-gn <subcommand> --help` for the options of one sub-command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``video-gn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in _LIGHTNING_SUBCOMMANDS:
        _STATE["started"] = False
        try:
            run_lightning_cli([cmd, *rest])
        except StartupError as err:
            print(f"video-gn {cmd}: error: {err}", file=sys.stderr)
            return 2
        except TooManyFailedVideos as err:  # the data's fault, and its message lists the files
            saved = f"\nThe weights so far are in {err.saved_checkpoint}." if err.saved_checkpoint else ""
            print(f"video-gn {cmd}: error: {err}{saved}", file=sys.stderr)
            return 1
        except FitInterrupted as err:  # the first Ctrl-C: stopped at a batch boundary, last.ckpt written
            if os.environ.get("LOCAL_RANK", "0") == "0":  # once, not by every DDP rank
                saved = (
                    f"; the weights are in {err.saved_checkpoint} (resume with --ckpt_path last)"
                    if err.saved_checkpoint
                    else "; no checkpoint was written (checkpointing is off, or a fast_dev_run)"
                )
                print(f"video-gn {cmd}: {err}{saved}", file=sys.stderr)
            return 128 + 2
        except _STARTUP_ERRORS as err:
            if _STATE["started"] or os.environ.get("VIDEO_GN_TRACEBACK"):
                raise
            # Before training starts, an exception is a config or input mistake: its message is what the user
            # needs, not the traceback into Lightning's internals.
            print(
                f"video-gn {cmd}: error: {err}\n({type(err).__name__} raised before training started, at "
                f"{_where(err)}: a config or input problem, or else a bug; VIDEO_GN_TRACEBACK=1 shows the "
                "traceback)",
                file=sys.stderr,
            )
            return 2
        except SystemExit as err:
            # Lightning's stop on SIGTERM, a SystemExit without an exit code of its own
            if type(err).__name__ == "SIGTERMException":
                if os.environ.get("LOCAL_RANK", "0") == "0":  # once, not by every DDP rank
                    print(f"video-gn {cmd}: stopped by SIGTERM", file=sys.stderr)
                return 128 + 15
            # A second Ctrl-C (or one outside fit) reaches Lightning's handling, which ends in sys.exit(1) after
            # writing nothing (the interrupt can land mid optimiser step); exit as any interrupted command does
            if err.code == 1 and isinstance(err.__context__, KeyboardInterrupt):
                return 128 + 2
            if err.code not in (0, None) and not any(
                a in _CONFIG_FLAGS or a.startswith("--config=") for a in rest
            ):
                # Without a config every required option is missing; say where to start rather than only that.
                print(
                    f"video-gn {cmd}: no config given; start from one: video-gn {cmd} -c configs/quickstart.yaml",
                    file=sys.stderr,
                )
            raise
        return 0
    if cmd in ("predict", "plan", "sweep"):
        import importlib

        sub_main = importlib.import_module(f"video_gn.{cmd}").main
        try:
            return sub_main(rest)
        except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (a sweep's finished runs are kept)
            print(f"\nvideo-gn {cmd}: interrupted", file=sys.stderr)
            return 130
    print(f"video-gn: unknown sub-command {cmd!r}.\n\n{_usage()}", file=sys.stderr)
    return 2


def _where(err: BaseException) -> str:
    """``file:line`` of the innermost frame that raised ``err``."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


# Exceptions that, raised before the sub-command starts, are the user's config or inputs (a missing file, a
# value the model or data refuses, a GPU strategy on a CPU machine).
_STARTUP_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    TypeError,
)
_STATE = {"started": False}


def run_lightning_cli(args: list[str], run: bool = True, instantiate: bool = True):
    """Build (and by default run) the LightningCLI for ``args`` such as ``["fit", "-c", "cfg.yaml"]``.

    With ``run=False`` the sub-command is dropped and the returned CLI holds the instantiated
    ``model``, ``datamodule`` and ``trainer`` without calling any of them; with ``instantiate=False`` as
    well it holds only the parsed ``config`` (see :func:`parse_config`). The CLI class itself is
    :class:`video_gn.lightning_cli.VideoGNCLI`, imported here so that ``video-gn --help`` and the other
    sub-commands do not load Lightning.
    """
    from_console = run and args == sys.argv[1:]
    from video_gn.lightning_cli import build_cli

    expanded = expand_config_includes(args)
    if not run and expanded and expanded[0] in _LIGHTNING_SUBCOMMANDS:
        expanded = expanded[1:]
    # From the console with nothing expanded, Lightning reads sys.argv itself.
    return build_cli(
        None if from_console and expanded == args else expanded, run=run, instantiate=instantiate
    )


def parse_config(args: list[str]):
    """Parse ``args`` as ``video-gn fit`` does (config includes, types, defaults), instantiating nothing.

    Args:
        args: e.g. ``["-c", "configs/kinetics400/i3d_r50_gn_32x2_b8.yaml", "--data.num_clips=3"]``.

    Returns:
        The resolved config, a jsonargparse ``Namespace`` (``cfg.data.num_frames``, ``cfg.model.name``, ...).

    Raises:
        SystemExit: the config does not parse (the parser prints which option and why).
    """
    return run_lightning_cli(args, run=False, instantiate=False).config


_CONFIG_FLAGS = ("-c", "--config")


def expand_config_includes(args: list[str]) -> list[str]:
    """Put the files a config includes (a top-level ``config: base.yaml`` key) before it on the command line.

    ``-c exp.yaml`` whose YAML starts with ``config: base.yaml`` becomes ``-c base.yaml -c exp.yaml`` (the
    include resolved relative to ``exp.yaml``, recursively; a list of includes is applied in order), so the
    experiment file overrides only what differs. LightningCLI's sub-command parsers do not follow such keys
    themselves and would silently ignore them.

    Raises:
        FileNotFoundError: an included file does not exist (names the including file).
        ValueError: a config file is not valid YAML (names the file and the line), or includes form a cycle.
    """
    import yaml

    def includes(path: Path, seen: tuple[Path, ...]) -> list[str]:
        if path in seen:
            raise ValueError(f"config include cycle: {' -> '.join(map(str, (*seen, path)))}")
        try:
            data = yaml.safe_load(path.read_text()) if path.is_file() else None
        except yaml.YAMLError as err:  # jsonargparse would say only "<unicode string>", not which file
            raise ValueError(f"{path} is not valid YAML: {err}") from err
        inc = data.get("config") if isinstance(data, dict) else None
        out: list[str] = []
        for base in [inc] if isinstance(inc, str) else list(inc or []):
            base_path = (path.parent / base).resolve()
            if not base_path.is_file():
                raise FileNotFoundError(f"{path} includes `config: {base}`, but {base_path} does not exist.")
            out += includes(base_path, (*seen, path))
        return [*out, str(path)]

    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg in _CONFIG_FLAGS and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        for path in includes(Path(value), ()):
            out += ["--config", path]
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
