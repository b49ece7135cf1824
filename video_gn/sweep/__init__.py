"""``video-gn sweep``: a grid of trainings — norms × per-device batch × clip length × seeds — at a fixed budget
of training clips, as in the GN paper's batch-size studies (small batches take more steps, same clips seen).

Each run is one ``video-gn fit`` of a base config with command-line overrides, in its own subprocess (a crash
or an out-of-memory kill loses one run, not the sweep; peak memory is measured per run), validated once at
the last step. The learning rate needs no override: ``model.lr`` is given per 64 clips and
:class:`~video_gn.module.VideoClassifier` scales it with the global batch (linearly by default; put
``--model.lr_scaling=sqrt`` in ``overrides`` for AdamW, see ``configs/sweep/synthetic_batch_sqrt.yaml``).

Results go to ``<out>/runs.csv``, one row appended (and fsync'ed) per finished run, so an interrupted sweep
resumes where it stopped: runs whose id is already in the CSV with status ``ok`` are skipped. Then
``<out>/summary.md`` (mean ± std over seeds) and two PNG plots are written from the CSV.

The grid is a YAML file (see ``configs/sweep/``)::

    base: [configs/quickstart.yaml, configs/sweep/synthetic_base.yaml]  # `video-gn fit -c` configs, in order
    clips: 3200                        # training clips seen by every run
    seeds: [0, 1]
    devices: 1                         # per-node devices (DDP when > 1; syncbn needs > 1)
    span: 64                           # optional: sampling_rate = span // frames (same seconds per clip)
    overrides: ["--data.crop_size=48"]  # applied to every run
    experiments:                       # named sub-grids; their union is run, shared cells once
      batch:   {norms: [bn, gn, gn+ws], batch: [8, 4, 2, 1], frames: [8]}
      budget:  {norms: [bn, gn+ws], batch: [8, 4, 2], frames: [8, 16, 32], zip: true}

A norm is a ``video_gn.nn`` kind, optionally with ``+ws`` for weight-standardized convolutions
(``gn+ws``, ``bn+ws``); without it ``model.ws`` is false.

The package, one concept per module (everything public is importable from ``video_gn.sweep``), none of
which imports torch (the command starts fast; the trainings run in subprocesses):

* :mod:`~video_gn.sweep.grid`: cells, sub-grids expanded, the YAML file read (:func:`load_spec`).
* :mod:`~video_gn.sweep.run`: one ``video-gn fit`` subprocess per (cell, seed) (:func:`run_sweep`).
* :mod:`~video_gn.sweep.results`: each run's logged metrics, ``runs.csv`` appended to and read.
* :mod:`~video_gn.sweep.report`: mean ± std over seeds, ``summary.md`` and plots (:func:`write_reports`).
* :mod:`~video_gn.sweep.cli`: the ``video-gn sweep`` command line (:func:`main`).
"""

from video_gn.sweep.cli import build_parser, main, spec_from_args
from video_gn.sweep.grid import Cell, SweepSpec, expand_grid, load_spec, parse_norm
from video_gn.sweep.report import aggregate, markdown_table, plot_groups, write_reports
from video_gn.sweep.results import (
    CSV_FIELDS,
    TRAIN_METRIC,
    VAL_METRICS,
    append_row,
    backfill_train_top1,
    newest_metrics_csv,
    read_rows,
    read_val_metrics,
    rewrite_rows,
)
from video_gn.sweep.run import (
    BASE_FINGERPRINTS,
    check_base_configs_unchanged,
    config_id,
    fit_args,
    max_steps,
    run_id,
    run_sweep,
    setup_id,
)

__all__ = [
    "BASE_FINGERPRINTS",
    "CSV_FIELDS",
    "TRAIN_METRIC",
    "VAL_METRICS",
    "Cell",
    "SweepSpec",
    "aggregate",
    "append_row",
    "backfill_train_top1",
    "build_parser",
    "check_base_configs_unchanged",
    "config_id",
    "expand_grid",
    "fit_args",
    "load_spec",
    "main",
    "markdown_table",
    "max_steps",
    "newest_metrics_csv",
    "parse_norm",
    "plot_groups",
    "read_rows",
    "read_val_metrics",
    "rewrite_rows",
    "run_id",
    "run_sweep",
    "setup_id",
    "spec_from_args",
    "write_reports",
]
