"""How far is an inflated 3D network from its 2D source on constant clips? Prints a markdown table.

Random timm BiT ResNetV2-50x1 (GN + StdConv2d eps 1e-8, pre-activation; filters given small, spread-out scales
like trained WS filters, norms randomised) inflated into ``bit_c2d_r50x1`` / ``bit_i3d_r50x1``; error = max |Δ
logit| / max |logit| against the 2D network on the same image, for several inflation rules, clip lengths and WS
eps values. Needs timm (``pip install "video_gn[timm]"``).

    python benchmarks/inflation_identities.py
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

from video_gn.models import build, inflate


def _bit_2d() -> nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                std = torch.exp(
                    torch.rand(m.weight.shape[0], 1, 1, 1, generator=g) * math.log(100) + math.log(1e-4)
                )
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.7 + 0.3)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
    return model.eval()


def _replicate_time_padding(model: nn.Module) -> None:
    for conv in model.modules():
        if isinstance(conv, nn.Conv3d) and conv.padding[0] > 0:
            p = conv.padding[0]
            conv.padding = (0, *conv.padding[1:])
            conv.register_forward_pre_hook(lambda _, a, p=p: (F.pad(a[0], (0, 0, 0, 0, p, p), "replicate"),))


@torch.no_grad()
def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no options
    torch.set_num_threads(1)
    m2 = _bit_2d()
    x = torch.randn(2, 3, 64, 64)
    y2 = m2(x)
    rows = []
    cases = [
        ("bit_c2d_r50x1", "mean", "WS-aware", 1e-8, "zeros", 4),
        ("bit_i3d_r50x1", "center", "WS-aware", 1e-8, "zeros", 8),
        ("bit_i3d_r50x1", "center", "WS-aware", 1e-8, "zeros", 32),
        ("bit_i3d_r50x1", "mean", "WS-aware", 1e-8, "zeros", 8),
        ("bit_i3d_r50x1", "mean", "WS-aware", 1e-8, "zeros", 32),
        ("bit_i3d_r50x1", "mean", "WS-aware", 1e-8, "replicate", 8),
        ("bit_i3d_r50x1", "center", "naive (inflate w, then standardize)", 1e-8, "zeros", 8),
        ("bit_i3d_r50x1", "mean", "naive (inflate w, then standardize)", 1e-8, "replicate", 8),
        ("bit_i3d_r50x1", "center", "WS-aware, wrong 3D eps", 1e-6, "zeros", 8),
        ("bit_i3d_r50x1", "center", "WS-aware, wrong 3D eps", 1e-10, "zeros", 8),
        ("bit_i3d_r50x1", "center", "folded into plain convs (ws=False)", None, "zeros", 8),
    ]
    for name, method, rule, eps, padding, t in cases:
        m3 = build(name, num_classes=10, ws=eps is not None, ws_eps=eps or 1e-8).eval()
        kw = {"source_ws_eps": None} if rule.startswith("naive") else {"check_ws_eps": False}
        inflate(m3, m2.state_dict(), method=method, **kw)
        if padding == "replicate":
            _replicate_time_padding(m3)
        y3 = m3(x[:, :, None].expand(-1, -1, t, -1, -1).contiguous())
        err = ((y3 - y2).abs().max() / y2.abs().max()).item()
        rows.append(f"| {name} | {method} | {rule} | {eps if eps else '-'} | {padding} | {t} | {err:.1e} |")
    print("| 3D model | method | WS rule | 3D WS eps | temporal padding | T | rel. error vs 2D |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
