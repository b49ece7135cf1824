"""Key-name maps between 2D ResNet checkpoints and the 3D video_gn ResNets, for :func:`~video_gn.models.inflate`.

Two 2D families are recognised from their key names: torchvision/timm ``resnet*`` (``conv1``, ``layer1.0.conv1``,
``fc``: post-activation, mapped onto :class:`~video_gn.models.resnet3d.VideoResNet`'s ``blocks.0.conv``,
``blocks.1.res_blocks.0.branch2.conv_a``, the head's ``proj``) and timm ``ResNetV2`` / BiT (``stem.conv``,
``stages.0.blocks.0.conv1``, ``norm``, ``head.fc``: pre-activation, mapped onto
:class:`~video_gn.models.bit.PreActResNet3d`). Each map has an inverse, so an error can name the 2D key a 3D
tensor would have come from. The small formatting helpers that the error messages share live here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor, nn

from video_gn.models.bit import PreActStage

#: Leaf names of BatchNorm's running statistics (dropped when the 3D norm keeps none).
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def detect_family(state_dict_2d: Mapping[str, Tensor]) -> str:
    """Recognise the 2D checkpoint family from its key names.

    Args:
        state_dict_2d: a 2D state dict (prefixes such as ``module.`` already removed).

    Returns:
        ``"resnet"`` (torchvision / timm ResNet: ``conv1``, ``layer1.0.conv1`` ...) or ``"bit"`` (timm
        ``ResNetV2``: ``stem.conv``, ``stages.0.blocks.0.conv1`` ...).

    Raises:
        ValueError: neither layout is recognised (the message names a wrapper prefix to remove, if it finds one).
    """
    keys = set(state_dict_2d)
    if "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys):
        return "resnet"
    if "stem.conv.weight" in keys and any(k.startswith("stages.0.blocks.0.") for k in keys):
        return "bit"
    sample = sorted(keys)[:6]
    # A wrapper's prefix (DDP "module.", Lightning "model.") in front of a known layout: say which to remove.
    prefixes = [
        k[: -len(first)]
        for k in keys
        for first, then in (("conv1.weight", "layer1.0."), ("stem.conv.weight", "stages.0.blocks.0."))
        if k.endswith("." + first) and any(x.startswith(k[: -len(first)] + then) for x in keys)
    ]
    hint = (
        f" The keys carry the prefix {prefixes[0]!r}: remove it first ({{k.removeprefix({prefixes[0]!r}): v}}; "
        "load_pretrained removes the wrappers' 'module.', 'model.' and '_orig_mod.' itself)."
        if len(prefixes) == 1
        else ""
    )
    raise ValueError(
        f"Unrecognised 2D checkpoint: keys start {sample} ... Supported: torchvision/timm ResNets (keys "
        "'conv1.weight', 'layer1.0.conv1.weight', ...) and timm BiT ResNetV2 (keys 'stem.conv.weight', "
        f"'stages.0.blocks.0.conv1.weight', ...); official BiT .npz files go through load_pretrained.{hint}"
    )


def _stage_prefixes(model: nn.Module) -> list[str]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(
            f"inflate expects a video_gn 3D ResNet (a module with a 'blocks' list, from video_gn.models.build); "
            f"got {type(model).__name__}."
        )
    return [
        f"blocks.{i}." for i, b in enumerate(blocks) if isinstance(b, PreActStage) or hasattr(b, "res_blocks")
    ]


_RESNET_LEAF = {
    "conv1": "branch2.conv_a",
    "bn1": "branch2.norm_a",
    "conv2": "branch2.conv_b",
    "bn2": "branch2.norm_b",
    "conv3": "branch2.conv_c",
    "bn3": "branch2.norm_c",
    "downsample.0": "branch1_conv",
    "downsample.1": "branch1_norm",
}


def _map_resnet(key: str, stages: list[str], head: str) -> str | None:
    """torchvision/timm ResNet key -> video_gn post-activation key (None: not a model key)."""
    module, _, leaf = key.rpartition(".")
    if module == "conv1":
        return f"blocks.0.conv.{leaf}"
    if module == "bn1":
        return f"blocks.0.norm.{leaf}"
    if module == "fc":
        return f"{head}{leaf}"
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", module)
    if m and m.group(3) in _RESNET_LEAF and int(m.group(1)) <= len(stages):
        return f"{stages[int(m.group(1)) - 1]}res_blocks.{m.group(2)}.{_RESNET_LEAF[m.group(3)]}.{leaf}"
    return None


def _map_bit(key: str, stages: list[str], head: str, final_norm: str) -> str | None:
    """timm ResNetV2 (BiT) key -> :class:`~video_gn.models.bit.PreActResNet3d` key."""
    if key == "stem.conv.weight":
        return "blocks.0.conv.weight"
    if key.startswith("norm."):
        return final_norm + key[len("norm.") :]
    if key.startswith("head.fc."):
        return head + key[len("head.fc.") :]
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key)
    if m and int(m.group(1)) < len(stages):
        rest = m.group(3).replace("downsample.conv.", "downsample.")
        return f"{stages[int(m.group(1))]}res_blocks.{m.group(2)}.{rest}"
    return None


def _unmap(tkey: str, family: str, stages: list[str], head: str, final_norm: str) -> str:
    """The 2D key that would fill 3D key ``tkey`` (inverse of :func:`_map_resnet` / :func:`_map_bit`)."""
    if tkey.startswith(head):
        return ("fc." if family == "resnet" else "head.fc.") + tkey[len(head) :]
    if family == "bit" and tkey.startswith(final_norm):
        return "norm." + tkey[len(final_norm) :]
    if tkey.startswith("blocks.0."):
        rest = tkey[len("blocks.0.") :]
        if family == "bit":
            return "stem." + rest
        module, _, leaf = rest.rpartition(".")
        return {"conv": "conv1", "norm": "bn1"}.get(module, module) + "." + leaf
    for i, prefix in enumerate(stages):
        m = re.fullmatch(re.escape(prefix) + r"res_blocks\.(\d+)\.(.+)\.(\w+)", tkey)
        if m and family == "resnet":
            leaf2 = {v: k for k, v in _RESNET_LEAF.items()}.get(m.group(2), m.group(2))
            return f"layer{i + 1}.{m.group(1)}.{leaf2}.{m.group(3)}"
        if m:
            module = m.group(2).replace("downsample", "downsample.conv")
            return f"stages.{i}.blocks.{m.group(1)}.{module}.{m.group(3)}"
    return "?"


def _depths_2d(state_dict_2d: Mapping[str, Tensor], family: str) -> tuple[int, ...]:
    """Blocks per stage of a 2D checkpoint, from its key names."""
    pattern = r"layer(\d+)\.(\d+)\." if family == "resnet" else r"stages\.(\d+)\.blocks\.(\d+)\."
    depth: dict[int, int] = {}
    for key in state_dict_2d:
        if m := re.match(pattern, key):
            stage = int(m.group(1)) - (family == "resnet")
            depth[stage] = max(depth.get(stage, 0), int(m.group(2)) + 1)
    return tuple(depth.get(i, 0) for i in range(max(depth, default=-1) + 1))


def _more(items: list, shown: int = 4) -> str:
    return f" (+{len(items) - shown} more)" if len(items) > shown else ""


def _first_tensors(sd: Mapping[str, Tensor], n: int = 4) -> str:
    """``key (shape)`` of the first ``n`` tensors that are not BN statistics, in forward (state dict) order."""
    items = [(k, v) for k, v in sd.items() if isinstance(v, Tensor) and k.rpartition(".")[2] not in _BN_STATS]
    return ", ".join(f"{k} {_shape(v)}" for k, v in items[:n])


def _owner(model: nn.Module, key: str) -> nn.Module:
    return model.get_submodule(key.rpartition(".")[0])


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)
