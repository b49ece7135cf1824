"""Shared pytest fixtures. Tests run on CPU with few threads so the 2-core CI stays responsive."""

from pathlib import Path

import pytest
import torch

from video_gn.data.synthetic import SyntheticSpec, generate

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A tiny generated dataset for the CLI tests (test_cli.py, test_predict.py), made once per session.

    Small enough for CI: 4 classes x 4 train / 2 val videos, 48x48 pixels, 24 frames. Tests only read it.
    """
    spec = SyntheticSpec(
        num_classes=4, train_per_class=4, val_per_class=2, size=(48, 48), fps=12, num_frames=24, seed=3
    )
    root = tmp_path_factory.mktemp("data") / "tiny"
    generate(root, spec, workers=1, progress=False)
    return root
