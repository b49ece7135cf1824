"""A work-around for wrong bf16 Conv3d weight gradients on CPU (oneDNN), and the plain conv that applies it.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SafeConv3d", "cpu_bf16_conv3d_unsafe"]


def cpu_bf16_conv3d_unsafe(
    x: Tensor, kernel_size: Sequence[int], dilation: Sequence[int], dtype: torch.dtype
) -> bool:
    """True when a conv of ``x`` computed in ``dtype`` hits the oneDNN bf16 temporal-kernel bug (module docstring).

    Args:
        x: the conv input (N, C, T, H, W), already padded if the caller pads explicitly.
        kernel_size: (k_T, k_H, k_W).
        dilation: (d_T, d_H, d_W).
        dtype: the dtype the conv would run in (autocast's, or the input's).
    """
    return (
        dtype == torch.bfloat16
        and x.device.type == "cpu"
        and x.dim() == 5
        and dilation[0] * (kernel_size[0] - 1) + 1 > x.shape[2] > 1
        and torch.backends.mkldnn.enabled
    )


class SafeConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs in float32 where a CPU bf16 conv would get wrong weight gradients.

    Same constructor, parameters and state-dict keys as ``nn.Conv3d``; identical everywhere else (fp32, GPU,
    temporal length ≥ the kernel's extent). See the module docstring for the bug it avoids.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: A002
        autocast = torch.is_autocast_enabled("cpu") and input.device.type == "cpu"
        dtype = torch.get_autocast_dtype("cpu") if autocast else input.dtype
        if not cpu_bf16_conv3d_unsafe(input, self.kernel_size, self.dilation, dtype):
            return super()._conv_forward(input, weight, bias)
        with torch.autocast("cpu", enabled=False):
            out = super()._conv_forward(input.float(), weight.float(), None if bias is None else bias.float())
        return out.to(dtype)  # what the caller would have got: bf16 under autocast or for a bf16 model
