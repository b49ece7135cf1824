"""GroupNorm's batch independence, end to end through Lightning DDP (2 CPU processes, gloo)."""

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_one_step.py"


def _one_step(tmp_path: Path, world: int, norm: str, ws: bool, sync: bool = False) -> dict[str, torch.Tensor]:
    out = tmp_path / f"{norm}_{int(ws)}_{world}_{int(sync)}.pt"
    args = {"--world": world, "--norm": norm, "--ws": int(ws), "--sync": int(sync), "--out": out}
    cmd = [sys.executable, str(SCRIPT), *(str(x) for kv in args.items() for x in kv)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _max_weight_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_ddp_two_processes_batch1_equals_one_process_batch2_for_gn_ws(tmp_path):
    single = _one_step(tmp_path, 1, "gn", True)
    ddp = _one_step(tmp_path, 2, "gn", True)
    # The step really moved the weights, and both runs moved them identically.
    assert _max_weight_diff(single["before"], single["after"]) > 1e-3
    assert _max_weight_diff(single["before"], ddp["before"]) == 0.0
    assert _max_weight_diff(single["after"], ddp["after"]) <= 1e-5


def test_ddp_batch1_differs_for_bn_unless_syncbn(tmp_path):
    single = _one_step(tmp_path, 1, "bn", False)
    ddp = _one_step(tmp_path, 2, "bn", False)
    synced = _one_step(tmp_path, 2, "bn", False, sync=True)
    # BN normalises each process's single clip with its own statistics: the update differs ...
    assert _max_weight_diff(single["after"], ddp["after"]) > 1e-3
    # ... unless the statistics are synchronised across the processes (SyncBN, CPU path).
    assert _max_weight_diff(single["after"], synced["after"]) <= 1e-5
