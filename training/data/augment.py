"""The 2DPASS point dropout and 3D augmentations (`docs/architecture.md` §1.3, steps 4 and 6), seedable.

Applied after the crop, to the coordinates the network sees: yaw rotation θ ~ U[0°, 360°), a flip
of x, y, both or neither, a scale s ~ U[0.95, 1.05] of x and y, and one translation per cloud with
each axis ~ N(0, 0.1²). Points pushed off the grid by the rotation are clamped by voxelization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Augment3D", "IntensityAugment", "PointDropout"]


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


@dataclass(frozen=True)
class PointDropout:
    """2DPASS's point dropout: draw ``r ~ U[0, max_ratio)``, then overwrite each point with
    probability ``r`` by a copy of point 0. The count stays the same, so every per-point array
    (labels, file rows) is indexed with the returned ``source`` rows."""

    max_ratio: float = 0.2

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count,)`` int64: the row each output point copies (itself, or 0 when dropped)."""
        source = torch.arange(count)
        if count == 0 or self.max_ratio <= 0:
            return source
        ratio = float(torch.rand((), generator=generator)) * self.max_ratio
        dropped = torch.rand(count, generator=generator) < ratio
        return source.masked_fill_(dropped, 0)


@dataclass(frozen=True)
class IntensityAugment:
    """Per-cloud intensity randomisation, so that a model cannot key on one sensor's intensities.

    With probability ``drop`` the cloud's intensity column becomes 0 (a sensor without intensity).
    Otherwise, when ``class_level`` is set, each class's points are scaled together so that their
    mean lands on a level of their own, log-uniform in ``class_level`` (fractions of
    ``intensity_max``): another world's materials on another sensor. Then the whole cloud is
    multiplied by one ``s ~ U[scale_range]`` (another calibration) and clipped to
    ``[0, intensity_max]``. The synthetic generator gives each material its own intensity, which a
    model learns as a class cue that real sensors do not share (SemanticKITTI's road is brighter than
    its cars; the generator's is darker): on real scans its labels follow the intensity more than the
    shape (`training.realscan`, docs/real-scans.md). The class levels leave no class an intensity of
    its own and keep the contrasts inside a class (paint on a road, a car's incidence shading).
    """

    drop: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    intensity_max: float = 255.0
    class_level: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self.drop > 0 or self.scale_range != (1.0, 1.0) or self.class_level is not None

    def __call__(
        self, points: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A copy of ``(N, ≥4)`` points with column 3 randomised: two draws from ``generator``, and one
        per class index up to ``labels.max()`` when ``class_level`` is set (it needs ``labels``)."""
        out = points.clone()
        dropped = float(torch.rand((), generator=generator)) < self.drop
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        intensity = out[:, 3] * scale
        if self.class_level is not None:
            if labels is None:
                raise ValueError("per-class intensity levels need the cloud's labels")
            count = int(labels.max()) + 1 if labels.numel() else 0
            lo, hi = (math.log(v * self.intensity_max) for v in self.class_level)
            level = torch.exp(lo + (hi - lo) * torch.rand(count, generator=generator, dtype=out.dtype))
            index = labels.long()
            total = torch.zeros(count, dtype=out.dtype).index_add_(0, index, out[:, 3])
            mean = total / torch.bincount(index, minlength=count).clamp_(min=1).to(out.dtype)
            # A class that returned no intensity at all stays dark.
            factor = torch.where(mean > 0, level / mean.clamp(min=1e-12), torch.zeros_like(mean))
            intensity = intensity * factor[index]
        out[:, 3] = 0.0 if dropped else intensity.clamp_(0.0, self.intensity_max)
        return out
