"""``trainer.validate`` of one fixed VideoClassifier on a KineticsDataModule root, with 1 or 2 processes.

Launched by tests/test_ddp.py as a subprocess; Lightning's DDP launcher re-runs this script for rank 1.
Every rank writes ``--out``/rank<r>.json: the metrics ``trainer.validate`` returned on that rank, which
views of which videos that rank's batches held, and how many videos that rank fed to the module's
video-level metric.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import lightning as L
from ddp_one_step import cpu_trainer  # this script's folder is on sys.path when run as a script

#: The data module's eval settings: small clips, 2 views per video, one video's views per batch.
DATA = dict(
    num_frames=4,
    sampling_rate=2,
    batch_size=2,
    num_workers=0,
    crop_size=32,
    test_short_side=32,
    num_clips=2,
    num_crops=1,
    hflip=False,
)


class SeenViews(L.Callback):
    """Counts the views of each video in this rank's validation batches."""

    def __init__(self) -> None:
        self.views: Counter = Counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.views.update(batch["video_index"].tolist())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of the model's initial weights")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    from video_gn.data import KineticsDataModule
    from video_gn.module import VideoClassifier

    dm = KineticsDataModule(a.root, **DATA)
    L.seed_everything(a.seed)  # the same weights in every process and in every run
    model = VideoClassifier(
        name="r3d_18",
        num_classes=dm.num_classes,
        class_names=dm.classes,
        norm="gn",
        ws=True,
        width=8,
        dropout=0.0,
        zero_init_residual=False,
    )
    # Observe (without changing) how many videos this rank adds to the video-level accuracy.
    fed = {"videos": 0}
    update = model.val_video_top1.update

    def counting_update(preds, target):
        fed["videos"] += int(target.numel())
        return update(preds, target)

    model.val_video_top1.update = counting_update

    seen = SeenViews()
    trainer = cpu_trainer(a.world, -1, limit_val_batches=1.0, callbacks=[seen])
    (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
    record = {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "views": {str(k): n for k, n in sorted(seen.views.items())},
        "video_metric_videos": fed["videos"],
        "num_videos": dm.datasets["val"].num_videos,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
