"""Initialise a 3D model from a checkpoint file: a 2D ImageNet ResNet (inflated) or a 3D state dict (copied).

Formats, all read without unpickling arbitrary objects:

- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: ``torch.load(path, weights_only=True)``; a state dict, or a dict
  holding one under ``state_dict`` / ``model`` / ``module`` (Lightning checkpoints; a timm training checkpoint
  holds pickled ``argparse`` objects that ``weights_only`` refuses: save its ``state_dict`` alone);
- ``.safetensors`` (timm / Hugging Face Hub files): ``safetensors.torch.load_file`` (``pip install safetensors``);
- ``.npz``: the official BiT release format (``BiT-M-R50x1.npz``: keys ``resnet/block1/unit01/a/...``, HWIO
  kernels), converted to timm's ``ResNetV2`` names, with the official WS eps 1e-10.

Named hub models (``"timm:resnetv2_50x1_bit.goog_in21k"``, ``"torchvision:ResNet50_Weights.IMAGENET1K_V2"``) are
downloaded only when asked for by such a name; without network the error says which file to fetch and where.
A local path that does not exist is never downloaded: the error names the file to fetch (recognised from the
file name: official ``BiT-M-R50x1.npz``, torchvision's ``resnet50-11ad3fa6.pth``, a timm ``model.tag`` name such
as ``resnetv2_50x1_bit.goog_in21k.safetensors``; else the public checkpoints that fit the model) and where to
save it (the path given).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from video_gn.models.inflate import InflationReport, Method, detect_family, inflate
from video_gn.models.inflate_maps import _more

__all__ = ["bit_npz_to_state_dict", "load_pretrained", "read_state_dict"]

_PREFIXES = ("module.", "model.", "_orig_mod.")


def _unwrap(obj: Any, path: str) -> dict[str, Tensor]:
    for _ in range(3):  # {"state_dict": {...}} / {"model": {...}} nesting
        if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next(
                (obj[k] for k in ("state_dict", "model", "module", "state_dict_ema") if k in obj), None
            )
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(
            f"{path} holds no state dict (a mapping of names to tensors, possibly under 'state_dict' or 'model'); "
            f"got {type(obj).__name__} with keys {list(obj)[:6] if isinstance(obj, Mapping) else '-'}."
        )
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    # DDP / Lightning / torch.compile wrappers, nested in any order ("model._orig_mod.module.conv1.weight")
    while prefix := next((p for p in _PREFIXES if sd and all(k.startswith(p) for k in sd)), None):
        sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


_NPZ_BLOCK = re.compile(
    r"block(\d+)/unit(\d+)/([abc])/(proj/)?(standardized_conv2d/kernel|group_norm/gamma|group_norm/beta)"
)
_NPZ_LEAF = {"standardized_conv2d/kernel": "weight", "group_norm/gamma": "weight", "group_norm/beta": "bias"}


def bit_npz_to_state_dict(arrays: Mapping[str, Any], *, prefix: str = "resnet/") -> dict[str, Tensor]:
    """Convert an official BiT ``.npz`` (TF names, HWIO kernels) to timm ``ResNetV2`` names (OIHW kernels).

    BiT: Kolesnikov et al. 2020, https://arxiv.org/abs/1912.11370; official release:
    https://github.com/google-research/big_transfer.

    Unit ``a`` holds the block's first norm (``norm1``, before ``conv1``) and conv; ``a/proj`` the projection.

    Args:
        arrays: name -> numpy array, as from ``numpy.load(path)``.
        prefix: name prefix of the release (``"resnet/"``).

    Returns:
        A state dict with keys ``stem.conv.weight``, ``stages.{i}.blocks.{j}.conv1.weight``, ``norm.weight``,
        ``head.fc.weight`` (O, I, 1, 1), ... loadable by :func:`~video_gn.models.inflate` with ``source="bit"``.

    Raises:
        ValueError: the arrays hold no ``{prefix}root_block/standardized_conv2d/kernel`` (not a BiT release).
    """

    def tensor(name: str) -> Tensor:
        a = torch.from_numpy(arrays[name].copy())
        return a.permute(3, 2, 0, 1).contiguous() if a.ndim == 4 else a

    sd: dict[str, Tensor] = {}
    for name in arrays:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        m = _NPZ_BLOCK.fullmatch(rest)
        if m:
            stage, unit, letter, proj, kind = m.groups()
            block = f"stages.{int(stage) - 1}.blocks.{int(unit) - 1}."
            if proj:
                sd[block + "downsample.conv.weight"] = tensor(name)
            else:
                index = "abc".index(letter) + 1
                module = f"conv{index}" if kind.startswith("standardized") else f"norm{index}"
                sd[f"{block}{module}.{_NPZ_LEAF[kind]}"] = tensor(name)
        elif rest == "root_block/standardized_conv2d/kernel":
            sd["stem.conv.weight"] = tensor(name)
        elif rest in ("group_norm/gamma", "group_norm/beta"):
            sd["norm." + _NPZ_LEAF[rest]] = tensor(name)
        elif rest in ("head/conv2d/kernel", "head/conv2d/bias"):
            sd["head.fc." + ("weight" if rest.endswith("kernel") else "bias")] = tensor(name)
    if "stem.conv.weight" not in sd:
        raise ValueError(
            f"Not an official BiT .npz: no '{prefix}root_block/standardized_conv2d/kernel' among "
            f"{sorted(arrays)[:5]} ..."
        )
    return sd


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], str | None]:
    """Read a checkpoint file without unpickling arbitrary objects.

    Args:
        path: ``.pth``/``.pt``/``.bin``/``.ckpt``, ``.safetensors`` or official BiT ``.npz``.

    Returns:
        (state dict with wrapper prefixes removed, family hint: ``"bit_npz"`` for ``.npz`` else None).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: an unsupported suffix, or a file that cannot be read safely or holds no state dict.
        ImportError: a ``.safetensors`` file without the ``safetensors`` package.
    """
    sd, hint, _ = _read_checkpoint(path)
    return sd, hint


def _read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], str | None, dict | None]:
    """:func:`read_state_dict` plus the file's ``hyper_parameters`` (a ``video-gn fit`` checkpoint's), or None."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"Pretrained checkpoint {str(path)!r} {what}. Give model.pretrained a local .pth, "
            ".safetensors or BiT .npz file (see docs/results.md, '2D → 3D inflation')."
        )
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"Reading {p} needs safetensors: pip install safetensors") from err
        try:
            tensors = load_file(str(p))
        except Exception as err:  # SafetensorError (not a ValueError): truncated or not a safetensors file
            raise ValueError(
                f"{p} could not be read as a .safetensors file ({type(err).__name__}: {err}); it is truncated "
                "or not a safetensors file: download it again."
            ) from err
        return _unwrap(tensors, str(p)), None, None
    if suffix == ".npz":
        import numpy as np

        try:
            with np.load(p, allow_pickle=False) as arrays:
                loaded = {k: arrays[k] for k in arrays.files}
        except Exception as err:  # numpy's messages name neither the file nor the format expected
            raise ValueError(
                f"{p} could not be read as an .npz archive ({type(err).__name__}: {err}); it is truncated or "
                "not an .npz file (object arrays are refused, as they need unpickling): download it again."
            ) from err
        try:
            return bit_npz_to_state_dict(loaded), "bit_npz", None
        except ValueError as err:  # an .npz of something else: say which file
            raise ValueError(f"{p}: {err}") from err
    if suffix not in (".pth", ".pt", ".bin", ".ckpt"):
        raise ValueError(
            f"Unsupported checkpoint {p.name!r}: expected .pth, .pt, .bin, .ckpt, .safetensors or .npz."
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled objects beyond tensors/containers: refuse rather than execute them
        raise ValueError(
            f"{p} could not be read with torch.load(weights_only=True): {why_torch_load_failed(p, err)}. Save only "
            "the state dict (torch.save(model.state_dict(), path)) or convert the file to .safetensors."
        ) from err
    hparams = obj.get("hyper_parameters") if isinstance(obj, Mapping) else None
    return _unwrap(obj, str(p)), None, hparams if isinstance(hparams, Mapping) else None


def why_torch_load_failed(path: str | Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` raised ``err``, in words: not a torch file, pickled objects
    beyond tensors, or a damaged file (with the first words of torch's message)."""
    # Explaining must never raise: an unreadable file (permissions, I/O error, removed meanwhile) says so.
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err_open:
        return f"it cannot be opened ({type(err_open).__name__}: {err_open.strerror or err_open})"
    if not head:
        return "it is empty (0 bytes), e.g. written by a run killed while saving"
    # torch.save writes a zip archive (PK\x03\x04); files from torch < 1.6 start with a pickle protocol byte
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        return f"it is not a file written by torch.save (it starts with {head!r})"
    message = " ".join(str(err).split())
    if "weights only load failed" in message.lower():
        return (
            "it holds pickled Python objects besides tensors, and video-gn loads checkpoints with "
            "weights_only=True (it never runs code from a file); re-save it with tensors, numbers, strings and "
            "plain containers only"
        )
    first = message if len(message) <= 160 else message[:160].rsplit(" ", 1)[0] + " …"
    return (
        f"the file is cut short or corrupt, e.g. written by a run killed while saving ({type(err).__name__}: "
        f"{first or 'no message'})"
    )


def _hub_state_dict(spec: str) -> tuple[dict[str, Tensor], str | None]:
    """Download a named model: ``timm:NAME`` or ``torchvision:WEIGHTS_ENUM``; clear instructions when offline."""
    hub, _, name = spec.partition(":")
    if hub == "torchvision":
        import torchvision

        try:
            weights = torchvision.models.get_weight(name)
        except (KeyError, ValueError, AttributeError):
            known = [f"{w}" for w in torchvision.models.get_model_weights("resnet50")]
            raise ValueError(
                f"model.pretrained {spec!r}: torchvision has no weights named {name!r}; give an enum value such "
                f"as {', '.join('torchvision:' + k for k in known)} (see torchvision.models.get_model_weights)"
            ) from None
        try:
            return dict(weights.get_state_dict(progress=False)), None
        except OSError as err:
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            raise FileNotFoundError(
                f"Could not download {name} ({err}). On a machine with internet download {weights.url} and put "
                f"it at {cache} (then this name works offline), or anywhere and set model.pretrained to that "
                "path."
            ) from err
    if hub == "timm":
        try:
            import timm
        except ImportError as err:
            raise ImportError(f"{spec!r} needs timm: pip install 'video_gn[timm]'") from err
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as err:  # no network, unknown tag, hub error
            found = _timm_download(name)
            if found is None:
                raise ValueError(
                    f"timm has no pretrained weights named {name!r} ({type(err).__name__}: {err}); see "
                    "timm.list_pretrained() for 'model.tag' names, e.g. 'resnetv2_50x1_bit.goog_in21k'."
                ) from err
            full_name, what, suffix = found
            local = f"checkpoints/{full_name}{suffix}"
            raise FileNotFoundError(
                f"Could not fetch timm model {name!r} ({type(err).__name__}: {err}). On a machine with internet "
                f"download {what}, save it as {local} and set model.pretrained: {local}."
            ) from err
        return model.state_dict(), None
    raise ValueError(f"Unknown hub in {spec!r}: use 'timm:<model.tag>' or 'torchvision:<WeightsEnum.NAME>'.")


def _hf_url(hub_id: str) -> str:
    return f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors"


def _timm_download(name: str) -> tuple[str, str, str] | None:
    """(``model.tag``, what to download, its file suffix) for a timm pretrained name, from timm's offline registry
    of pretrained configs (an untagged name gets timm's default tag); None if timm is missing or does not know
    the name."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except Exception:  # timm not installed, or an unregistered name
        return None
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        hub_id = cfg.hf_hub_id
        what = f"model.safetensors of the Hugging Face Hub repository {hub_id} ({_hf_url(hub_id)})"
        return hub_id.rpartition("/")[2], what, ".safetensors"
    if cfg.url:
        full_name = f"{name.partition('.')[0]}.{cfg.tag}" if cfg.tag else name
        return full_name, cfg.url, Path(cfg.url).suffix or ".pth"
    return None


#: The official BiT release (https://github.com/google-research/big_transfer): BiT-{S,M}-R{50,101,152}x{1,3,4}.npz.
_BIT_NPZ = re.compile(r"BiT-[SM]-R(50|101|152)x[1-4](-ILSVRC2012)?\.npz")
_BIT_NPZ_URL = "https://storage.googleapis.com/bit_models/"
_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}


def _model_sources(model3d: nn.Module) -> list[tuple[str, str]]:
    """Public 2D checkpoints that fit ``model3d`` (by family, norm, block type, depth and width), each with the
    file suffix its format needs (the reader picks the format from the suffix)."""
    from video_gn.models.bit import PreActResNet3d

    stages = [b for b in getattr(model3d, "blocks", []) if hasattr(b, "res_blocks")]
    if len(stages) != 4:
        return []
    preact = isinstance(model3d, PreActResNet3d)
    if not preact and getattr(model3d.blocks[0], "pool", None) is None:
        return []  # r3d_*: no stem max-pool, so no 2D ResNet inflates into it (see inflate)
    first = stages[0].res_blocks[0]
    block = "bottleneck" if preact or hasattr(getattr(first, "branch2", None), "conv_c") else "basic"
    depth = _DEPTHS.get((block, tuple(len(s.res_blocks) for s in stages)))
    stem = next(m for m in model3d.modules() if isinstance(m, nn.Conv3d))
    if depth is None or stem.out_channels != 64:
        return []  # no public checkpoint of this depth / width (64 is the published width)
    if preact:
        hub_id = f"timm/resnetv2_{depth}x1_bit.goog_in21k"
        return [
            (f"timm's BiT-M: model.safetensors of {hub_id} ({_hf_url(hub_id)}; WS eps 1e-8)", ".safetensors"),
            (
                f"the official BiT-M-R{depth}x1.npz ({_BIT_NPZ_URL}BiT-M-R{depth}x1.npz; build with ws_eps=1e-10)",
                ".npz",
            ),
        ]
    if any(isinstance(m, nn.GroupNorm) for m in model3d.modules()):  # GN checkpoints for a GN model
        if depth != 50:
            return []
        hub_id = "timm/resnet50_gn.a1h_in1k"
        return [(f"timm's resnet50_gn: model.safetensors of {hub_id} ({_hf_url(hub_id)})", ".safetensors")]
    out = []
    try:
        import torchvision

        weights = list(torchvision.models.get_model_weights(f"resnet{depth}"))[-1]
        out.append((f"torchvision's resnet{depth} {weights} ({weights.url})", ".pth"))
    except Exception:  # torchvision without these weights
        pass
    found = _timm_download(f"resnet{depth}")
    if found is not None:
        out.append((f"timm's {found[0]}: {found[1]}", found[2]))
    return out


def _download_hint(path: Path, model3d: nn.Module) -> str:
    """What to download for a missing checkpoint file ``path`` and where to put it."""
    name = path.name
    where = f"save it as {str(path)!r} ({path.expanduser().absolute()})"
    if _BIT_NPZ.fullmatch(name):
        return f"On a machine with internet download {_BIT_NPZ_URL}{name} and {where}."
    try:
        import torchvision

        for depth in (18, 34, 50, 101, 152):
            for weights in torchvision.models.get_model_weights(f"resnet{depth}"):
                if Path(weights.url).name == name:
                    return f"On a machine with internet download {weights.url} and {where}."
    except Exception:  # torchvision without weight enums
        pass
    if path.suffix.lower() in (".safetensors", ".bin") and (found := _timm_download(path.stem)):
        return f"On a machine with internet download {found[1]} and {where}."
    if path.suffix.lower() == ".safetensors" and re.fullmatch(r"[a-z0-9_]+\.[A-Za-z0-9_]+", path.stem):
        hub_id = (
            f"timm/{path.stem}"  # a timm ``model.tag`` name; timm itself is not needed to say where it is
        )
        return (
            f"On a machine with internet download model.safetensors of the Hugging Face Hub repository {hub_id} "
            f"({_hf_url(hub_id)}) and {where}."
        )
    if name == "bit2d_shapes.pth":  # the 2D checkpoint of configs/quickstart_inflated.yaml, made locally
        return (
            "It is made on this machine (a 2D network trained on a synthetic shape task, ~4 min on CPU): python "
            "benchmarks/inflation.py --pretrain-only --out runs/inflation --size 32 --pretrain-epochs 20"
            + ("" if path.parent.name == "inflation" else f", then {where}")
            + "."
        )
    sources = _model_sources(model3d)
    if not sources:
        return (
            f"Give model.pretrained the path of an existing 2D or 3D checkpoint of this model; no public 2D "
            f"checkpoint fits {type(model3d).__name__} at this depth, width and stem (64 is the published "
            "width; r3d_* has no stem max-pool)."
        )
    suffix = path.suffix.lower()
    listed = [desc if ext == suffix else f"{desc} (a {ext} file)" for desc, ext in sources]
    if any(ext == suffix for _, ext in sources):
        todo = f"{where} (a file of another format needs a name with its own suffix)"
    else:
        todo = (
            f"save it under a name with its own suffix ({' or '.join(sorted({ext for _, ext in sources}))}: the "
            f"format is read from it, so not as {str(path)!r}) and point model.pretrained at that file"
        )
    return (
        f"Checkpoints that fit this model: {'; or '.join(listed)}. Download one on a machine with internet and "
        f"{todo}."
    )


def load_pretrained(
    model3d: nn.Module, path: str | Path, *, method: Method = "mean", **inflate_kwargs: Any
) -> InflationReport:
    """Initialise ``model3d`` from a checkpoint: inflate a 2D ResNet, or copy a 3D state dict of the same model.

    Args:
        model3d: a video_gn 3D model (from :func:`video_gn.models.build`), modified in place.
        path: a local file (see the module docstring for formats), or a hub name ``timm:...`` /
            ``torchvision:...`` (downloads; needs internet).
        method: temporal inflation of 2D kernels, ``"mean"`` (I3D: repeat and divide by k_T) or ``"center"``
            (centre tap, zeros elsewhere; keeps a 2D network's function exactly on constant clips); checked
            before anything is read. Unused for a 3D checkpoint.
        **inflate_kwargs: passed to :func:`~video_gn.models.inflate` (``source_ws_eps``, ``source_gn_groups``,
            ``check_architecture``, ``strict``, ...).

    Returns:
        The :class:`~video_gn.models.inflate.InflationReport` (``source="3d"`` when a 3D state dict was copied).

    Raises:
        FileNotFoundError: the file does not exist (the message says what to download and where to put it) or a
            hub download failed.
        ValueError: an invalid ``method``, an unreadable or unrecognised checkpoint, or one that does not fit
            the model (see :func:`~video_gn.models.inflate`).
    """
    if method not in ("mean", "center"):
        raise ValueError(f"method (model.pretrained_method) must be 'mean' or 'center', got {method!r}.")
    spec = str(path)
    hparams = None
    if re.match(r"^(timm|torchvision):", spec) and not Path(spec).exists():
        sd, hint = _hub_state_dict(spec)
    else:
        if Path(spec).expanduser().is_dir():
            raise FileNotFoundError(
                f"Pretrained checkpoint {spec!r} is a folder; give model.pretrained the checkpoint file in it "
                "(.pth, .pt, .bin, .ckpt, .safetensors or BiT .npz)."
            )
        if not Path(spec).expanduser().is_file():  # nothing is downloaded at run time: say what to fetch
            raise FileNotFoundError(
                f"Pretrained checkpoint {spec!r} does not exist. {_download_hint(Path(spec), model3d)}"
            )
        sd, hint, hparams = _read_checkpoint(spec)
    if any(v.ndim == 5 for v in sd.values()):
        report = _load_3d(model3d, sd, spec)
        report.notes.extend(_setting_differences(model3d, hparams or {}))
        return report
    if hint == "bit_npz" and "source_ws_eps" not in inflate_kwargs:
        from video_gn.models.inflate import SOURCE_FAMILIES

        inflate_kwargs["source_ws_eps"] = SOURCE_FAMILIES["bit_npz"]
    detect_family(sd)  # clear error for unknown files before touching the model
    return inflate(model3d, sd, method=method, **inflate_kwargs)


def _setting_differences(model3d: nn.Module, hp: Mapping[str, Any]) -> list[str]:
    """Notes for settings that the tensors of a 3D checkpoint cannot show but that change the function: WS on or
    off, its eps, the norm kind and a given GroupNorm group count, from a ``video-gn fit`` checkpoint's
    hyper-parameters ``hp``; a bare state dict records none of them (empty ``hp``: no notes)."""
    from video_gn.models.registry import default_ws_eps, names
    from video_gn.nn import WSConv3d

    if "ws" not in hp or "norm" not in hp:
        return []
    notes = []
    ws_convs = [m for m in model3d.modules() if isinstance(m, WSConv3d)]
    if bool(hp["ws"]) != bool(ws_convs):
        notes.append(
            f"The checkpoint was trained {'with' if hp['ws'] else 'without'} weight standardization and this "
            f"model is built {'with' if ws_convs else 'without'}: the same tensors compute another function"
        )
    elif ws_convs:
        name = str(hp.get("name", ""))
        eps = hp.get("ws_eps") or (default_ws_eps(name) if name in names() else None)
        if eps is not None and any(abs(m.eps - eps) > 1e-9 * eps for m in ws_convs):
            notes.append(
                f"WS eps differs: the checkpoint's convs were trained with {eps:g}, this model's use "
                f"{ws_convs[0].eps:g} (model.ws_eps)"
            )
    gns = [m for m in model3d.modules() if isinstance(m, nn.GroupNorm)]
    if (hp["norm"] in ("gn", "ln", "in")) != bool(gns):
        has = "uses GroupNorm" if gns else "has no GroupNorm"
        notes.append(f"The checkpoint's norm is {hp['norm']!r}; this model {has}")
    groups = hp.get("gn_groups")
    if hp["norm"] == "gn" and isinstance(groups, int) and any(m.num_groups != groups for m in gns):
        built = sorted({m.num_groups for m in gns})
        notes.append(
            f"GroupNorm groups differ: the checkpoint used {groups} (model.gn_groups), this model {built}"
        )
    return notes


def _load_3d(model3d: nn.Module, sd: dict[str, Tensor], path: str) -> InflationReport:
    target = model3d.state_dict()
    report = InflationReport(source="3d", method="none")
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in sd.items()
        if k in target and v.shape != target[k].shape and not k.endswith(("proj.weight", "proj.bias"))
    ]
    unknown = [f"{k} {tuple(v.shape)} (not in the model)" for k, v in sd.items() if k not in target]
    not_float = [
        f"{k} ({v.dtype})"
        for k, v in sd.items()
        if k in target and target[k].is_floating_point() and not v.is_floating_point()
    ]
    if not_float:
        raise ValueError(
            f"{path} holds non-float tensors where the model has float weights: {not_float[:4]}{_more(not_float)}. "
            "It is not a float state dict (a quantized or damaged export?): save the float weights."
        )
    # Model tensors the file lacks (BN running statistics when the file is a GN model) would silently stay
    # at their initial values; num_batches_tracked is only a counter.
    absent = [
        f"{k} {tuple(v.shape)} (not in the file)"
        for k, v in target.items()
        if k not in sd and not k.endswith("num_batches_tracked")
    ]
    if wrong or unknown or absent:
        raise ValueError(
            f"{path} is a 3D checkpoint of a different model ({type(model3d).__name__}): shape mismatches "
            f"{wrong[:4]}, file tensors the model lacks {unknown[:4]}, model tensors the file lacks {absent[:4]}. "
            "Build the same model (name, width, norm) it was trained with."
        )
    with torch.no_grad():
        for k, v in sd.items():
            if v.shape == target[k].shape:
                target[k].copy_(v)
                report.loaded.append(k)
            else:
                report.skipped.append(f"{k} (classifier {tuple(v.shape)} vs model {tuple(target[k].shape)})")
    report.missing = [k for k in target if k not in report.loaded and not k.endswith("num_batches_tracked")]
    return report
