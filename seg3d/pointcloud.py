"""Validation and unit conversion of raw point arrays, before any preprocessing."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["check_points", "to_model_intensity"]

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
