"""Weight Standardization (WS) for convolutions of any dimensionality.

Weight Standardization (Qiao et al., 2019, https://arxiv.org/abs/1903.10520) re-parameterises every conv filter as

    ŵ = (w − mean(w)) / sqrt(var(w) + eps)

with the mean and the *biased* variance taken per output filter over (in_channels / groups, *kernel_size) and
``eps`` inside the square root, as timm's ``StdConv2d`` and the official BiT code do (BiT checkpoints were trained
with eps 1e-8 / 1e-10 and stay compatible if you pass that eps).

Why a custom autograd function. Written with plain tensor ops, WS makes autograd keep several weight-sized
intermediates per conv ((w − μ), (w − μ)², 1/σ, ŵ ...), and the conv itself keeps ŵ for its backward. For a
3D ResNet the weights are ~130 MB, so that is hundreds of MB and a visible slowdown. Here the whole
"standardize, then convolve" is one :class:`torch.autograd.Function` that saves only what a plain conv saves
(the input and the raw weight, which is a parameter and costs nothing extra) plus two numbers per filter (μ and
1/σ). The backward maps ∂L/∂ŵ back to ∂L/∂w in closed form:

    ∂L/∂w = (1/σ) · (g − mean(g) − ŵ · mean(g · ŵ)),   g = ∂L/∂ŵ, means per filter.

What is left is streaming over the weights, and in the late, weight-heavy stages of a ResNet that is the whole
cost (on CPU a fresh weight-sized buffer also costs page faults worth several passes). So for those layers on
CPU the function never builds ŵ at all: it convolves with the raw w, rescales the (small) output per channel,
and gets the per-filter sums that the formula above needs from reductions over the output (see
:class:`_WSConvFunction`). Elsewhere it rebuilds ŵ in backward, which is cheap when weights are small.

See ``benchmarks/layers.py`` and ``docs/benchmarks.md`` for the measured cost against the naive and the
``F.batch_norm`` formulations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from video_gn.nn.conv import (
    SafeConv3d,
    convolution,
    convolution_backward,
    cpu_bf16_conv3d_unsafe,
    kernel_trim,
    untrim_weight_grad,
)

__all__ = [
    "WSConv1d",
    "WSConv2d",
    "WSConv3d",
    "conv_layer",
    "standardize_weight",
    "ws_conv",
]

#: Default WS epsilon, added to the per-filter biased variance inside the square root.
DEFAULT_WS_EPS = 1e-6


# Standardized-weight path, cost per step: forward, ATen's LayerNorm kernel reads w and writes ŵ (statistics by a
# cascade sum, accurate when a filter's mean is large next to its spread, where E[w²] − μ² would lose
# ~1e-7·μ²/σ² in float32); backward, the same again (ŵ for the conv backward), then LayerNorm's backward maps the
# conv's ∂L/∂ŵ to ∂L/∂w (reads g and w, one write).


def _standardize(weight: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Return (ŵ, μ, 1/σ): ŵ shaped like ``weight``, μ and 1/σ shaped (C_out,).

    Standardizing each filter is LayerNorm over the flattened filter without affine parameters, so ATen's fused
    kernel does it in one read and one write, its per-row moments by a vectorised cascade (Welford) sum that stays
    accurate when a filter's mean is large next to its spread. One op instead of half a dozen also matters for
    the small filter banks of early layers, where each extra op costs more in dispatch and thread wake-up than
    in arithmetic.
    """
    flat = weight.reshape(weight.shape[0], -1)
    w_hat, mean, rstd = torch.native_layer_norm(flat, [flat.shape[1]], None, None, eps)
    return w_hat.view_as(weight), mean.view(-1), rstd.view(-1)


def _standardize_backward(grad_w_hat: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor) -> Tensor:
    """Map ∂L/∂ŵ to ∂L/∂w for ŵ = (w − μ)·(1/σ), returned with ``grad_w_hat``'s shape (a fresh tensor).

    ∂L/∂w = (1/σ)·(g − mean(g) − ŵ·mean(g·ŵ)), means per filter: LayerNorm's backward over each flattened filter,
    so ATen's fused kernel does it, reading g and w and writing once with no temporaries (a per-filter
    ``vecdot`` allocates a weight-sized product, and on CPU a fresh buffer of that size costs page faults worth
    several passes). ``mean`` and ``rstd`` are the forward's (C_out,) stats.
    """
    c_out = weight.shape[0]
    w = weight.reshape(c_out, -1)
    g = grad_w_hat.reshape(c_out, -1)
    if g.dtype != w.dtype:
        g = g.to(w.dtype)
    grad_w = torch.ops.aten.native_layer_norm_backward(
        g, w, [w.shape[1]], mean.view(-1, 1), rstd.view(-1, 1), None, None, [True, False, False]
    )[0]
    return grad_w.view(grad_w_hat.shape)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class _StandardizeWeight(torch.autograd.Function):
    """ŵ = standardize(w); saves w and per-filter (μ, 1/σ) only, recomputes ŵ in backward."""

    @staticmethod
    def forward(ctx, weight: Tensor, eps: float) -> Tensor:
        w_hat, mean, rstd = _standardize(weight, eps)
        ctx.save_for_backward(weight, mean, rstd)
        return w_hat

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w_hat: Tensor) -> tuple[Tensor, None]:
        weight, mean, rstd = ctx.saved_tensors
        return _standardize_backward(grad_w_hat, weight, mean, rstd), None


# Path selection for the fused conv (see _WSConvFunction). Tests set this to "weight" / "standardized".
_FORCE_PATH: str | None = None
# Largest μ²/σ² per filter for which the weight-domain path is used: its cancellation costs ~log10(μ/σ) digits.
_MAX_MEAN_SQ_OVER_VAR = 100.0
# The weight-domain path saves a copy of the raw conv output; it is taken only when the weights outweigh the
# input by this factor, so that copy stays small next to the weights it spares us from rebuilding.
_MIN_WEIGHT_OVER_INPUT = 4


def _mean_var_one_pass(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean and biased variance of ``flat`` (C_out, K) without any (C_out, K) temporary."""
    k = flat.shape[1]
    mean = torch.mv(flat, flat.new_full((k,), 1.0 / k))
    mean_sq = torch.linalg.vector_norm(flat, dim=1).square_().div_(k)
    return mean, (mean_sq - mean * mean).clamp_min_(0.0)


def _box_sum(x: Tensor, kernel: Sequence[int], stride, padding, dilation) -> Tensor:
    """conv(x, ones): the sum of ``x`` over its channels and each kernel window, shaped (N, 1, *spatial_out).

    For 2-D / 3-D windows without dilation it runs as a sum pool (``avg_pool`` with divisor 1) of the zero-padded
    channel sum, several times faster than a one-channel conv, whose backend is tuned for many channels.
    """
    summed = x.sum(1, keepdim=True)
    if _pools(summed, dilation):
        if any(padding):
            summed = F.pad(summed, [p for p in reversed(padding) for _ in range(2)])
        pool = F.avg_pool2d if summed.dim() == 4 else F.avg_pool3d
        return pool(summed, list(kernel), list(stride), 0, False, True, 1)
    return convolution(summed, _ones_kernel(kernel, x), None, stride, padding, dilation, 1)


def _box_sum_backward(grad: Tensor, x: Tensor, kernel: Sequence[int], stride, padding, dilation) -> Tensor:
    """The adjoint of :func:`_box_sum` for one channel: (N, 1, *spatial_out) → (N, 1, *x's spatial)."""
    if _pools(grad, dilation):
        padded = [grad.shape[0], 1] + [n + 2 * p for n, p in zip(x.shape[2:], padding)]
        pool_backward = (
            torch.ops.aten.avg_pool2d_backward if grad.dim() == 4 else torch.ops.aten.avg_pool3d_backward
        )
        out = pool_backward(
            grad, grad.new_empty(padded), list(kernel), list(stride), [0] * len(kernel), False, True, 1
        )
        return out[(slice(None), slice(None), *(slice(p, p + n) for p, n in zip(padding, x.shape[2:])))]
    return convolution_backward(
        grad, x[:, :1], _ones_kernel(kernel, grad), None, stride, padding, dilation, 1, [True, False, False]
    )[0]


def _ones_kernel(kernel: Sequence[int], like: Tensor) -> Tensor:
    """The all-ones (1, 1, *kernel) filter of the one-channel box conv, in ``like``'s dtype and device."""
    return torch.ones((1, 1, *kernel), dtype=like.dtype, device=like.device)


def _pools(t: Tensor, dilation: Sequence[int]) -> bool:
    """Whether :func:`_box_sum` runs as a sum pool: 2-D or 3-D windows (torch has no divisor for 1-D), no dilation."""
    return t.dim() in (4, 5) and all(d == 1 for d in dilation)


def _scale_shift_filters(weight: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """A fresh ``scale[o]·weight[o] + shift[o]`` per filter o, in one pass over ``weight``.

    It runs on the inference batch-norm kernel (mean 0, variance 1, no eps: its per-channel multiplier is exactly
    ``scale`` and its offset ``shift``), which streams each filter once. The obvious ops are slower on CPU:
    ``mul`` then ``add_`` pass over the bank twice, and an ``addcmul`` whose first operand is the broadcast
    ``shift`` runs on a slow broadcast kernel. One fresh 512×512×3³ bank, cache-cold: 4.0-5.3 ms for mul + add_,
    3.3-4.5 ms here; in the whole step that is within noise
    (``docs/results/bench/ws_ab_bn_kernel_xeon_2026-12-01.txt``).
    """
    c_out = weight.shape[0]
    zero, one = weight.new_zeros(c_out), weight.new_ones(c_out)
    out = F.batch_norm(weight.reshape(1, c_out, -1), zero, one, scale, shift, False, 0.0, 0.0)
    return out.view(weight.shape)


class _WSConvFunction(torch.autograd.Function):
    """conv(x, standardize(w), b) as one op: saves x, w and per-filter μ, 1/σ (a plain conv saves x and w).

    Two exact evaluation orders, chosen per call:

    * standardized-weight path: build ŵ, convolve; in backward rebuild ŵ for the conv backward, then map
      ∂L/∂ŵ to ∂L/∂w with the fused kernel. One weight-sized temporary in forward and two in backward. Used on
      accelerators (their caching allocators make the temporaries free), for grouped convs, under autocast, for
      ill-conditioned filters (μ² > 100·σ²) and whenever the weights are not much larger than the input.
    * weight-domain path (CPU, fp32 / fp64, groups = 1, weights > 4× the input): since ŵ[o] = r_o·(w[o] − μ_o),
      conv(x, ŵ)[o] = r_o·conv(x, w)[o] − r_o·μ_o·box(x), box(x) being the conv of the channel-summed input with
      an all-ones kernel (a sum pool, :func:`_box_sum`); the input gradient splits the same way, the conv
      backward run with ∂L/∂y·r yields r·∂L/∂ŵ directly, and the per-filter sums Σ∂L/∂ŵ and Σ∂L/∂ŵ·w are
      reductions of ∂L/∂y against box(x) and conv(x, w). Those two output-sized tensors are saved (small, by the
      size rule); no weight-sized temporary is ever built, and the weights are streamed three times per step
      instead of about a dozen.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, eps):
        ctx.x_dtype = x.dtype
        ctx.bias_shape = None if bias is None else list(bias.shape)
        ctx.bias_dtype = None if bias is None else bias.dtype
        # Autocast does not look inside a custom Function's backward, so we do its casting by hand and
        # remember the compute dtype; the conv then runs with autocast off.
        # As for torch's own ops, autocast never lowers float64.
        dtype = _autocast_dtype(x.device.type) if x.is_floating_point() and x.dtype != torch.float64 else None
        out_dtype = dtype or x.dtype
        if cpu_bf16_conv3d_unsafe(x, weight.shape[2:], dilation, out_dtype):
            dtype = torch.float32  # oneDNN's bf16 weight gradient is wrong here (video_gn/nn/conv.py)
        weight_domain = False
        if (
            _FORCE_PATH != "standardized"
            and dtype is None
            # Its cancellations (E[w²] − μ², r·conv(x, w) − r·μ·box(x)) need fp32 / fp64: in bf16 they lose every
            # digit (and the box sums can overflow)
            and x.dtype in (torch.float32, torch.float64)
            and weight.dtype == x.dtype
            and groups == 1
            and x.device.type == "cpu"
            and (weight.numel() > _MIN_WEIGHT_OVER_INPUT * x.numel() or _FORCE_PATH == "weight")
        ):
            mean, var = _mean_var_one_pass(weight.reshape(weight.shape[0], -1))
            weight_domain = bool((mean * mean <= _MAX_MEAN_SQ_OVER_VAR * var).all())  # CPU: no device sync
        with torch.autocast(x.device.type, enabled=False):
            if weight_domain:
                rstd = torch.rsqrt(var + eps)
                view = (1, -1) + (1,) * len(stride)
                # (N, 1, *spatial_out): each window's input sum
                box = _box_sum(x, weight.shape[2:], stride, padding, dilation)
                raw = convolution(x, weight, None, stride, padding, dilation, 1)
                out = torch.mul(raw, rstd.view(view)).addcmul_(box, (-mean * rstd).view(view))
                if bias is not None:
                    out.add_(bias.view(view))
                # conv(x, w) and box(x) give the per-filter sums of ∂L/∂ŵ·w and ∂L/∂ŵ in backward by
                # reductions over the (small) output, instead of passes over the (large) weight.
                extra = (raw, box)
                compute_dtype = x.dtype
            else:
                w_hat, mean, rstd = _standardize(weight, eps)
                if dtype is not None:
                    x, w_hat = x.to(dtype), w_hat.to(dtype)
                    bias = bias.to(dtype) if bias is not None else None
                out = convolution(x, w_hat, bias, stride, padding, dilation, groups)
                compute_dtype = w_hat.dtype
                del w_hat
                extra = (None, None)
        ctx.save_for_backward(x, weight, mean, rstd, *extra)
        ctx.conv_args = (stride, padding, dilation, groups)
        ctx.compute_dtype = compute_dtype
        ctx.weight_domain = weight_domain
        ctx.eps = eps
        return out.to(out_dtype)  # a no-op unless the guard computed in fp32

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, mean, rstd, raw, box = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        # The backward convs leave out the kernel taps that only ever meet zero padding (video_gn.nn.conv.kernel_trim;
        # the forward was no faster trimmed); the statistics stay those of the whole filter.
        trim = kernel_trim(x, weight, stride, padding, dilation)
        if trim is not None:
            padding = trim.padding
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.bias_shape is not None
        grad_out = grad_out.to(ctx.compute_dtype)
        grad_x = grad_w = grad_b = None
        if ctx.weight_domain:
            view = (1, -1) + (1,) * len(stride)
            n, c_out, k = grad_out.shape[0], grad_out.shape[1], weight[0].numel()
            w_conv = trim.cut(weight) if trim is not None else weight
            g = grad_out.reshape(n, c_out, -1)
            # What needs only ∂L/∂y runs before the conv backward, which evicts it from cache (measured in place,
            # with the reductions as bmm / vecdot: that output-sized work went from 10.5 to 7.9 ms per step).
            # g·r is ∂L/∂(conv(x, w)) per output channel: one conv backward gives convᵀ(g·r, w) for ∂L/∂x and
            # r·∂L/∂ŵ for the weight, exactly what the plain conv would compute.
            grad_r = grad_out * rstd.view(view)
            if need_x:  # convᵀ(Σ_o g_o·r_o·μ_o, ones): the same for every input channel, subtracted below
                h = torch.matmul((mean * rstd).view(1, 1, c_out), g).view(n, 1, *grad_out.shape[2:])
                box_grad = _box_sum_backward(h, x, w_conv.shape[2:], stride, padding, dilation)
            if need_w:
                # per filter: mean(∂L/∂ŵ) = Σ g·box / K, mean(∂L/∂ŵ · w) = Σ g·conv(x, w) / K
                g_mean = torch.bmm(g, box.reshape(n, -1, 1)).sum(0).view(-1) / k
                gw_mean = torch.linalg.vecdot(g, raw.reshape(n, c_out, -1)).sum(0) / k
                gw_hat_mean = rstd * (gw_mean - mean * g_mean)  # mean(∂L/∂ŵ · ŵ)
                # ∂L/∂w = r·g − r·mean(g) − r·ŵ·mean(g·ŵ) = (r·g) + c₂·w + c₁
                c2 = -rstd * rstd * gw_hat_mean
                c1 = -rstd * g_mean - c2 * mean
            grad_x, grad_w, _ = convolution_backward(
                grad_r, x, w_conv, None, stride, padding, dilation, 1, [need_x, need_w, False]
            )
            if need_x:
                grad_x -= box_grad
            if need_w:  # ∂L/∂w = (conv's r·∂L/∂ŵ) + c₂·w + c₁, c₂·w + c₁ over the whole filter
                if trim is not None:  # the conv's part only on its taps, added to a fresh c₂·w + c₁
                    grad_w = untrim_weight_grad(grad_w, weight, trim, _scale_shift_filters(weight, c2, c1))
                else:  # two in-place passes: faster here than adding a fresh c₂·w + c₁ (2.8 vs 4.0 ms a 512² bank)
                    shape = (-1,) + (1,) * (weight.dim() - 1)
                    grad_w.addcmul_(weight, c2.view(shape)).add_(c1.view(shape))
            if need_b:
                grad_b = grad_out.sum(dim=[0, *range(2, grad_out.dim())])
        else:
            w_hat = _standardize(weight, ctx.eps)[0]  # one weight-sized temporary; the same ŵ as forward's
            if trim is not None:
                w_hat = trim.cut(w_hat)
            grad_x, grad_w_hat, grad_b = convolution_backward(
                grad_out,
                x,
                w_hat.to(ctx.compute_dtype),
                ctx.bias_shape,
                stride,
                padding,
                dilation,
                groups,
                [need_x, need_w, need_b],
            )
            del w_hat
            if need_w:
                if trim is not None:
                    grad_w_hat = untrim_weight_grad(grad_w_hat, weight, trim)
                grad_w = _standardize_backward(grad_w_hat, weight, mean, rstd)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_x is not None:
            grad_x = grad_x.to(ctx.x_dtype)
        if grad_b is not None:
            grad_b = grad_b.to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None, None, None, None


def standardize_weight(weight: Tensor, eps: float = DEFAULT_WS_EPS) -> Tensor:
    """Standardize a conv weight per output filter (differentiable, memory-lean backward).

    ŵ = (w − mean(w)) / sqrt(var(w) + eps) per output filter, biased variance (Weight Standardization, Qiao et al.
    2019, https://arxiv.org/abs/1903.10520). Backward saves only ``weight`` and two numbers per filter.

    Args:
        weight: conv weight (O, I / groups, *kernel), any number of kernel dims.
        eps: added to the biased variance inside the square root.

    Returns:
        ŵ with the same shape and dtype, each filter ``ŵ[o]`` having mean 0 and variance var/(var + eps).
    """
    return _StandardizeWeight.apply(weight, eps)


def ws_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Sequence[int] | int = 1,
    padding: Sequence[int] | int = 0,
    dilation: Sequence[int] | int = 1,
    groups: int = 1,
    eps: float = DEFAULT_WS_EPS,
) -> Tensor:
    """Convolution with a weight-standardized filter bank, fused so that backward keeps no ŵ.

    Weight Standardization: Qiao et al. 2019, https://arxiv.org/abs/1903.10520.

    Numerically ``F.conv{d}d(x, standardize_weight(weight, eps), bias, stride, padding, dilation, groups)``
    with d = ``weight.dim() - 2``; only numeric (zero) padding is taken here, modules pre-pad otherwise.

    Args:
        x: input (N, C_in, *spatial) with len(spatial) = d.
        weight: raw weight (C_out, C_in / groups, *kernel).
        bias: optional (C_out,).
        stride, padding, dilation: ints or d-tuples.
        groups: conv groups.
        eps: WS epsilon (inside the square root).

    Returns:
        Output (N, C_out, *spatial_out), e.g. (N, C_out, T', H', W') for a 3-D conv; under autocast in the
        autocast dtype (float64 is never lowered), else in ``x``'s dtype.

    Raises:
        ValueError: ``x`` does not have ``weight.dim()`` dims (unbatched input goes through the modules).
    """
    d = weight.dim() - 2
    if x.dim() != d + 2:
        raise ValueError(
            f"ws_conv: input has {x.dim()} dims {tuple(x.shape)} but a {d}-D conv needs {d + 2} "
            f"(N, C, {'×'.join('DHW'[-d:]) if d <= 3 else '...'})"
        )

    def tup(v):
        return [int(v)] * d if isinstance(v, int) else [int(e) for e in v]

    return _WSConvFunction.apply(x, weight, bias, tup(stride), tup(padding), tup(dilation), groups, eps)


class _WSConvMixin:
    """Adds weight standardization to an ``nn.ConvNd``: one implementation for every dimensionality.

    Subclasses list the mixin first and a ``torch.nn.ConvNd`` second; the constructor is the conv's, plus the
    keyword ``eps``. Parameters keep torch's names (``weight``, ``bias``), so ``state_dict`` s load both ways.
    """

    def __init__(self, *args, eps: float = DEFAULT_WS_EPS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(
                f"{type(self).__name__}: eps must be a positive float (default {DEFAULT_WS_EPS}; BiT used "
                f"1e-8 / 1e-10), got {eps!r}"
            )
        self.eps = float(eps)

    def standardized_weight(self) -> Tensor:
        """Return ŵ = standardize(weight), the kernel the conv actually applies.

        Returns:
            ŵ of shape (O, I / groups, *kernel), ``weight``'s dtype, differentiable w.r.t. ``weight`` (see
            :func:`standardize_weight`).
        """
        return standardize_weight(self.weight, self.eps)

    def _padded_input(self, x: Tensor) -> tuple[Tensor, Sequence[int]]:
        """Apply non-zero padding modes and string padding explicitly; return (input, numeric padding)."""
        d = len(self.kernel_size)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return x, [0] * d
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return x, [0] * d
            # "same": left = total // 2, the odd remainder goes right (as torch does).
            pads, sym = [], []
            for k, dil in zip(self.kernel_size, self.dilation):
                total = dil * (k - 1)
                sym.append(total // 2)
                pads.append(total - total // 2 - total // 2)
            if any(pads):
                extra = []
                for p in reversed(pads):
                    extra += [0, p]
                x = F.pad(x, extra)
            return x, sym
        return x, self.padding

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (torch's name)
        """Convolve ``input`` with the standardized weight (:func:`ws_conv`), honouring every padding option.

        Non-zero ``padding_mode`` and string padding (``"same"``, ``"valid"``) are applied to the input first.

        Args:
            input: (N, C_in, *spatial) or unbatched (C_in, *spatial), e.g. (N, C_in, T, H, W) for
                :class:`WSConv3d`.

        Returns:
            (N, C_out, *spatial_out), or (C_out, *spatial_out) for unbatched input.
        """
        unbatched = input.dim() == len(self.kernel_size) + 1  # (C, *spatial), as nn.ConvNd accepts
        x, padding = self._padded_input(input.unsqueeze(0) if unbatched else input)
        out = ws_conv(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups, self.eps)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        """The conv's ``repr`` arguments plus ``eps``."""
        return super().extra_repr() + f", eps={self.eps:g}"


class WSConv1d(_WSConvMixin, nn.Conv1d):
    """``nn.Conv1d`` whose weight is standardized per output filter in every forward (keyword ``eps``).

    Weight Standardization: https://arxiv.org/abs/1903.10520. Same constructor as ``nn.Conv1d`` plus ``eps``
    (default 1e-6, must be > 0). Input (N, C_in, L) -> output (N, C_out, L').
    """


class WSConv2d(_WSConvMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardized per output filter in every forward (keyword ``eps``).

    Weight Standardization: https://arxiv.org/abs/1903.10520. Same constructor as ``nn.Conv2d`` plus ``eps``
    (default 1e-6, must be > 0; timm's BiT models use 1e-8). Input (N, C_in, H, W) -> output
    (N, C_out, H', W').
    """


class WSConv3d(_WSConvMixin, nn.Conv3d):
    """``nn.Conv3d`` whose weight is standardized per output filter in every forward (keyword ``eps``).

    Weight Standardization: Qiao et al. 2019, https://arxiv.org/abs/1903.10520. Same constructor as ``nn.Conv3d``
    plus ``eps`` (default 1e-6, must be > 0; inside the square root, biased variance). Like :class:`SafeConv3d`
    it computes a CPU bf16 conv that would get wrong weight gradients in float32 (``video_gn/nn/conv.py``).
    Input (N, C_in, T, H, W) -> output (N, C_out, T', H', W'). For inference, fold it into a plain conv with
    :func:`video_gn.nn.fold_weight_standardization`.
    """


WS_CONV_BY_DIM: dict[int, type[nn.Module]] = {1: WSConv1d, 2: WSConv2d, 3: WSConv3d}
CONV_BY_DIM: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
#: What ``conv_layer(ws=False)`` builds: torch's convs, except the bf16-safe 3D one (video_gn/nn/conv.py).
PLAIN_CONV_BY_DIM: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: SafeConv3d}


def conv_layer(ws: bool, eps: float = DEFAULT_WS_EPS, *, dim: int = 3) -> Callable[..., nn.Module]:
    """Return the conv constructor to build with: a plain conv class or ``partial(WSConvNd, eps=eps)``.

    Plain means ``nn.Conv1d``, ``nn.Conv2d`` or :class:`SafeConv3d`; WS means :class:`WSConv1d` / ``2d`` / ``3d``
    (Weight Standardization, https://arxiv.org/abs/1903.10520).

    Args:
        ws: use weight standardization.
        eps: WS epsilon (ignored when ``ws`` is False).
        dim: 1, 2 or 3.

    Returns:
        A callable with ``nn.ConvNd``'s constructor signature.

    Raises:
        ValueError: ``dim`` is not 1, 2 or 3.
    """
    if dim not in CONV_BY_DIM:
        raise ValueError(f"conv_layer: dim must be 1, 2 or 3, got {dim!r}")
    if not ws:
        return PLAIN_CONV_BY_DIM[dim]
    return functools.partial(WS_CONV_BY_DIM[dim], eps=eps)
