"""CPU work-arounds for torch's 3D convs (wrong bf16 weight gradients, slow backend choices) and the plain conv
that applies them.

What goes wrong (found here with torch 2.14.1, reproduced with bare ``F.conv3d``, nothing of ours involved): on
CPU, a bfloat16 3D convolution whose temporal kernel extent ``dilation·(k_T − 1) + 1`` is larger than the input's
temporal length T > 1 (e.g. a 3×3×3 conv on T = 2, or 5×1×1 on T = 3 or 4, with the usual "same" padding)
returns a weight gradient that is garbage: relative errors of order 1 to 1e36, often NaN or inf, while the output
and the input gradient are right. In a video ResNet this is not exotic: r3d_18 on 8-frame clips reaches T = 2 in
its third stage, so ``bf16-mixed`` training on CPU silently trains those convs on noise (the sporadic NaNs in the
block-final convs were its visible tip). fp32 convs, the other kernel shapes, T ≥ extent, and T = 1 are right.

The work-around is local and exact: such a conv is computed in float32 (autocast off for that one op) and the
output cast back to the dtype the caller expects. Only those layers pay fp32 cost; they are the late, temporally
collapsed ones, so the step-time cost is small. :class:`SafeConv3d` (what the registry builds for non-WS models)
and :class:`~video_gn.nn.WSConv3d` both apply it; ``tests/test_nn.py`` checks bf16 weight gradients against a
float64 reference for T = 1…6 and k_T = 1, 3, 5, and fails without the guard on an affected torch.

A second CPU problem, of speed: for a float32 3D conv on a batch of one clip, torch's backend heuristic (written
for 2D: it looks at N·C·T·H and ignores W) picks its im2col "slow3d" kernels instead of oneDNN whenever
N·C·T·H ≤ 20480, i.e. for most layers of a CPU-sized video model, and a batch-1 step then takes longer than a
batch-2 one (measured: forward 1.7-17× slower per conv, up to 4.4× per r3d_18 training step; docs/benchmarks.md).
Batch 1 is this project's point, so :func:`convolution` / :func:`convolution_backward` (used by
:class:`SafeConv3d` and by the WS convs) run the full 3D kernels among those convs (kT > 1 and kH·kW > 1: the
others were slower routed, in whole training steps) on oneDNN: the forward directly (``aten.mkldnn_convolution``), the backward on
the clip plus an all-zero second clip (which adds nothing to the weight and bias gradients; its input gradient
is dropped) where the activations are at least half the weights' size; in weight-heavy layers torch's own
batch-1 backward is the faster one and is kept. Same results up to float rounding, no extra memory kept for
backward.

A third, for every batch size: where torch does pick oneDNN, two of oneDNN's float32 backward kernels are several
times slower than its im2col "slow3d" ones on this class of CPU (r3d_18 and i3d_r50 at width 64, batch 2, 2
threads: ``benchmarks/conv_backends.py``, docs/benchmarks.md):

* the weight gradient of a conv whose temporal kernel overhangs the clip (d_T·(k_T − 1) + 1 > T, e.g. a 3×3×3
  conv on T = 1 or 2: the late stages of a video ResNet on 8-frame clips, the same kernel family whose bf16 weight
  gradient is wrong, above) when the weights outweigh the input 4:1 or more: 1.75-4.1× slower;
* 1×1×1 convs (bottleneck projections, shortcut downsampling): their weight gradient 1.3-2.7× slower, and the
  input gradient of a strided one 1.4-13× slower.

:func:`convolution_backward` computes exactly those gradients on slow3d (oneDNN switched off around that one call,
:func:`backward_on_slow3d` decides) and the others on oneDNN, and :class:`SafeConv3d` takes that backward whenever
it applies. The forward is unchanged. Same results up to float rounding; whole r3d_18 training steps (width 64,
8×112², batch 2) 1.12× faster, batch 1 and the quick-start model unchanged.

Fourth, wasted work: a 3×3×3 conv with padding 1 on a T = 1 input (r3d_18's last stage on 8-frame clips, its last
two on 4-frame clips) only ever uses the middle temporal slice of its kernel; the other taps multiply zero padding
at every output position, and the backward kernels compute them all the same. :func:`kernel_trim` finds such taps
(symmetric cuts per dim), and the backward of :class:`SafeConv3d` and of both WS paths runs its convs on the taps
that meet data (:func:`untrim_weight_grad` puts the weight gradient back in the whole kernel: exactly 0 on the
dropped taps for a plain conv). The forward was no faster trimmed and is left whole. Whole r3d_18 steps (width 64,
112², batch 2): 1.05-1.06× faster on 4-frame clips, 1.01-1.03× on 8-frame clips (docs/benchmarks.md): the kernels
shrink 3-6×, but the full-size weight gradient must still be written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "SafeConv3d",
    "backward_on_slow3d",
    "convolution",
    "convolution_backward",
    "cpu_batch1_conv3d_slow",
    "cpu_bf16_conv3d_unsafe",
    "kernel_trim",
    "untrim_weight_grad",
]

#: Route batch-1 CPU 3D convs to oneDNN (module docstring); benchmarks switch it off to measure torch's own path.
BATCH1_ONEDNN = True
#: Drop the kernel taps that only ever meet zero padding (:func:`kernel_trim`); benchmarks switch it off.
TRIM_KERNEL = True
#: Run the backward kernels oneDNN is slow at on slow3d (module docstring); benchmarks switch it off to compare.
BACKWARD_SLOW3D = True
# Smaller convs (input + weight elements) keep torch's backward: below ~1 MB of operands a routed gradient saves
# 0.1 ms at most (benchmarks/conv_backends.py at width 16), about what the second backward call and, for
# SafeConv3d, the autograd Function cost.
_MIN_ROUTED_ELEMENTS = 2**18


def cpu_bf16_conv3d_unsafe(
    x: Tensor, kernel_size: Sequence[int], dilation: Sequence[int], dtype: torch.dtype
) -> bool:
    """True when a conv of ``x`` computed in ``dtype`` hits the oneDNN bf16 temporal-kernel bug (module docstring).

    Args:
        x: the conv input (N, C, T, H, W), already padded if the caller pads explicitly.
        kernel_size: (k_T, k_H, k_W).
        dilation: (d_T, d_H, d_W).
        dtype: the dtype the conv would run in (autocast's, or the input's).

    Returns:
        True for a bfloat16 5-D CPU input with 1 < T < the kernel's temporal extent ``d_T·(k_T − 1) + 1`` while
        oneDNN is enabled; False otherwise (then the conv can run as asked).
    """
    return (
        dtype == torch.bfloat16
        and x.device.type == "cpu"
        and x.dim() == 5
        and dilation[0] * (kernel_size[0] - 1) + 1 > x.shape[2] > 1
        and torch.backends.mkldnn.enabled
    )


def cpu_batch1_conv3d_slow(
    x: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> bool:
    """True when torch would run this conv on its slow batch-1 "slow3d" CPU kernels and oneDNN can take it.

    Args:
        x: the conv input (N, C, T, H, W) in the dtype the conv runs in (autocast already applied).
        weight: (C_out, C_in / groups, kT, kH, kW).
        stride, padding, dilation: 3-sequences of ints (numeric zero padding).
        groups: conv groups.

    Returns:
        True only for a float32 5-D CPU input with N = 1 and a float32 full 3D kernel (kT > 1 and kH·kW > 1),
        oneDNN available and enabled, :data:`BATCH1_ONEDNN` on, plain eager autograd, and torch's backend choice
        being "slow3d" (asked of ``torch._C._select_conv_backend``, or its heuristic repeated where that is
        missing).
    """
    if not (
        BATCH1_ONEDNN
        and x.dim() == 5
        and x.shape[0] == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        # Only full 3D kernels (kT > 1 and kH·kW > 1, e.g. 3x3x3), as measured on whole training steps: routed
        # 1x1-spatial kernels (bottleneck 1x1x1, 3x1x1) were up to 4x slower per conv, and with the 1x3x3 convs
        # routed too the i3d_r50 / slow_r50 steps were 18 % slower (docs/benchmarks.md)
        and weight.shape[2] > 1
        and weight.shape[-1] * weight.shape[-2] > 1
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and _plain_eager()
    ):
        return False
    backend = _torch_backend(x, weight, stride, padding, dilation, groups)
    if backend is None:
        # torch's heuristic (aten/src/ATen/native/ConvUtils): slow3d unless one of these holds
        n, c, t, h = x.shape[:4]
        return not (groups > 1 or (weight.shape[-1] > 3 and weight.shape[-2] > 3) or n * c * t * h > 20480)
    return backend == torch._C._ConvBackend.Slow3d


def _torch_backend(x, weight, stride, padding, dilation, groups):
    """The backend torch would run this conv on (``torch._C._ConvBackend``), or None if this torch cannot say."""
    select = getattr(torch._C, "_select_conv_backend", None)
    if select is None:
        return None
    return select(
        x, weight, None, *_int_lists(stride, padding, dilation), False, [0, 0, 0], int(groups), None
    )


def backward_on_slow3d(
    x: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[bool, bool]:
    """Which of (∂L/∂x, ∂L/∂w) :func:`convolution_backward` computes on slow3d instead of torch's oneDNN choice.

    Args:
        x: the conv input (N, C, T, H, W), already padded if the caller pads explicitly.
        weight: (C_out, C_in / groups, kT, kH, kW).
        stride, padding, dilation: 3-sequences of ints (numeric zero padding).
        groups: conv groups.

    Returns:
        (input gradient, weight gradient), each True to run it on slow3d. Both False unless this is a float32 5-D
        CPU conv with groups = 1 that torch would run on oneDNN, with input and weight together at least 2**18
        elements, :data:`BACKWARD_SLOW3D` on and plain eager autograd. Then a 1×1×1 kernel routes its weight
        gradient, and its input gradient when strided; any other kernel routes its weight gradient when its
        temporal extent d_T·(k_T − 1) + 1 exceeds T and the weights have at least 4× the input's elements
        (measured boundaries: module docstring).
    """
    if not (
        BACKWARD_SLOW3D
        and x.dim() == 5
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and groups == 1
        and x.numel() + weight.numel() >= _MIN_ROUTED_ELEMENTS
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.backends.flags_frozen()  # after disable_global_flags() the flag may not be set
        and _plain_eager()
    ):
        return False, False
    kernel = weight.shape[2:]
    if all(k == 1 for k in kernel):
        route = any(int(s) > 1 for s in stride), True
    else:
        overhang = int(dilation[0]) * (kernel[0] - 1) + 1 > x.shape[2]
        route = False, overhang and weight.numel() >= 4 * x.numel()
    if not any(route):
        return False, False
    # only where torch would use oneDNN (at batch 1 it often runs slow3d already)
    backend = _torch_backend(x, weight, stride, padding, dilation, groups)
    if backend is not None and backend != torch._C._ConvBackend.Mkldnn:
        return False, False
    return route


class KernelTrim(NamedTuple):
    """The part of a conv kernel that meets data (:func:`kernel_trim`)."""

    #: Index of that part in the weight: ``weight[index]`` is (C_out, C_in / groups, *trimmed kernel).
    index: tuple[slice, ...]
    #: The padding that gives the same output with the trimmed kernel.
    padding: list[int]

    def cut(self, weight: Tensor) -> Tensor:
        """``weight`` (or ŵ) trimmed: (C_out, C_in / groups, *trimmed kernel), contiguous for the conv kernels."""
        return weight[self.index].contiguous()


def kernel_trim(
    x: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> KernelTrim | None:
    """The taps of a CPU 3D conv kernel that only ever meet zero padding, cut off, or None if there are none.

    A 3×3×3 conv with padding 1 on a T = 1 input (r3d_18's last stage on 8-frame clips) uses only its middle
    temporal slice: the other two slices multiply padding at every output position. Likewise a 3×3 spatial
    kernel on a 1×1 map. The backward kernels still compute them: slow3d's weight gradient, for one, does up to
    3× (27× on 1×1×1 maps) the work it needs.
    The trimmed conv, ``conv(x, weight[index], padding=trim.padding)``, gives the same output (the dropped taps
    only ever multiply zeros), the same input gradient, and the weight gradient on ``index`` (exactly zero
    elsewhere).

    Only symmetric cuts (as many taps off each end, which keeps torch's symmetric padding valid) of a float 5-D
    CPU conv in plain eager mode (:func:`_plain_eager`) with :data:`TRIM_KERNEL` on.

    Args:
        x: the conv input (N, C_in, T, H, W).
        weight: (C_out, C_in / groups, kT, kH, kW).
        stride, padding, dilation: 3-sequences of ints (numeric zero padding).

    Returns:
        A :class:`KernelTrim`, or None when every tap meets data somewhere (or the conv is not one of the above).
    """
    if not (TRIM_KERNEL and x.dim() == 5 and x.device.type == "cpu" and x.is_floating_point()):
        return None
    index: list[slice] = [slice(None), slice(None)]
    pads: list[int] = []
    cut = False
    for n, k, s, p, d in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation):
        n, k, s, p, d = int(n), int(k), int(s), int(p), int(d)
        out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        valid = []
        for j in range(k):  # tap j meets x[t·s − p + j·d]: is that inside [0, n) for some output t?
            lo, hi = p - j * d, n - 1 + p - j * d  # t·s must lie in [lo, hi]
            t = max(0, -(-lo // s))
            if t <= out - 1 and t * s <= hi:
                valid.append(j)
        first = valid[0] if valid else 0
        if valid and first > 0 and valid[-1] == k - 1 - first and p - first * d >= 0:
            index.append(slice(first, k - first))
            pads.append(p - first * d)
            cut = True
        else:
            index.append(slice(None))
            pads.append(p)
    if not cut or not _plain_eager():
        return None
    return KernelTrim(tuple(index), pads)


def _int_lists(*seqs: Sequence[int]) -> list[list[int]]:
    """Plain int lists (torch's op bindings refuse numpy ints, which some builders leave in conv geometry)."""
    return [[int(v) for v in seq] for seq in seqs]


def _plain_eager() -> bool:
    """Eager autograd only: torch.compile has no fake-tensor kernel for ``aten.mkldnn_convolution``,
    functorch transforms / forward-mode AD need what the routing Function does not define, and Python dispatch
    modes (``FlopCounterMode``, as in Lightning's model summary) see ``aten.convolution``, not the routed op."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return not (
        torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0
        or _get_current_dispatch_mode() is not None
    )


def convolution(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """``aten.convolution``, on oneDNN for the batch-1 CPU 3D convs that torch would run on slow kernels.

    Meant for the forward of autograd Functions (which run it with grad mode off and supply their own backward,
    :func:`convolution_backward`); see the module docstring for when the oneDNN route is taken. Any conv rank
    works; only 5-D inputs are ever rerouted.

    Args:
        x: input (N, C_in, *spatial), e.g. (N, C_in, T, H, W).
        weight: (C_out, C_in / groups, *kernel).
        bias: (C_out,) or None.
        stride, padding, dilation: sequences of ints, one per spatial dim (numeric zero padding only).
        groups: conv groups.

    Returns:
        Output (N, C_out, *spatial_out), the same as ``F.conv{d}d`` up to float rounding.
    """
    if cpu_batch1_conv3d_slow(x, weight, stride, padding, dilation, groups):
        stride, padding, dilation = _int_lists(stride, padding, dilation)
        return torch.ops.aten.mkldnn_convolution(
            x.contiguous(), weight.contiguous(), bias, padding, stride, dilation, int(groups)
        )
    zeros = [0] * len(stride)
    return torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, False, zeros, groups)


def convolution_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``aten.convolution_backward`` → (∂L/∂x, ∂L/∂w, ∂L/∂b), on oneDNN for slow batch-1 CPU 3D convs.

    A batch-1 CPU 3D conv that torch would run on its slow kernels, with activations at least half the weights'
    size, runs on oneDNN as a batch of two: the clip and an all-zero one (which adds nothing to the weight or bias
    gradient; its input gradient is dropped). Where torch would use oneDNN, the gradients oneDNN is slow at
    (:func:`backward_on_slow3d`) are computed on slow3d, the others on oneDNN. Everything else is torch's own
    ``aten.convolution_backward``.

    Args:
        grad_out: ∂L/∂y, (N, C_out, *spatial_out).
        x: the forward's input (N, C_in, *spatial).
        weight: the forward's weight (C_out, C_in / groups, *kernel).
        bias_sizes: ``[C_out]`` when the conv has a bias, else None.
        stride, padding, dilation: as in the forward (sequences of ints, numeric zero padding).
        groups: conv groups.
        output_mask: which of (∂L/∂x, ∂L/∂w, ∂L/∂b) to compute.

    Returns:
        (∂L/∂x (N, C_in, *spatial), ∂L/∂w (C_out, C_in / groups, *kernel), ∂L/∂b (C_out,)), each None where
        ``output_mask`` is False.
    """
    zeros = [0] * len(stride)
    # oneDNN's batch-2 backward wins where the activations are not much smaller than the weights (early layers:
    # 1.5-5x faster than slow3d here); in weight-heavy layers slow3d's batch-1 backward is faster (up to 4x).
    slow = (
        (output_mask[0] or output_mask[1])  # a bias gradient alone needs no conv
        and 2 * x.numel() >= weight.numel()
        and cpu_batch1_conv3d_slow(x, weight, stride, padding, dilation, groups)
    )
    if slow:
        grad_out = torch.cat([grad_out, grad_out.new_zeros(grad_out.shape)])
        x = torch.cat([x, x.new_zeros(x.shape)])
    elif output_mask[0] or output_mask[1]:
        routed = backward_on_slow3d(x, weight, stride, padding, dilation, groups)
        routed = [routed[0] and output_mask[0], routed[1] and output_mask[1]]
        if any(routed):
            return _split_backward(
                grad_out, x, weight, bias_sizes, stride, padding, dilation, groups, output_mask, routed
            )
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_out, x, weight, bias_sizes, stride, padding, dilation, False, zeros, groups, list(output_mask)
    )
    if slow and grad_x is not None:
        grad_x = grad_x[:1]
    return grad_x, grad_w, grad_b


def _split_backward(grad_out, x, weight, bias_sizes, stride, padding, dilation, groups, output_mask, routed):
    """The gradients in ``routed`` (∂x, ∂w) on slow3d (oneDNN off for that call), the rest on torch's choice."""
    zeros = [0] * len(stride)
    rest = [output_mask[0] and not routed[0], output_mask[1] and not routed[1], bool(output_mask[2])]
    grads: list[Tensor | None] = [None, None, None]
    if any(rest):
        grads = list(
            torch.ops.aten.convolution_backward(
                grad_out, x, weight, bias_sizes, stride, padding, dilation, False, zeros, groups, rest
            )
        )
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # process-wide, for this one call; autograd runs it on this thread
    try:
        slow = torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, stride, padding, dilation, False, zeros, groups, [*routed, False]
        )
    finally:
        torch.backends.mkldnn.enabled = previous
    for i in (0, 1):
        if routed[i]:
            grads[i] = slow[i]
    return grads[0], grads[1], grads[2]


class _Conv(torch.autograd.Function):
    """A plain conv through :func:`convolution` / :func:`convolution_backward` (batch-1 CPU 3D convs only)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, bias)
        ctx.args = (stride, padding, dilation, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return convolution(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.args
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.bias_sizes is not None
        if torch.is_grad_enabled():  # create_graph=True (double backward): torch's own differentiable conv
            return (*_differentiable_grads(grad_out, x, weight, bias, ctx.args, (need_x, need_w, need_b)), None,
                    None, None, None)  # fmt: skip
        trim = kernel_trim(x, weight, stride, padding, dilation)  # backward only: the forwards were no faster
        if trim is not None:
            full, weight, padding = weight, trim.cut(weight), trim.padding
        grads = convolution_backward(
            grad_out, x, weight, ctx.bias_sizes, stride, padding, dilation, groups, [need_x, need_w, need_b]
        )
        if trim is not None and grads[1] is not None:
            grads = (grads[0], untrim_weight_grad(grads[1], full, trim), grads[2])
        return (*grads, None, None, None, None)


def untrim_weight_grad(grad: Tensor, weight: Tensor, trim: KernelTrim, base: Tensor | None = None) -> Tensor:
    """The weight gradient of the full kernel from the trimmed conv's: ``grad`` on ``trim.index``, 0 elsewhere
    (the dropped taps only ever met zeros), added to ``base`` (full shape, in place) when it is given."""
    out = weight.new_zeros(weight.shape, dtype=grad.dtype) if base is None else base
    out[trim.index] += grad
    return out


def _differentiable_grads(grad_out, x, weight, bias, args, needs) -> list[Tensor | None]:
    """Gradients of F.conv3d recomputed with a graph, for double backward through :class:`_Conv`."""
    stride, padding, dilation, groups = args
    inputs = [t for t, need in zip((x, weight, bias), needs) if need]
    y = torch.nn.functional.conv3d(x, weight, bias, stride, padding, dilation, groups)
    grads = iter(torch.autograd.grad(y, inputs, grad_out, create_graph=True))
    return [next(grads) if need else None for need in needs]


class SafeConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs in float32 where a CPU bf16 conv would get wrong weight gradients.

    Same constructor, parameters and state-dict keys as ``nn.Conv3d``; identical everywhere else (fp32, GPU,
    temporal length ≥ the kernel's extent). See the module docstring for the bug it avoids. Batch-1 float32 CPU
    convs that torch would run on its slow kernels are routed to oneDNN (:func:`convolution`), and the backward
    kernels oneDNN is slow at to slow3d (:func:`backward_on_slow3d`); same results up to float rounding.

    Shapes: input (N, C_in, T, H, W) -> output (N, C_out, T', H', W'), as ``nn.Conv3d``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: A002
        autocast = torch.is_autocast_enabled("cpu") and input.device.type == "cpu"
        # As for torch's own ops, autocast never lowers float64.
        lowered = autocast and input.dtype != torch.float64
        dtype = torch.get_autocast_dtype("cpu") if lowered else input.dtype
        if not cpu_bf16_conv3d_unsafe(input, self.kernel_size, self.dilation, dtype):
            return self._conv(input, weight, bias, autocast)
        with torch.autocast("cpu", enabled=False):
            out = self._conv(input.float(), weight.float(), None if bias is None else bias.float(), False)
        return out.to(dtype)  # what the caller would have got: bf16 under autocast or for a bf16 model

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None, autocast: bool) -> Tensor:
        if (
            not autocast  # under autocast torch's conv runs in bf16, which takes oneDNN anyway
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and (
                cpu_batch1_conv3d_slow(x, weight, self.stride, self.padding, self.dilation, self.groups)
                or (  # what only the backward changes
                    torch.is_grad_enabled()
                    and (
                        kernel_trim(x, weight, self.stride, self.padding, self.dilation) is not None
                        or any(
                            backward_on_slow3d(
                                x, weight, self.stride, self.padding, self.dilation, self.groups
                            )
                        )
                    )
                )
            )
        ):
            return _Conv.apply(
                x, weight, bias, list(self.stride), list(self.padding), list(self.dilation), self.groups
            )
        return super()._conv_forward(x, weight, bias)
