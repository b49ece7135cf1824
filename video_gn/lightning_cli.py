"""The LightningCLI behind ``video-gn fit|validate|test``.

:class:`VideoGNCLI` adds to LightningCLI what a run needs before it starts: the checks that refuse a
checkpoint folder of another run, a checkpoint of another class count, an endless schedule or GPU options on
a CPU machine with a message saying what to do; wrong options reported in a few lines with did-you-mean
names instead of the full usage; the default loggers (CSV, TensorBoard when installed) and callbacks
(best + last checkpoints, learning-rate monitor, progress bar, end-of-fit summary); and the data's classes
linked into the model. :func:`video_gn.cli.run_lightning_cli` is the entry point.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from typing import Any

import lightning as L
from jsonargparse.typing import PositiveInt
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning_utilities.core import rank_zero

from video_gn.argparsing import did_you_mean
from video_gn.callbacks import ClassNamesWriter, FitSummary, GracefulStop, VideoCheckpoint
from video_gn.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from video_gn.cli import _CONFIG_FLAGS, _LIGHTNING_SUBCOMMANDS, _STATE
from video_gn.data import KineticsDataModule
from video_gn.errors import StartupError
from video_gn.module import VideoClassifier
from video_gn.progress_bar import progress_bar_callback
from video_gn.runlock import FolderLocked, lock_folder

__all__ = ["VideoGNCLI", "build_cli", "default_callbacks", "default_loggers"]


def _option_names(parser) -> list[str]:
    """Every ``--option`` of ``parser`` and of its sub-command parsers (``data.batch_size`` spelled without dashes)."""
    names: set[str] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in getattr(p, "_actions", []):
            names.update(o.lstrip("-") for o in action.option_strings if o.startswith("--"))
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                stack.extend(c for c in choices.values() if hasattr(c, "_actions"))
    return sorted(names)


def _condense_parse_error(text: str, parser, args) -> str:
    """The parser's error lines (no usage block), with did-you-mean suggestions and the config files given."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return text
    error = "\n".join(lines[start:])
    wrong = re.findall(r"does not accept option '([\w.]+)'", error)
    wrong += [w.lstrip("-").split("=")[0] for w in re.findall(r"(--[\w.]+(?:=\S*)?)", error.split("\n")[0])]
    known = _option_names(parser)
    hints = [hint for name in dict.fromkeys(wrong) if (hint := did_you_mean(name, known, cutoff=0.75))]
    configs = [args[i + 1] for i, a in enumerate(args or []) if a in _CONFIG_FLAGS and i + 1 < len(args)]
    out = [error]
    out += hints
    if configs and "unrecognized arguments" not in error:
        out.append(f"  config files read (an option can come from any of them): {', '.join(configs)}")
    sub = next((a for a in (args or []) if a in _LIGHTNING_SUBCOMMANDS), "fit")
    out.append(f"  all options: video-gn {sub} --help")
    return "\n".join(out) + "\n"


class _StartedMarker(L.Callback):
    """Records when the data is set up and the loop starts: exceptions after that are not start-up mistakes
    and keep their traceback (:func:`video_gn.cli.main`)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        _STATE["started"] = True

    def on_validation_start(self, trainer, pl_module) -> None:
        _STATE["started"] = True

    def on_test_start(self, trainer, pl_module) -> None:
        _STATE["started"] = True


# What Lightning's ``ckpt_path="last"`` picks up: last.ckpt and its versioned copies (last-v1.ckpt ...).
_LAST_CKPT = re.compile(r"last(-v\d+)?\.ckpt")


def _checkpoint_files(dirpath: str | None, prefix: str = "") -> list[str]:
    if not dirpath or not os.path.isdir(dirpath):
        return []
    return sorted(f for f in os.listdir(dirpath) if f.endswith(".ckpt") and f.startswith(prefix))


#: Folder locks taken by the running command (:mod:`video_gn.runlock`), released when it returns.
_HELD_LOCKS: list = []


def _is_launching_process() -> bool:
    """Whether this is the process that stands for the whole run: global rank 0 of torchrun / SLURM, or the
    launcher (rank 0) of Lightning's own DDP on the first node, not the ranks it starts."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK"):
        if os.environ.get(var, "0").strip() not in ("", "0"):
            return False
    return True


def _checked_checkpoint(path: str, how: str = "") -> dict:
    """The checkpoint at ``path``, memory-mapped (only its hyper-parameters are read); a cut-short, empty or
    foreign file is a :class:`StartupError` naming it (``--ckpt_path {how} {path}``)."""
    try:
        return read_checkpoint(path, option=f"--ckpt_path {how}".rstrip(), mmap=True)
    except ValueError as err:
        raise StartupError(str(err)) from err


def _best_is_not_a_file(trainer: Any) -> str:
    """The message for ``--ckpt_path best`` (the trainer's config given), naming the best-*.ckpt files."""
    folder = os.path.join(trainer.get("default_root_dir") or ".", "checkpoints")
    found = [os.path.join(folder, f) for f in _checkpoint_files(folder, "best-")]
    return (
        "--ckpt_path best names the best checkpoint of a fit in this same process; give the file "
        f"instead: {', '.join(found) if found else f'(no best-*.ckpt in {folder})'}"
    )


def _warn_replaced_model_settings(before: Any, after: Any, ckpt_path: str | None) -> None:
    """Name the model settings of the command line / config that ``fit --ckpt_path FILE`` replaced with the
    checkpoint's (Lightning's behaviour: the checkpoint's hyper-parameters win), e.g. a lowered model.lr."""
    old, new = before.as_dict(), after.as_dict()
    old, new = old.get("init_args", old), new.get("init_args", new)
    changed = [
        f"model.{k} {old[k]!r} -> {new[k]!r}"
        for k in sorted(set(old) & set(new))
        if old[k] != new[k] and k not in ("pretrained", "class_names")
    ]
    if changed:
        warnings.warn(
            f"--ckpt_path {ckpt_path}: resuming uses the checkpoint's model settings, not the config's: "
            f"{'; '.join(changed)}. To train with other settings, start a new run instead of resuming.",
            stacklevel=2,
        )


class _NoLitLoggerTip(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger, printed at every start ("💡 Tip: ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud logging")


class VideoGNCLI(LightningCLI):
    """LightningCLI over :class:`VideoClassifier` and :class:`KineticsDataModule` with video-gn's start-up checks
    (checkpoint folder and class count, endless runs, GPU options on a CPU machine), condensed option errors,
    the default loggers and callbacks, and ``data.num_classes``/``data.classes`` linked into the model.

    Args:
        *args: LightningCLI's.
        instantiate: False: parse (types, defaults, config includes) but build nothing and do not seed
            (:func:`video_gn.cli.parse_config`).
        **kwargs: LightningCLI's; with ``run=False`` a run's saved config.yaml (which holds fit's own keys) is
            accepted without a sub-command.
    """

    def __init__(self, *args: Any, instantiate: bool = True, **kwargs: Any) -> None:
        self._instantiate = instantiate
        self._run = kwargs.get("run", True)
        super().__init__(*args, **kwargs)

    def _set_seed(self) -> None:
        if self._instantiate:  # parse_config neither seeds the global RNGs nor logs it
            super()._set_seed()

    def parse_arguments(self, parser, args) -> None:
        # The parser's own report of a wrong option is ~90 lines of usage before the one line that matters:
        # keep that line, add the closest valid option names and the config files involved.
        buf = io.StringIO()
        failed = False
        try:
            with contextlib.redirect_stderr(buf):
                super().parse_arguments(parser, args)
        except SystemExit as err:
            failed = err.code not in (0, None)
            raise
        finally:  # whatever the parser wrote is shown, condensed only when it refused the options
            text = buf.getvalue()
            sys.stderr.write(_condense_parse_error(text, parser, args) if failed else text)

    def _parse_ckpt_path(self) -> None:
        # Lightning puts the checkpoint's saved model settings over the config. Its weights then replace
        # whatever the model was initialised with, so the 2D/3D file it was first initialised from
        # (model.pretrained) is neither needed nor loaded: the file may be gone, or elsewhere, here.
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path == "best":  # Lightning's "best" is the best of a fit in this same process
            raise StartupError(_best_is_not_a_file(self.config[sub].get("trainer") or {}))
        local_file = bool(ckpt_path) and os.path.isfile(ckpt_path)
        # Read before Lightning does, which fails with a bare traceback on a cut-short or foreign file.
        hparams = _checked_checkpoint(ckpt_path)["hyper_parameters"] if local_file else None
        self._ckpt_num_classes = (hparams or {}).get("num_classes")
        before = self.config[sub].model.clone() if sub == "fit" and self.config[sub].get("model") else None
        super()._parse_ckpt_path()
        if before is not None:
            _warn_replaced_model_settings(before, self.config[sub].model, ckpt_path)
        if local_file:
            self.config[sub].model.pretrained = None

    def _check_ckpt_classes(self) -> None:
        ckpt_path = self._get(self.config, "ckpt_path", default=None)
        want, have = (
            getattr(self, "_ckpt_num_classes", None),
            getattr(self.datamodule, "num_classes", None),
        )
        if want is not None and have is not None and want != have:
            raise StartupError(
                f"--ckpt_path {ckpt_path}: the checkpoint's model has {want} classes, the data "
                f"({self.datamodule.root}) has {have}: use the dataset (data.root / config) it was "
                "trained on"
            )

    def instantiate_classes(self) -> None:
        if not self._instantiate:
            return
        try:
            super().instantiate_classes()
        except MisconfigurationException as err:  # Lightning's word for a trainer option it refuses
            hint = ""
            if any(w in str(err).lower() for w in ("gpu", "cuda", "nccl")):
                hint = (
                    " This config asks for GPUs (trainer.accelerator / devices / strategy); on a machine "
                    "without them add --trainer.accelerator cpu --trainer.devices 1 --trainer.strategy auto"
                )
            raise StartupError(f"{err}{hint}") from err

    def before_fit(self) -> None:
        ckpt_path = self._get(self.config, "ckpt_path", default=None)
        cb = self.trainer.checkpoint_callback
        dirpath = getattr(cb, "dirpath", None)  # None for a config's own callback until Lightning sets it
        found = _checkpoint_files(dirpath)
        last = [f for f in found if _LAST_CKPT.fullmatch(f)]
        # A SLURM requeue reruns the same command and Lightning resumes from its hpc_ckpt_*.ckpt by itself.
        requeued = SLURMEnvironment.detect() and bool(
            _checkpoint_files(self.trainer.default_root_dir, prefix="hpc_ckpt_")
        )
        self._check_ckpt_classes()
        # An endless run is refused here, before the logger makes a version folder with a config.yaml.
        if self.trainer.max_epochs == -1 and self.trainer.max_steps == -1:
            raise StartupError(
                "trainer.max_epochs -1 with no trainer.max_steps is an endless run, but the learning-rate "
                "schedule needs its length: set --trainer.max_steps N or a finite --trainer.max_epochs."
            )
        if found and not requeued and ckpt_path == "last" and not last:
            raise StartupError(
                f"--ckpt_path last: {dirpath} holds checkpoints of an earlier run ({', '.join(found[:3])}) "
                "but no last.ckpt. Resume from one of them by giving its path (--ckpt_path "
                f"{os.path.join(dirpath, found[-1])}), or start a new run with --trainer.default_root_dir "
                "runs/<new name>."
            )
        if found and not requeued and ckpt_path is None:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise StartupError(
                f"{dirpath} already holds checkpoints of an earlier run ({shown}) and no resume from them "
                "was asked. A new run there would mix its checkpoints with those (last.ckpt would become "
                "last-v1.ckpt). Resume that run with --ckpt_path last (or the path of one of them), or start a "
                "new one with --trainer.default_root_dir runs/<new name> (or delete the folder)."
            )
        # Resuming into its own folder: Lightning's "not empty" notice is expected.
        if ckpt_path is not None:
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        if ckpt_path == "last" and not requeued:
            if last:  # the one Lightning will resume from (the newest); a cut-short one is refused, named
                _checked_checkpoint(
                    max((os.path.join(dirpath, f) for f in last), key=os.path.getmtime), "last:"
                )
            elif dirpath is not None:
                print(
                    f"video-gn fit: --ckpt_path last: no last checkpoint in {dirpath} yet, starting from scratch.",
                    file=sys.stderr,
                )
                # Lightning's own notice then suggests save_last=True, which is already on: not this case.
                warnings.filterwarnings(
                    "ignore", message=r".*is set, but there is no last checkpoint available"
                )
        # Last, so that a run refused above leaves no folder behind; a fit started into the same folder
        # before this one wrote anything is refused here.
        if _is_launching_process():
            try:
                _HELD_LOCKS.append(lock_folder(self.trainer.default_root_dir, "video-gn fit"))
            except FolderLocked as err:
                raise StartupError(f"trainer.default_root_dir {err}") from err

    def _check_eval_ckpt(self) -> None:
        ckpt_path = self._get(self.config, "ckpt_path", default=None)
        local = ckpt_path not in (None, "last", "best", "hpc") and "://" not in str(ckpt_path)
        if local and not os.path.isfile(ckpt_path):  # remote (s3://, https://) paths: Lightning's to load
            raise StartupError(
                f"--ckpt_path {ckpt_path}: no such file. Checkpoints of a run are in "
                "<trainer.default_root_dir>/checkpoints (last.ckpt, best-*.ckpt)."
            )
        self._check_ckpt_classes()
        if ckpt_path is None:
            pretrained = self._get(self.config, "model", default={}).get("pretrained")
            weights = f"the weights of model.pretrained {pretrained}" if pretrained else "random weights"
            print(
                f"video-gn {self.config.subcommand}: no --ckpt_path given: evaluating {weights}, not a "
                "trained checkpoint (add --ckpt_path <default_root_dir>/checkpoints/last.ckpt).",
                file=sys.stderr,
            )

    def before_validate(self) -> None:
        self._check_eval_ckpt()

    def before_test(self) -> None:
        self._check_eval_ckpt()

    def add_arguments_to_parser(self, parser) -> None:
        if not self._run:
            # Parsing without a sub-command (parse_config, predict -c) must still read the config.yaml a
            # run saved, which holds fit's own keys: accepted here and ignored.
            known = {a.dest for a in parser._actions}
            if "ckpt_path" not in known:
                parser.add_argument(
                    "--ckpt_path", type=str | None, default=None, help="(fit's; ignored here)"
                )
            if "weights_only" not in known:
                parser.add_argument(
                    "--weights_only", type=bool | None, default=None, help="(fit's; ignored here)"
                )
        # One source of truth: the data decides the classes, the model follows.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.add_argument(
            "--checkpoint.last_every_n_steps",
            type=PositiveInt | None,
            default=None,
            help="Also write <default_root_dir>/checkpoints/last.ckpt every N optimiser steps, so a crash "
            "between validations loses at most N steps (last.ckpt is always written at each validation "
            "and when fit ends). null: only then.",
        )
        parser.set_defaults(
            {
                "trainer.default_root_dir": "runs/default",
                # Our data module shards by video itself (all views of a video on one rank).
                "trainer.use_distributed_sampler": False,
            }
        )

    def instantiate_trainer(self, **kwargs: Any):
        cfg = self._get(self.config_init, "trainer", default={})
        root = cfg.get("default_root_dir") or "runs/default"
        if cfg.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(root)
        plugins = cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # Lightning's writer can leave a cut-short last.ckpt
        if cfg.get("sync_batchnorm"):
            from video_gn.nn.syncbn import SyncBatchNormPlugin

            model_cfg = self._get(self.config, "model", default=None)
            norm = model_cfg.get("norm") if model_cfg is not None else None
            if norm not in ("bn", "syncbn"):
                warnings.warn(
                    f"trainer.sync_batchnorm is on but model.norm is {norm!r}: it converts BatchNorm layers "
                    "only, so it does nothing here (use it with model.norm bn).",
                    stacklevel=1,
                )
            plugins.append(SyncBatchNormPlugin())  # torch's SyncBN refuses CPU tensors
        kwargs["plugins"] = plugins
        callbacks = list(cfg.get("callbacks") or [])
        ckpt_cfg = self._get(self.config_init, "checkpoint", default=None) or {}
        kwargs["callbacks"] = (
            callbacks
            + default_callbacks(
                root,
                checkpointing=cfg.get("enable_checkpointing", True) is not False,
                have=callbacks,
                progress=cfg.get("enable_progress_bar", True) is not False,
                logger=cfg.get("logger") is not False,
                last_every_n_steps=ckpt_cfg.get("last_every_n_steps"),
            )
            + [_StartedMarker()]
        )
        return super().instantiate_trainer(**kwargs)


def build_cli(args: list[str] | None, *, run: bool, instantiate: bool) -> VideoGNCLI:
    """Build (and with ``run``, run) :class:`VideoGNCLI` on ``args`` (None: ``sys.argv``), config includes already
    expanded (:func:`video_gn.cli.run_lightning_cli` is the entry point)."""
    if not any(isinstance(f, _NoLitLoggerTip) for f in rank_zero.log.filters):
        rank_zero.log.addFilter(_NoLitLoggerTip())

    try:
        return _build(args, run=run, instantiate=instantiate)
    finally:
        while _HELD_LOCKS:  # the run is over: another may use its folder (in this process too)
            lock = _HELD_LOCKS.pop()
            if lock is not None:
                lock.close()


def _build(args: list[str] | None, *, run: bool, instantiate: bool) -> VideoGNCLI:
    with warnings.catch_warnings():
        # From the console, args are sys.argv with the config includes expanded: Lightning's warning about
        # passing both is about a different mistake (only that message is silenced).
        warnings.filterwarnings(
            "ignore", message=r"LightningCLI's args parameter is intended to run from within"
        )
        # Lightning's own use of a torch pytree API deprecated in torch 2.10+; nothing a user can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        return VideoGNCLI(
            VideoClassifier,
            KineticsDataModule,
            args=args,
            run=run,
            instantiate=instantiate,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=_parser_kwargs(),
            # The optimiser and schedule are VideoClassifier's (model.optimizer, model.lr, ...: lr scaling,
            # warm-up, no decay on norms). Lightning's --optimizer / --lr_scheduler would silently replace them.
            auto_configure_optimizers=False,
        )


def _parser_kwargs() -> dict:
    """Parser settings: no abbreviated option names (argparse would take ``--model.lr_scalin`` for
    ``--model.lr_scaling``, so a misspelt override in a sweep grid or script would pass silently)."""
    strict = {"allow_abbrev": False}
    main = {"parser_mode": "omegaconf", **strict} if _has_omegaconf() else dict(strict)
    return {**main, **{name: dict(strict) for name in LightningCLI.subcommands()}}


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def default_loggers(root: str) -> list:
    """CSV logs always (sweeps read them); TensorBoard too when it is installed."""
    loggers = [CSVLogger(save_dir=root, name="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(save_dir=root, name="logs", version=loggers[0].version))
    except ImportError:
        pass
    return loggers


def default_callbacks(
    root: str,
    *,
    checkpointing: bool,
    have: list,
    progress: bool,
    logger: bool = True,
    last_every_n_steps: int | None = None,
) -> list:
    """The callbacks every run gets.

    Best checkpoint by val video top-1 plus ``last.ckpt`` in ``<root>/checkpoints`` (unless ``have`` holds a
    ``ModelCheckpoint`` or checkpointing is off), ``classes.txt``, the stop of every process at one optimizer step
    with a checkpoint on Ctrl-C or too many bad videos (:class:`~video_gn.callbacks.GracefulStop`), the
    learning-rate monitor (only with a logger: Lightning refuses it without one), the progress bar (rich on a
    terminal, plain timed lines otherwise; ``VIDEO_GN_PROGRESS``) and the end-of-fit summary.

    Args:
        root: ``trainer.default_root_dir``.
        checkpointing: ``trainer.enable_checkpointing``.
        have: the callbacks the config already gives.
        progress: ``trainer.enable_progress_bar``.
        logger: whether the trainer has a logger (``trainer.logger`` is not false).
        last_every_n_steps: also write ``last.ckpt`` every this many optimiser steps (see
            :class:`~video_gn.callbacks.VideoCheckpoint`).

    Returns:
        The callbacks to add to the trainer's.
    """
    out: list = [ClassNamesWriter(), FitSummary()]
    if not any(isinstance(c, GracefulStop) for c in have):
        out.append(GracefulStop())  # Ctrl-C, bad videos under DDP: all ranks stop at one step, last.ckpt
    if logger:
        out.insert(0, LearningRateMonitor(logging_interval="step"))
    if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in have):
        out.append(
            VideoCheckpoint(
                # A fixed directory (not per logger version) so `fit --ckpt_path last` finds it after a crash.
                dirpath=os.path.join(root, "checkpoints"),
                filename="best-epoch{epoch:03d}-step{step}",
                auto_insert_metric_name=False,
                monitor="val/video_top1",
                mode="max",
                save_last=True,
                last_every_n_steps=last_every_n_steps,
            )
        )
    if not any(isinstance(c, ProgressBar) for c in have):  # a config's own bar and ours: Lightning refuses
        # Rich on a terminal; plain timed lines with totals and ETAs when the output is a file (SLURM, nohup).
        bar = progress_bar_callback(progress)
        if bar is not None:
            out.append(bar)
    return out
