"""The 2DPASS 3D augmentations (`architecture.md` §1.3, step 6), seedable.

Applied after the crop, to the coordinates the network sees: yaw rotation θ ~ U[0°, 360°), a flip
of x, y, both or neither, a scale s ~ U[0.95, 1.05] of x and y, and one translation per cloud with
each axis ~ N(0, 0.1²). Points pushed off the grid by the rotation are clamped by voxelization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Augment3D"]


@dataclass(frozen=True)
class Augment3D:
    rotate: bool = True
    flip: bool = True
    scale_range: tuple[float, float] = (0.95, 1.05)
    translate_std: float = 0.1

    def __call__(self, points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A transformed copy of ``(N, ≥3)`` points; columns beyond xyz are kept as they are."""
        out = points.clone()
        xy = out[:, :2]
        if self.rotate:
            theta = float(torch.rand((), generator=generator)) * 2 * math.pi
            c, s = math.cos(theta), math.sin(theta)
            # row vectors right-multiplied by [[c, s], [-s, c]], as 2DPASS does
            xy = xy @ torch.tensor([[c, s], [-s, c]], dtype=out.dtype)
        if self.flip:
            kind = int(torch.randint(0, 4, (), generator=generator))
            if kind in (1, 3):
                xy[:, 0] = -xy[:, 0]
            if kind in (2, 3):
                xy[:, 1] = -xy[:, 1]
        low, high = self.scale_range
        xy = xy * (low + (high - low) * float(torch.rand((), generator=generator)))
        out[:, :2] = xy
        if self.translate_std > 0:
            out[:, :3] += torch.randn(3, generator=generator, dtype=out.dtype) * self.translate_std
        return out
