"""Synchronised BatchNorm that also runs on CPU process groups (gloo).

``torch.nn.SyncBatchNorm`` refuses CPU tensors (and DDP refuses it on CPU modules). The BN baseline of
a small-batch study is exactly the configuration one wants to check on a laptop or in CI, so
:class:`SyncBatchNorm` computes the cross-process statistics with a differentiable all-reduce
(``torch.distributed.nn.all_reduce``). :class:`SyncBatchNormPlugin` (added by the CLI whenever
``trainer.sync_batchnorm`` is true) uses it for CPU models and torch's fused version on GPUs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (any N-D input) whose training statistics are taken over all processes of a group (CPU/gloo).

    Statistics are synchronised only in train mode, for CPU input, inside an initialised process group of more than
    one process; otherwise (eval mode, one process, or a non-CPU input) it is plain, per-process BatchNorm. Same
    parameters, buffers and state-dict keys as ``nn.BatchNorm{1,2,3}d``.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance inside the square root.
        momentum: running-statistics momentum; None for a cumulative average (as torch's BN).
        affine: learn per-channel γ and β.
        track_running_stats: keep running mean / variance (updated with the synchronised batch statistics).
        process_group: the group to synchronise over; None for the default (WORLD) group.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() < 2:
            raise ValueError(
                f"SyncBatchNorm expects input of at least 2 dims (N, C, ...), got {input.dim()}D"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        """Normalise with the statistics of the whole group's batch (train mode, CPU, > 1 process).

        The synchronised path computes in float32 (float64 for float64 input) with two differentiable
        all-reduces (the per-channel sum and element count, then the sum of squared deviations), normalises with
        the biased variance and updates the running statistics with the unbiased one, as ``nn.SyncBatchNorm``
        does.

        Args:
            input: (N, C, *), e.g. (N, C, T, H, W); N may differ between processes.

        Returns:
            Tensor of ``input``'s shape and dtype.
        """
        if not (
            self.training
            and input.device.type == "cpu"
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size(self.process_group or dist.group.WORLD) > 1
        ):
            return super().forward(input)
        group = self.process_group or dist.group.WORLD
        dims = [0, *range(2, input.dim())]
        x = input if input.dtype == torch.float64 else input.float()  # float32 at least (bf16/fp16 inputs)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype)
        c = x.shape[1]
        shape = (1, c) + (1,) * (input.dim() - 2)
        # Two differentiable all-reduces: [sum, count] (C + 1 values) for the mean, then the sum of squared
        # deviations from it (C values). E[x²] − μ² in one would lose digits when |μ| ≫ σ (float32).
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), count]), group)
        n = stats[-1]
        mean = stats[:c] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), group) / n  # biased, as BN normalises with
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum over processes is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def _take_over(new: nn.Module, old: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Give ``new`` the BatchNorm ``old``'s parameter and buffer objects, public attributes (pytorchvideo's
    ``block_final_bn``; not those in ``skip``) and train/eval mode."""
    for name in ("weight", "bias"):
        if getattr(old, name, None) is not None:
            setattr(new, name, getattr(old, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if name in old._buffers:
            new._buffers[name] = old._buffers[name]
    for key, value in vars(old).items():
        if not key.startswith("_") and key not in vars(new) and key not in skip:
            setattr(new, key, value)
    new.train(old.training)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm in ``module`` (1/2/3-D, torch's ``nn.SyncBatchNorm``) by :class:`SyncBatchNorm`.

    The new layer takes over the old one's parameters and buffers themselves (device, dtype and
    ``requires_grad`` kept, as torch's converter does), its train/eval mode and its public attributes
    (pytorchvideo's ``block_final_bn``). Layers that are already :class:`SyncBatchNorm` are kept.

    Args:
        module: any ``nn.Module``; modified in place.
        process_group: the group the new layers synchronise over; None keeps a converted
            ``nn.SyncBatchNorm``'s own group, else the default (WORLD) group.

    Returns:
        The converted module (a new object where ``module`` itself is a BatchNorm).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group if process_group is not None else getattr(module, "process_group", None),
        )
        _take_over(new, module)
        if not isinstance(module, nn.SyncBatchNorm):
            new._converted_from = type(module)  # what revert_sync_batchnorm restores
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn the :class:`SyncBatchNorm` layers that :func:`convert_sync_batchnorm` made from plain BatchNorms
    back into those classes (``nn.BatchNorm3d`` ...), keeping their parameters, buffers and attributes.

    Args:
        module: any ``nn.Module``; modified in place.

    Returns:
        The reverted module (a new object where ``module`` itself is a converted layer).
    """
    original = getattr(module, "_converted_from", None)
    if isinstance(module, SyncBatchNorm) and original is not None:
        new = original(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        _take_over(new, module, skip=("process_group",))
        return new
    for name, child in module.named_children():
        module.add_module(name, revert_sync_batchnorm(child))
    return module


class SyncBatchNormPlugin(TorchSyncBatchNorm):
    """Lightning layer-sync plugin: BatchNorm → :class:`SyncBatchNorm` (CPU and GPU) under DDP.

    Subclasses Lightning's own plugin so that ``Trainer(sync_batchnorm=True, plugins=[SyncBatchNormPlugin()])``
    is accepted; the CLI adds it whenever ``trainer.sync_batchnorm`` is true.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        """Convert every BatchNorm of ``model`` to a synchronised one, in place.

        Args:
            model: the LightningModule (or any module).

        Returns:
            The model with :class:`SyncBatchNorm` layers when all its parameters are on CPU, else with torch's
            ``nn.SyncBatchNorm`` (``nn.SyncBatchNorm.convert_sync_batchnorm``).
        """
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        return convert_sync_batchnorm(model) if on_cpu else nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Convert the synchronised layers back to the BatchNorm classes they were made from (Lightning calls
        this when DDP tears down, so the model handed back after ``fit`` is the model that was given).

        Args:
            model: the LightningModule.

        Returns:
            The model with its original BatchNorm classes (torch's ``nn.SyncBatchNorm`` layers become
            Lightning's dimension-agnostic BatchNorm, as Lightning's own plugin does).
        """
        return super().revert(revert_sync_batchnorm(model))
