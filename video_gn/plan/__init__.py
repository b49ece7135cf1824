"""``video-gn plan``: what a training step costs for each clip length T and per-device batch B.

Measured, not guessed. For a few (T, B) points the planner runs a real training step (forward, loss,
backward, optimiser step) of the registry model:

* **CPU**: the bytes autograd keeps for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``
  (each storage once, however many tensors or views of it are saved; parameters and the input clip are
  not activations and are counted separately), plus parameters and buffers, gradients and the optimiser
  state (read from the optimiser after a real step: SGD momentum 1×, AdamW 2× the parameters).
* **CUDA**: the allocator's peak (``torch.cuda.max_memory_allocated``) over a steady-state step, i.e. a
  second step, when gradients and optimiser state already exist (Lightning zeroes gradients only after
  the forward, so they are alive during it).

Activation bytes are affine in B for a fixed T — every saved tensor either has a leading batch
dimension or none (BatchNorm's per-channel statistics, standardized weights...) — so two batch sizes
at a clip length give every other B there exactly. The batch-independent part may change with T (on CPU
under bf16-mixed some convs run in float32 at small temporal sizes), so it is measured at each fitted T,
never carried over. In T both parts are affine only when every layer's temporal size is (true for T
multiples of the network's temporal stride); the planner fits the lines on two clip lengths (two batch
sizes each) and checks them on a third measured one before extrapolating to longer clips, and the output
says which cells were measured and which extrapolated. Step times are measured (median of ``--steps``
timed steps after the measuring one) on the measured cells and estimated, marked ``~``, on the others.

Example::

    video-gn plan --model i3d_r50 --norm gn --ws --frames 8,16,32,64 --batch 1,2,4,8 --crop 224 \\
        --budget 80GiB --precision bf16-mixed

The package, one concept per module (everything public is importable from ``video_gn.plan``):

* :mod:`~video_gn.plan.measure`: one real training step, measured (:func:`measure_step`).
* :mod:`~video_gn.plan.extrapolate`: the affine model and the :class:`Plan` of every cell (:func:`build_plan`).
* :mod:`~video_gn.plan.report`: the plan as a rich table, CSV or PNG.
* :mod:`~video_gn.plan.units`: memory sizes parsed and printed.
* :mod:`~video_gn.plan.cli`: the ``video-gn plan`` command line (:func:`main`).
"""

from video_gn.plan.cli import build_parser, main, parse_int_list
from video_gn.plan.extrapolate import T_FIT_RTOL, Plan, PlanCell, build_plan, temporal_sizes
from video_gn.plan.measure import (
    OPTIMIZERS,
    PRECISIONS,
    SavedTensorCounter,
    StepMeasurement,
    make_optimizer,
    measure_step,
    optimizer_state_bytes,
    tensor_bytes,
)
from video_gn.plan.report import CSV_FIELDS, plot, render_table, to_csv
from video_gn.plan.units import format_bytes, parse_bytes

__all__ = [
    "CSV_FIELDS",
    "OPTIMIZERS",
    "PRECISIONS",
    "T_FIT_RTOL",
    "Plan",
    "PlanCell",
    "SavedTensorCounter",
    "StepMeasurement",
    "build_parser",
    "build_plan",
    "format_bytes",
    "main",
    "make_optimizer",
    "measure_step",
    "optimizer_state_bytes",
    "parse_bytes",
    "parse_int_list",
    "plot",
    "render_table",
    "temporal_sizes",
    "tensor_bytes",
    "to_csv",
]
