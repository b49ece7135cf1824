"""Run real training steps in a fresh process and report its peak RSS increase (for tests/test_plan.py).

Usage: python plan_rss_step.py '{"model": "r3d_18", "width": 8, "norm": "gn", "ws": true, "num_classes": 10,
"optimizer": "sgd", "frames": 16, "batch": 4, "crop": 112}'

What the baseline holds, so that "peak - baseline" is what the planner predicts minus the parameters:
the interpreter, torch and its libraries, the model's parameters and buffers, and the lazily built state of
the kernels (oneDNN primitives, thread pools) for these exact shapes: one warm-up step at the real size runs
first, then its gradients, optimiser state and clip are freed. The measured phase then allocates what the
planner counts: input clip, gradients, optimiser state and the activations of two steps (the second one with
gradients and optimiser state alive, as in Lightning's loop).
"""

import ctypes
import json
import sys

import torch
import torch.nn.functional as F

from video_gn.models import build
from video_gn.plan import make_optimizer


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build(
        cfg["model"], num_classes=cfg["num_classes"], norm=cfg["norm"], ws=cfg["ws"], width=cfg["width"]
    )
    net.train()
    opt = make_optimizer(net, cfg["optimizer"])
    b, t, s, k = cfg["batch"], cfg["frames"], cfg["crop"], cfg["num_classes"]

    def step(video: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(net(video), labels)
        opt.zero_grad(set_to_none=False)  # Lightning's order: gradients stay allocated through the forward
        loss.backward()
        opt.step()

    step(torch.randn(b, 3, t, s, s), torch.randint(0, k, (b,)))  # warm-up at the real shapes
    opt.zero_grad(set_to_none=True)
    opt.state.clear()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = status_bytes("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
    except OSError as err:
        print(json.dumps({"skip": f"cannot reset VmHWM: {err}"}))
        return
    video, labels = torch.randn(b, 3, t, s, s), torch.randint(0, k, (b,))
    for _ in range(2):
        step(video, labels)
    peak = status_bytes("VmHWM")
    print(json.dumps({"baseline": base, "peak": peak, "increase": peak - base}))


if __name__ == "__main__":
    main()
