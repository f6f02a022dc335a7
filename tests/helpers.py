"""Helpers shared by tests of several packages."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["mini_3d_config", "randomize_batchnorm"]


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so folding is really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.8, 1.2, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)


def mini_3d_config(name: str, **sections: Any) -> dict[str, Any]:
    """A training config: the tiny encoder in mode ``3d`` on a ``v1.0-mini`` synthetic set, no cameras
    (the loop is what such tests check, not the branches); ``sections`` adds or replaces sections."""
    return {
        "name": name,
        "model": "tiny",
        "branch": {"mode": "3d"},
        "data": {
            "nuscenes": {"version": "v1.0-mini", "split": "mini_train", "cameras": "none"},
            "val_split": "mini_val",
            "num_workers": 0,
        },
        **sections,
    }
