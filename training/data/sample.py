"""One LiDAR sample as every dataset returns it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LidarSample"]


@dataclass(frozen=True)
class LidarSample:
    """A cloud ready for the encoder.

    Attributes:
        name: where it came from (sequence/frame or sample token), for logs and outputs.
        points: ``(N, 4)`` float32 ``x, y, z, intensity`` in the model's intensity scale.
        labels: ``(N,)`` int64 training ids (0 = ignore), or None for unlabelled data.
        indices: ``(N,)`` int64 row of each point in the original file (crop and dropout keep a
            mapping back, for full-scan evaluation and submissions).
        num_file_points: how many points the file holds.
    """

    name: str
    points: torch.Tensor
    labels: torch.Tensor | None
    indices: torch.Tensor
    num_file_points: int
