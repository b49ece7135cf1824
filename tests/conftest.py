"""Shared pytest fixtures. Tests run on CPU with few threads so the 2-core CI stays responsive."""

import torch

torch.set_num_threads(2)
