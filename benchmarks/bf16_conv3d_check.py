"""Does this torch compute bf16 Conv3d weight gradients right on this CPU? And does video_gn's guard fix them?

For temporal lengths T and temporal kernel sizes k_T, runs a 3D conv (16 → 16 channels, k_T×3×3, "same" padding,
batch 4, 4×4 pixels) forward and backward under CPU bf16 autocast, and prints the relative max error of the weight
gradient against the same conv in float64, for torch's ``nn.Conv3d`` and for ``video_gn.nn.SafeConv3d``.
Errors around 1e-2 are bf16 rounding; errors of order 1 (or nan/inf) are the oneDNN bug described in
``video_gn/nn/conv.py``. When torch's column is clean everywhere, the guard is no longer needed.

    python benchmarks/bf16_conv3d_check.py
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from torch import nn

from video_gn.nn import SafeConv3d


def weight_grad_error(conv: nn.Conv3d, x: torch.Tensor) -> float:
    conv.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.backward(g.to(y.dtype))
    w = conv.weight.detach().double().requires_grad_()
    F.conv3d(x.double(), w, None, conv.stride, conv.padding).backward(g.to(y.dtype).double())
    err = (conv.weight.grad.double() - w.grad).abs().max() / w.grad.abs().max()
    return float(err)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no options
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {platform.machine()}, mkldnn enabled: {torch.backends.mkldnn.enabled}\n"
    )
    print("| T | k_T | torch nn.Conv3d | video_gn SafeConv3d |")
    print("| --: | --: | --: | --: |")
    wrong = 0
    for t in (1, 2, 3, 4, 6, 8):
        for k in (1, 3, 5):
            x = torch.randn(4, 16, t, 4, 4)
            plain = nn.Conv3d(16, 16, (k, 3, 3), padding=(k // 2, 1, 1), bias=False)
            safe = SafeConv3d(16, 16, (k, 3, 3), padding=(k // 2, 1, 1), bias=False)
            safe.load_state_dict(plain.state_dict())
            e_plain, e_safe = weight_grad_error(plain, x), weight_grad_error(safe, x)
            flag = "  **wrong**" if not e_plain < 0.05 else ""
            wrong += bool(flag)
            print(f"| {t} | {k} | {e_plain:.2e}{flag} | {e_safe:.2e} |")
    print(
        f"\nverdict: torch's bf16 Conv3d weight gradient is wrong in {wrong} of 18 cases on this CPU"
        + (
            "; SafeConv3d (used by every video_gn model) computes those in fp32."
            if wrong
            else ": the guard is not needed here."
        )
    )


if __name__ == "__main__":
    main()
