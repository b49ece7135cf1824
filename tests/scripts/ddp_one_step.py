"""One SGD step of VideoClassifier on two fixed clips, with 1 process x batch 2 or 2 processes x batch 1.

Launched by tests/test_ddp.py as a subprocess; Lightning's DDP launcher re-runs this script for rank 1.
Rank 0 writes the model's state dict after the step to --out.
"""

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class TwoClips(Dataset):
    """Two fixed clips with different statistics (so batch statistics matter), labels 0 and 1."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.randn(2, 3, 4, 32, 32, generator=g)
        self.video[1] = self.video[1] * 3.0 + 1.5

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "label": torch.tensor(i), "video_index": torch.tensor(i)}


class Data(L.LightningDataModule):
    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        ds = TwoClips()
        world, rank = self.trainer.world_size, self.trainer.global_rank
        # Rank r takes clip r; a single process takes both, in the same order.
        indices = list(range(rank, len(ds), world))
        return DataLoader(torch.utils.data.Subset(ds, indices), batch_size=self.batch_size, shuffle=False)


def cpu_trainer(world: int, max_steps: int, **kwargs) -> L.Trainer:
    """A quiet CPU Trainer (DDP over ``world`` gloo processes when > 1) that only trains, unless ``kwargs``
    (which add to or override its settings) say otherwise, e.g. ``limit_val_batches=1.0`` to validate."""
    settings = dict(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    return L.Trainer(**{**settings, **kwargs})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--norm", default="gn")
    p.add_argument("--ws", type=int, default=1)
    p.add_argument("--sync", type=int, default=0, help="synchronise BatchNorm across processes")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    from video_gn.module import VideoClassifier
    from video_gn.nn.syncbn import SyncBatchNormPlugin

    L.seed_everything(0)
    model = VideoClassifier(
        name="r3d_18",
        num_classes=2,
        norm=a.norm,
        ws=bool(a.ws),
        width=8,
        dropout=0.0,
        zero_init_residual=False,
        lr=6.4,
        momentum=0.0,
        weight_decay=0.0,
        warmup_fraction=0.0,
    )
    trainer = cpu_trainer(
        a.world, 1, sync_batchnorm=bool(a.sync), plugins=[SyncBatchNormPlugin()] if a.sync else None
    )
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.fit(model, datamodule=Data(batch_size=2 // a.world))
    if trainer.global_rank == 0:
        after = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"before": before, "after": after}, a.out)


if __name__ == "__main__":
    main()
