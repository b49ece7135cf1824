"""Why does BN not learn the synthetic motion task when GN does? Swap single norm layers and see.

The issue-5 sweep found BN at chance even at batch 8, where the GN paper has BN as good as GN. This script
trains the sweep's model (r3d_18, width 16, AdamW 1e-3, batch 8, T = 8 × rate 2, 32×32 crops) in a plain loop on
clips decoded once from the sweep's dataset, for a few hundred steps, with norm variants that isolate where the
difference comes from:

* ``bn``, ``gn``, ``gn+ws``, ``in``: one norm kind everywhere;
* ``bn, per-clip input``: BN with every input clip standardized to zero mean, unit variance (a per-clip
  brightness/contrast normalisation of the pixels only);
* ``bn, gn stem``: BN everywhere except the stem's norm, which is GroupNorm (with the stem's 16 channels and
  the default policy that is one channel per group: a per-clip, per-channel normalisation);
* ``gn, bn stem``: the converse.

It prints the mean training loss and top-1 over each 100 steps (train mode, random clips of the fixed set).
Training accuracy is what it measures (how fast each variant fits), not generalisation.

    python benchmarks/norm_diagnosis.py                 # ~5 minutes on one CPU thread
    python benchmarks/norm_diagnosis.py --steps 200 --variants "bn;gn, bn stem"
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from video_gn.module import VideoClassifier
from video_gn.nn import make_norm

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("bn", "gn", "gn+ws", "in", "bn, per-clip input", "bn, gn stem", "gn, bn stem")


def sweep_setup(args: argparse.Namespace):
    """The model hyper-parameters and data module of the sweep's runs: the grid's base configs through the CLI."""
    from video_gn.cli import run_lightning_cli
    from video_gn.sweep import load_spec

    base = load_spec(REPO / "configs" / "sweep" / "synthetic_batch.yaml").base
    configs = [x for path in base for x in ("-c", str(REPO / path))]
    cli = run_lightning_cli(["fit", *configs, f"--data.root={args.root}", "--data.num_workers=0"], run=False)
    hparams = {
        k: v for k, v in cli.model.hparams.items() if not k.startswith("_")
    }  # jsonargparse adds _instantiator
    return hparams, cli.datamodule


def decode_clips(args: argparse.Namespace, dm) -> tuple[torch.Tensor, torch.Tensor]:
    """Two epochs of augmented training clips of the sweep's dataset (generated on first use), cached."""
    cache = args.cache
    if cache.is_file():
        return torch.load(cache)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(args.seed)  # the augmentations draw from torch's RNG: same cache every time
    xs, ys = [], []
    for _ in range(2):
        for batch in dm.train_dataloader():
            xs.append(batch["video"])
            ys.append(batch["label"])
    clips = (torch.cat(xs), torch.cat(ys))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clips, cache)
    return clips


def make(variant: str, hparams: dict) -> VideoClassifier:
    norm = "in" if variant == "in" else ("gn" if variant.startswith("gn") else "bn")
    model = VideoClassifier(**{**hparams, "norm": norm, "ws": variant == "gn+ws"})
    stem = model.model.blocks[0]
    if variant == "bn, gn stem":
        stem.norm = make_norm("gn", stem.norm.num_features, num_groups="min32")  # as build() does
    elif variant == "gn, bn stem":
        stem.norm = make_norm("bn", stem.norm.num_channels)
    return model


def train(
    variant: str, hparams: dict, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> list[tuple[float, float]]:
    torch.manual_seed(args.seed)
    model = make(variant, hparams).train()
    if variant == "bn, per-clip input":
        x = (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / x.std(dim=(1, 2, 3, 4), keepdim=True)
    opt = torch.optim.AdamW(model._param_groups(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    out, losses, hits = [], [], []
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=gen)
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        hits.append((logits.argmax(1) == y[idx]).float().mean().item())
        if (step + 1) % args.every == 0:
            out.append((sum(losses[-args.every :]) / args.every, sum(hits[-args.every :]) / args.every))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--root", default="data/synthetic_motion_sweep", help="the sweep's dataset (made if missing)"
    )
    p.add_argument("--cache", type=Path, default=Path("runs/norm_diagnosis/clips.pt"))
    p.add_argument(
        "--variants", default=";".join(VARIANTS), help="';'-separated subset of " + "; ".join(VARIANTS)
    )
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(";") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"Unknown variant {v!r}; choose from {VARIANTS} (';'-separated).")
    hparams, dm = sweep_setup(args)
    x, y = decode_clips(args, dm)
    print(
        f"{len(x)} cached clips {tuple(x.shape[1:])}, {int(y.max()) + 1} classes; {hparams['name']} width {hparams['width']}, "
        f"dropout {hparams['dropout']}, AdamW "
        f"{args.lr:g}, batch {args.batch}, seed {args.seed}; {platform.machine()}, torch {torch.__version__}\n"
    )
    heads = [f"steps {i * args.every + 1}-{(i + 1) * args.every}" for i in range(args.steps // args.every)]
    print("| variant | " + " | ".join(heads) + " | s |")
    print("| --- |" + " --: |" * (len(heads) + 1))
    for v in variants:
        start = time.time()
        curve = train(v, hparams, x, y, args)
        cells = [f"{loss:.2f} / {acc:.2f}" for loss, acc in curve]
        print(f"| {v} | " + " | ".join(cells) + f" | {time.time() - start:.0f} |", flush=True)
    print(
        "\ncells: mean training loss / top-1 over the steps of the column (chance: loss ln(classes), top-1 1/classes)"
    )


if __name__ == "__main__":
    main()
