"""GroupNorm's batch independence, end to end through Lightning DDP (2 CPU processes, gloo); the non-finite
loss stop on every rank.

Run as a script (``python tests/test_ddp.py --nonfinite-worker ...``) this file is the worker of
:func:`test_non_finite_loss_on_one_rank_stops_every_rank`.
"""

import argparse
import os
import signal
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


def _nonfinite_worker(argv: list[str]) -> int:
    """2-process DDP fit whose loss is NaN on ``--nan_rank`` only; prints each rank's error, exits 3 on it."""
    p = argparse.ArgumentParser()
    p.add_argument("--nan_rank", type=int, required=True)
    a = p.parse_args(argv)

    import lightning as L

    sys.path.insert(0, str(SCRIPT.parent))
    from ddp_one_step import Data, cpu_trainer  # Data: rank r gets clip r, batch 1

    from video_gn.module import VideoClassifier

    class PoisonOneRank(L.Callback):
        """Stands in for an fp16 overflow that only one rank's batch hits."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_rank == a.nan_rank and trainer.global_step == 1:
                batch["video"].fill_(float("nan"))

    L.seed_everything(0)
    model = VideoClassifier(name="r3d_18", num_classes=2, norm="gn", ws=True, width=8, lr=0.1)
    trainer = cpu_trainer(2, 3, callbacks=[PoisonOneRank()])
    try:
        trainer.fit(model, datamodule=Data(batch_size=1))
    except FloatingPointError as err:
        # One write of the whole line (< PIPE_BUF, so atomic): both ranks share the pipe, and print() may write
        # the text and its newline separately, interleaving the two ranks' lines.
        sys.stderr.write(f"rank {trainer.global_rank} stopped: {err}\n")
        sys.stderr.flush()
        # Only rank 0 (the launcher) reports the stop in its exit code: a child exiting non-zero makes
        # Lightning's process observer SIGKILL rank 0 within 5 s, which on a loaded machine can come before
        # rank 0 has printed its own line.
        return 3 if trainer.global_rank == 0 else 0
    return 0


def test_non_finite_loss_on_one_rank_stops_every_rank():
    # Before the decision was collective, rank 1 raised alone and rank 0 waited in the gradient all-reduce.
    cmd = [sys.executable, __file__, "--nonfinite-worker", "--nan_rank", "1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the rank it started
        out, _ = proc.communicate()
        raise AssertionError(f"DDP run hung after a NaN on one rank:\n{out[-3000:]}") from None
    assert proc.returncode == 3, out[-3000:]
    for rank in (0, 1):
        line = next((s for s in out.splitlines() if s.startswith(f"rank {rank} stopped:")), None)
        assert line is not None, out[-3000:]
        assert "Non-finite training loss on rank(s) [1] of 2 at global step 1" in line, line


if __name__ == "__main__" and sys.argv[1:2] == ["--nonfinite-worker"]:
    sys.exit(_nonfinite_worker(sys.argv[2:]))
