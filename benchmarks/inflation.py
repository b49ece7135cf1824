"""Does an inflated 2D checkpoint help? Fine-tune a GN + WS I3D on the synthetic motion dataset from scratch and
from a 2D network trained on *another* synthetic task (static shapes in single images), same budget.

Steps (all CPU, one thread, ~10 minutes at the default sizes):

1. ``pretrain``: render a static-shape task with numpy (4 shapes: disc, square, triangle, cross; random
   contrasted colours, sizes, positions, small rotations and textured backgrounds) and train a 2D pre-activation GN + WS ResNet-50-layout
   network of width 8 (GroupNorm with 4 groups) on single images (``--size``, default 64x64; the documented
   checkpoint for ``configs/quickstart_inflated.yaml`` uses ``--size 32``, the video crop). The 2D network is ``bit_c2d_r50x1`` fed clips of one frame (every kernel is
   1 in time, so it computes exactly a 2D ResNetV2); it is saved as a 2D state dict with timm's BiT ResNetV2 key
   names and 2D kernels, i.e. the same kind of file as timm's ``resnetv2_50x1_bit`` (``--ckpt``).
2. ``finetune``: a fast in-process variant of the comparison (the documented result runs the quick-start
   recipe through the CLI instead: ``benchmarks/inflation_finetune.sh``). Decode the synthetic motion clips once
   (8 frames, sampling rate 4, ``--crop`` 56x56 by default, 2 clips per training video, 1 centre clip per validation video) and train ``bit_i3d_r50x1`` (width 8, WS eps 1e-8) from scratch and
   from the checkpoint inflated by :func:`video_gn.models.load_pretrained` ("mean"), same seed, steps, schedule.
   Prints the validation clip top-1 after every epoch as a markdown table.

    python benchmarks/inflation.py --out runs/inflation            # both steps
    python benchmarks/inflation.py --out runs/inflation --skip-pretrain   # reuse runs/inflation/bit2d_shapes.pth
    python benchmarks/inflation.py --out runs/inflation --pretrain-only   # the checkpoint of quickstart_inflated.yaml
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import video_gn.models.bit  # noqa: F401  (registers bit_* models)
from video_gn.data.transforms import KINETICS_MEAN, KINETICS_STD
from video_gn.models import build
from video_gn.models.bit import PreActStage
from video_gn.models.pretrained import load_pretrained
from video_gn.nn import is_norm

SHAPES = ("disc", "square", "triangle", "cross")


# ------------------------------------------------------------------------------------- the 2D shape task


def render_shapes(n: int, *, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n`` images of one random shape each on a textured background.

    Returns:
        (images (n, 3, size, size) float normalised like the video data, labels (n,) long).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size, 3), np.float32)
    labels = rng.integers(0, len(SHAPES), n)
    for i, label in enumerate(labels):
        bg = rng.uniform(0.1, 0.9, 3)
        freq, ang, amp = rng.uniform(1, 6) / size, rng.uniform(0, math.pi), rng.uniform(0, 0.25)
        wave = amp * np.sin(2 * math.pi * freq * (xx * math.cos(ang) + yy * math.sin(ang)))
        img = np.clip(bg[None, None] + wave[..., None], 0, 1)
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        r = rng.uniform(0.25, 0.4) * size
        theta = rng.uniform(-0.3, 0.3)  # nearly upright: learnable within a CPU-minute budget
        u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)  # rotated coordinates
        v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
        d = np.hypot(u, v)
        shape = SHAPES[label]
        if shape == "disc":
            mask = d < r
        elif shape == "square":
            mask = (np.abs(u) < r * 0.8) & (np.abs(v) < r * 0.8)
        elif shape == "triangle":
            mask = (v < r * 0.6) & (v > -r + 1.7 * np.abs(u))
        else:  # cross
            mask = ((np.abs(u) < r * 0.25) | (np.abs(v) < r * 0.25)) & (np.maximum(np.abs(u), np.abs(v)) < r)
        colour = np.where(bg > 0.5, rng.uniform(0.0, 0.3, 3), rng.uniform(0.7, 1.0, 3))  # contrasted
        img[mask] = colour
        img = img * rng.uniform(0.7, 1.3) + rng.normal(0, 0.03, img.shape)
        images[i] = np.clip(img, 0, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    mean, std = torch.tensor(KINETICS_MEAN)[:, None, None], torch.tensor(KINETICS_STD)[:, None, None]
    return (x - mean) / std, torch.from_numpy(labels).long()


def to_bit_2d_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Export a ``bit_c2d_*`` model (all kernels 1 in time) as a 2D timm ResNetV2 (BiT) state dict."""
    out: dict[str, torch.Tensor] = {}
    stages = [i for i, b in enumerate(model.blocks) if isinstance(b, PreActStage)]
    last = len(model.blocks) - 1
    for key, value in model.state_dict().items():
        parts = key.split(".")
        index, rest = int(parts[1]), ".".join(parts[2:])
        if value.ndim == 5:
            if value.shape[2] != 1:
                raise ValueError(f"{key} has a temporal kernel {tuple(value.shape)}: not a 2D network")
            value = value[:, :, 0]
        if index == 0:
            out[f"stem.{rest}"] = value
        elif index in stages:
            stage_rest = rest.replace("res_blocks.", "blocks.", 1).replace(
                "downsample.weight", "downsample.conv.weight"
            )
            out[f"stages.{stages.index(index)}.{stage_rest}"] = value
        elif index == last - 1:
            out[rest] = value  # norm.weight / norm.bias
        elif index == last:
            out[rest.replace("proj.", "head.fc.")] = value[..., None, None] if value.ndim == 2 else value
    return out


def _optimizer(model: torch.nn.Module, lr: float, steps: int, wd: float = 1e-4):
    """AdamW (no decay on norm parameters and biases), linear warm-up over 5 % of the steps, then cosine."""
    norm_params = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    decay = [p for p in model.parameters() if id(p) not in norm_params and p.ndim > 1]
    other = [p for p in model.parameters() if id(p) in norm_params or p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}], lr=lr
    )
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))),
    )
    return opt, sched


def _train_epoch(
    model, opt, sched, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch: int
) -> float:
    """One pass over ``order`` in full batches of ``batch`` (the remainder dropped); returns the last loss."""
    model.train()
    for b in range(len(order) // batch):
        idx = order[b * batch : (b + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return loss.item()


def pretrain(args: argparse.Namespace) -> None:
    """Train the 2D network on single images of the shape task and save it in timm BiT format."""
    torch.manual_seed(args.seed)
    x_train, y_train = render_shapes(args.images, size=args.size, seed=args.seed)
    x_val, y_val = render_shapes(600, size=args.size, seed=args.seed + 1)
    model = build(
        "bit_c2d_r50x1",
        num_classes=len(SHAPES),
        width=args.width,
        ws_eps=1e-8,
        dropout=0.0,
        norm_kwargs={"num_groups": args.groups},
    )
    steps = args.pretrain_epochs * (len(x_train) // args.pretrain_batch)
    opt, sched = _optimizer(model, args.pretrain_lr, steps)
    start = time.time()
    frames = x_train[:, :, None]  # (N, 3, 1, H, W): one-frame clips
    for epoch in range(args.pretrain_epochs):
        order = torch.randperm(len(x_train))
        loss = _train_epoch(model, opt, sched, frames, y_train, order, args.pretrain_batch)
        model.eval()
        with torch.no_grad():
            acc = (model(x_val[:, :, None]).argmax(1) == y_val).float().mean().item()
        print(
            f"pretrain epoch {epoch + 1}: loss {loss:.3f}, 2D val top-1 {acc:.3f} ({time.time() - start:.0f}s)"
        )
    args.ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_bit_2d_state_dict(model), args.ckpt)
    print(f"saved 2D checkpoint (timm BiT key names) to {args.ckpt}")


# ------------------------------------------------------------------------------------ fine-tune on motion


def decode_clips(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Decode the motion dataset once: ``repeats`` random train clips per video, one centre val clip per video."""
    from video_gn.data import KineticsDataModule
    from video_gn.data.synthetic import SyntheticSpec

    cache = args.out / f"motion_clips_{args.crop}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    dm = KineticsDataModule(
        root=args.data,
        num_frames=8,
        sampling_rate=4,
        batch_size=16,
        num_workers=1,
        train_short_side=(64, 72),  # short side 64 (the 64x80 videos), jitter to 72
        crop_size=args.crop,
        test_short_side=64,
        num_clips=1,
        num_crops=1,
        hflip=False,
        persistent_workers=False,
        seed=args.seed,
        synthetic=SyntheticSpec(),  # the generator's default: 10 classes, 40 + 10 videos each, 64x80
    )
    dm.prepare_data()  # generates the dataset into --data if it is not there (about a minute)
    dm.setup("fit")
    out: dict[str, list[torch.Tensor]] = {"train_x": [], "train_y": [], "val_x": [], "val_y": []}
    for _ in range(args.repeats):
        for batch in dm.train_dataloader():
            out["train_x"].append(batch["video"])
            out["train_y"].append(batch["label"])
    loaders = dm.val_dataloader()
    for batch in loaders[0] if isinstance(loaders, list) else loaders:
        out["val_x"].append(batch["video"])
        out["val_y"].append(batch["label"])
    clips = {k: torch.cat(v) for k, v in out.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(clips, cache)
    return clips


def finetune(args: argparse.Namespace, clips: dict[str, torch.Tensor], init: str) -> list[float]:
    """Train bit_i3d_r50x1 from ``init`` ("scratch" or "inflated"); return val top-1 after each epoch."""
    torch.manual_seed(args.seed)
    num_classes = int(clips["train_y"].max()) + 1
    model = build(
        "bit_i3d_r50x1",
        num_classes=num_classes,
        width=args.width,
        ws_eps=1e-8,
        dropout=0.2,
        norm_kwargs={"num_groups": args.groups},  # same groups as the 2D network: GN is part of its function
    )
    if init == "inflated":
        print(f"  {load_pretrained(model, args.ckpt, source_gn_groups=args.groups)}")  # not BiT's 32 groups
    n = len(clips["train_x"]) // args.repeats  # one pass = one clip per video
    steps_per_epoch = n // args.batch
    opt, sched = _optimizer(model, args.lr, args.epochs * steps_per_epoch)
    curve, start = [], time.time()
    for epoch in range(args.epochs):
        order = (epoch % args.repeats) * n + torch.randperm(n)  # epochs alternate between the decoded clips
        loss = _train_epoch(model, opt, sched, clips["train_x"], clips["train_y"], order, args.batch)
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(v).argmax(1) for v in clips["val_x"].split(25)])
        curve.append((pred == clips["val_y"]).float().mean().item())
        print(
            f"  {init} epoch {epoch + 1}: train loss {loss:.3f}, val top-1 {curve[-1]:.3f} ({time.time() - start:.0f}s)"
        )
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/inflation"))
    p.add_argument(
        "--data",
        default="data/synthetic_motion_default",
        help="synthetic motion dataset of the generator's default spec (10 classes at 64x80; generated if missing; "
        "not the quick start's data/synthetic_motion, a different spec)",
    )
    p.add_argument(
        "--ckpt", type=Path, default=None, help="2D checkpoint path (default OUT/bit2d_shapes.pth)"
    )
    p.add_argument("--skip-pretrain", action="store_true")
    p.add_argument("--pretrain-only", action="store_true", help="only make the 2D checkpoint")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="2D image size")
    p.add_argument("--crop", type=int, default=56, help="video crop size")
    p.add_argument(
        "--groups",
        type=int,
        default=4,
        help="GroupNorm groups (at width 8, 32 groups leave 1-2 values per group)",
    )
    p.add_argument("--images", type=int, default=3200)
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--pretrain-batch", type=int, default=32)
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--repeats", type=int, default=2, help="decoded train clips per video")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="1 is much faster on a shared, busy CPU")
    args = p.parse_args()
    args.ckpt = args.ckpt or args.out / "bit2d_shapes.pth"
    torch.set_num_threads(args.threads)
    if not args.skip_pretrain:
        pretrain(args)
    if args.pretrain_only:
        return
    clips = decode_clips(args)
    print(f"motion clips: train {tuple(clips['train_x'].shape)}, val {tuple(clips['val_x'].shape)}")
    curves = {init: finetune(args, clips, init) for init in ("scratch", "inflated")}
    print("\n| epoch | " + " | ".join(f"val top-1, {k}" for k in curves) + " |")
    print("| --- | " + " | ".join("---" for _ in curves) + " |")
    for e in range(args.epochs):
        print(f"| {e + 1} | " + " | ".join(f"{curves[k][e]:.3f}" for k in curves) + " |")


if __name__ == "__main__":
    main()
