"""Classifier heads of the training-only branches and the voxel targets of the 3D auxiliary heads.

Every head of §4/§5.2 has the shape of the encoder's own head: ``Linear(C_in → hidden) → ReLU →
Linear(hidden → classes)``, with ``hidden`` = the encoder config's ``head_hidden`` (128 at the
nuScenes configuration).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead", "gather_to_points", "voxel_majority_labels"]


class ClassifierHead(nn.Sequential):
    """``Linear(in_channels → hidden) → ReLU → Linear(hidden → num_classes)``."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int) -> None:
        super().__init__(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def voxel_majority_labels(
    labels: torch.Tensor, inverse: torch.Tensor, num_voxels: int, num_classes: int
) -> torch.Tensor:
    """Majority label of each voxel's points (2DPASS's auxiliary-head target).

    Args:
        labels: ``(N,)`` int64 point labels in ``[0, num_classes)``; 0 (ignore) is counted like any
            class, so a voxel of mostly unlabelled points gets target 0 and the loss skips it.
        inverse: ``(N,)`` int64 voxel row of each point.
        num_voxels: ``V``.
        num_classes: ``K``.

    Returns:
        ``(V,)`` int64; ties go to the lowest class id (``argmax`` returns the first maximum).
    """
    if labels.shape != inverse.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and inverse {tuple(inverse.shape)} differ")
    counts = torch.bincount(inverse * num_classes + labels, minlength=num_voxels * num_classes)
    return counts.view(num_voxels, num_classes).argmax(dim=1)


def gather_to_points(voxel_values: torch.Tensor, inverse: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of ``voxel_values`` of the voxels that the points ``rows`` fall in (``inverse`` per point)."""
    return voxel_values[inverse[rows]]
