"""Validation and unit conversion of raw point arrays, before any preprocessing."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = ["check_points", "fill_outside_crop", "to_model_intensity"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def check_points(points: torch.Tensor, min_columns: int = 4) -> torch.Tensor:
    """Check a point array and return it as contiguous float32.

    Args:
        points: ``(N, D)`` tensor with ``D >= min_columns``; columns ``x, y, z, intensity, ...``.
        min_columns: how many leading columns the caller reads.

    Raises:
        ValueError: wrong rank or too few columns, or any non-finite value in the first
            ``min_columns`` columns (the message gives how many rows are bad and the first few).
    """
    if points.ndim != 2:
        raise ValueError(f"points must be a 2-D (N, D) array, got shape {tuple(points.shape)}")
    if points.shape[1] < min_columns:
        raise ValueError(f"points need at least {min_columns} columns, got {points.shape[1]}")
    if not points.is_floating_point():
        points = points.float()
    used = points[:, :min_columns]
    finite = torch.isfinite(used).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        first = ", ".join(str(int(i)) for i in bad[:5])
        raise ValueError(
            f"{bad.numel()} of {points.shape[0]} point rows contain NaN or Inf (first bad rows: {first})"
        )
    return points.to(torch.float32).contiguous()


def to_model_intensity(intensity: ArrayT, source_max: float, model_max: float) -> ArrayT:
    """Rescale intensity from a sensor's scale (maximum ``source_max``) to the model's scale.

    nuScenes stores raw intensity 0–255 and 2DPASS feeds it unnormalised, while KITTI remission is
    0–1: a KITTI scan served to a nuScenes model is multiplied by 255 here, once, for everyone.
    """
    if source_max <= 0 or model_max <= 0:
        raise ValueError("intensity maxima must be positive")
    if source_max == model_max:
        return intensity
    return intensity * (model_max / source_max)


def fill_outside_crop(xyz: np.ndarray, inside: np.ndarray, inner_labels: np.ndarray) -> np.ndarray:
    """One label per point: ``inner_labels`` for the in-crop points (in order), and for each point
    outside the crop the label of its nearest in-crop point (the ``nearest_in_crop`` policy that the
    service and full-scan evaluation share, `architecture.md` §9 row 15).

    Raises:
        ValueError: ``inner_labels`` does not have one label per in-crop point, or points lie
            outside the crop while none lies inside.
    """
    inside = np.asarray(inside, dtype=bool)
    if inner_labels.shape[0] != int(inside.sum()):
        raise ValueError(f"{inner_labels.shape[0]} labels for {int(inside.sum())} in-crop points")
    labels = np.empty(xyz.shape[0], dtype=inner_labels.dtype)
    labels[inside] = inner_labels
    if not inside.all():
        if not inside.any():
            raise ValueError("no point inside the crop to take labels from")
        _, nearest = cKDTree(xyz[inside, :3]).query(xyz[~inside, :3], k=1)
        labels[~inside] = inner_labels[nearest]
    return labels
