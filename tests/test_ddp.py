"""GroupNorm's batch independence, end to end through Lightning DDP (2 CPU processes, gloo); the non-finite
loss stop on every rank; validation metrics under DDP equal to one process's, with uneven shards.

Run as a script (``python tests/test_ddp.py --nonfinite-worker ...``) this file is the worker of
:func:`test_non_finite_loss_on_one_rank_stops_every_rank`.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_one_step.py"
VALIDATE_SCRIPT = SCRIPT.parent / "ddp_validate.py"


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


def test_ddp_validate_metrics_equal_one_process_with_uneven_shards(tmp_path):
    """`trainer.validate` of one fixed model on 7 videos (2 views each): 2 ranks (4 + 3 videos) log exactly
    the clip- and video-level accuracies of 1 process, and every video is counted once, with all its views."""
    from video_gn.data.synthetic import SyntheticSpec, generate

    spec = SyntheticSpec(
        num_classes=7, train_per_class=0, val_per_class=1, size=(32, 40), fps=8, num_frames=16, seed=5
    )
    root = generate(tmp_path / "data", spec, workers=1, progress=False)
    # --seed 8: initial weights with accuracies strictly between 0 and 1, whose two views of a video do not
    # always agree (both checked below).
    procs = {}
    for world in (1, 2):  # both at once: most of each run is start-up
        args = ["--world", world, "--root", root, "--seed", 8, "--out", tmp_path / f"world{world}"]
        cmd = [sys.executable, str(VALIDATE_SCRIPT), *map(str, args)]
        with open(tmp_path / f"world{world}.log", "w") as log:
            procs[world] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for world, proc in procs.items():
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                os.killpg(p.pid, signal.SIGKILL)  # each launcher and the rank it started
            raise AssertionError(f"validate with {world} process(es) hung") from None
        assert proc.returncode == 0, (tmp_path / f"world{world}.log").read_text()[-3000:]
    runs = {
        world: [json.loads((tmp_path / f"world{world}" / f"rank{r}.json").read_text()) for r in range(world)]
        for world in (1, 2)
    }
    (single,) = runs[1]
    names = ["val/clip_top1", "val/clip_top5", "val/video_top1", "val/video_top5"]
    ref = single["metrics"]
    # Non-trivial accuracies: a rank's own share of the clips (8 or 6 of 14) or videos (4 or 3 of 7) only
    # reaches the same fraction as all of them at 0, 1/2 or 1, so rank-local (unsynchronised) metrics
    # cannot pass the equality below by chance.
    for name in names:
        assert 0.0 < ref[name] < 1.0 and abs(ref[name] - 0.5) > 1e-3, (name, ref[name])
    assert ref["val/clip_top1"] != ref["val/video_top1"]  # averaging the views changed the answer
    for rank, rec in enumerate(runs[2]):
        for name in names:
            got = rec["metrics"][name]
            assert abs(got - ref[name]) <= 1e-6, (rank, name, got, ref[name])
        assert abs(rec["metrics"]["val/loss"] - ref["val/loss"]) <= 1e-5, (rank, rec["metrics"], ref)

    # Every video once across the ranks, with both its views on one rank; the shards are uneven.
    num_videos = single["num_videos"]
    assert num_videos == 7
    assert single["views"] == {str(v): 2 for v in range(num_videos)}
    shards = [rec["views"] for rec in runs[2]]
    assert sorted(len(s) for s in shards) == [3, 4]
    assert not set(shards[0]) & set(shards[1])
    assert {**shards[0], **shards[1]} == single["views"]
    # ... and each is fed once to the video-level metric.
    assert single["video_metric_videos"] == num_videos
    assert sum(rec["video_metric_videos"] for rec in runs[2]) == num_videos


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
        # Both ranks stopped at the same step (the decision is collective): close the gloo group together.
        # Left to Lightning's atexit hook, each rank tears its group down on its own; once in about 30 runs here
        # rank 0 then aborted at exit ("terminate called without an active exception", status -6) after both
        # ranks had stopped correctly.
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
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
