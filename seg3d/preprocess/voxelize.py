"""Crop and multi-scale voxelization on the 2DPASS grid.

A scale-``s`` cell index is computed directly from the point coordinates, as 2DPASS does:
``idx = floor(n_s * (p - min) / (max - min))`` with ``n_s = ceil(S / s)``. The product and the division
happen in float32 in that order, so the indices equal the upstream ones bit for bit. Indices outside
``[0, n_s - 1]`` (points beyond the range, e.g. after augmentation) are clamped to the border cell:
no point is ever dropped here.

Voxels of one scale are the distinct int64 keys ``((b * nx + ix) * ny + iy) * nz + iz``, sorted
ascending, which is the row order of 2DPASS's ``unique(dim=0)`` over ``(b, x, y, z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import GridConfig
from seg3d.preprocess.device import move_to
from seg3d.preprocess.parallel import parallel_map

__all__ = ["Grouping", "ScaleVoxels", "crop_mask", "group_keys", "quantize", "voxelize"]


@dataclass(frozen=True)
class ScaleVoxels:
    """The voxels of one scale.

    Attributes:
        scale: the scale ``s`` (1 = finest).
        cells: cells per axis ``(nx, ny, nz)`` at this scale.
        keys: ``(V,)`` int64, sorted unique voxel keys.
        coords: ``(V, 4)`` int32 ``(b, z, y, x)``, the index layout spconv expects.
        inverse: ``(N,)`` int64, voxel row of every point.
        counts: ``(V,)`` int64, points per voxel.
    """

    scale: int
    cells: tuple[int, int, int]
    keys: torch.Tensor
    coords: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor

    @property
    def num_voxels(self) -> int:
        return int(self.keys.shape[0])

    @property
    def spatial_shape_zyx(self) -> list[int]:
        """Spatial shape in spconv's ``(z, y, x)`` order."""
        nx, ny, nz = self.cells
        return [nz, ny, nx]

    def to(self, device: torch.device | str) -> ScaleVoxels:
        return move_to(self, device)


def crop_mask(xyz: torch.Tensor, grid: GridConfig) -> torch.Tensor:
    """Points strictly inside the crop range (2DPASS uses strict inequalities). ``(N,)`` bool."""
    mask = torch.ones(xyz.shape[0], dtype=torch.bool, device=xyz.device)
    for axis, (lo, hi) in enumerate(grid.point_range):
        mask &= (xyz[:, axis] > lo) & (xyz[:, axis] < hi)
    return mask


def quantize(xyz: torch.Tensor, grid: GridConfig, scale: int) -> torch.Tensor:
    """Cell index ``(N, 3)`` int64 ``(ix, iy, iz)`` of each point at ``scale``, floored and clamped."""
    cells = grid.cells(scale)
    columns = []
    for axis, ((lo, hi), n) in enumerate(zip(grid.point_range, cells, strict=True)):
        # Same float32 expression and evaluation order as 2DPASS's sparse_quantize.
        idx = torch.floor(float(n) * (xyz[:, axis] - lo) / (hi - lo)).to(torch.int64)
        columns.append(idx.clamp_(0, n - 1))
    return torch.stack(columns, dim=1)


def voxel_keys(cell_index: torch.Tensor, batch: torch.Tensor, cells: tuple[int, int, int]) -> torch.Tensor:
    """Linear int64 key of ``(b, ix, iy, iz)``; ascending keys sort by b, then x, then y, then z."""
    nx, ny, nz = cells
    return ((batch * nx + cell_index[:, 0]) * ny + cell_index[:, 1]) * nz + cell_index[:, 2]


def decode_keys(keys: torch.Tensor, cells: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of `voxel_keys`: ``(V, 4)`` int64 ``(b, z, y, x)``."""
    nx, ny, nz = cells
    z = keys % nz
    rest = keys // nz
    y = rest % ny
    rest = rest // ny
    x = rest % nx
    b = rest // nx
    return torch.stack([b, z, y, x], dim=1)


@dataclass(frozen=True)
class Grouping:
    """Distinct keys of an array: ``unique[inverse] == keys``; ``order`` sorts ``keys`` stably."""

    unique: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    order: torch.Tensor


def group_keys(keys: torch.Tensor) -> Grouping:
    """`torch.unique` with inverse and counts, plus the sorting permutation it computes anyway."""
    sorted_keys, order = torch.sort(keys, stable=True)
    if keys.numel() == 0:
        return Grouping(sorted_keys, order.clone(), order.clone(), order)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_of_sorted = torch.cumsum(first, 0) - 1
    inverse = torch.empty_like(group_of_sorted)
    inverse[order] = group_of_sorted
    unique = sorted_keys[first]
    starts = torch.nonzero(first).flatten()
    ends = torch.cat([starts[1:], starts.new_tensor([keys.shape[0]])])
    return Grouping(unique, inverse, ends - starts, order)


def unique_voxels(
    keys: torch.Tensor, scale: int, cells: tuple[int, int, int]
) -> tuple[ScaleVoxels, torch.Tensor]:
    """Group points by key into `ScaleVoxels`; also return the permutation sorting points by voxel."""
    g = group_keys(keys)
    coords = decode_keys(g.unique, cells).to(torch.int32)
    return ScaleVoxels(scale, cells, g.unique, coords, g.inverse, g.counts), g.order


def voxelize(
    xyz: torch.Tensor, batch: torch.Tensor, grid: GridConfig, scales: tuple[int, ...]
) -> tuple[dict[int, ScaleVoxels], dict[int, torch.Tensor]]:
    """Voxelize ``(N, 3)`` points with batch index ``(N,)`` at every scale in ``scales``.

    Returns the voxels per scale and, per scale, the permutation that sorts the points by voxel.
    """

    def one_scale(scale: int) -> tuple[ScaleVoxels, torch.Tensor]:
        cells = grid.cells(scale)
        return unique_voxels(voxel_keys(quantize(xyz, grid, scale), batch, cells), scale, cells)

    results = parallel_map(one_scale, list(scales), xyz.device)
    voxels = {scale: r[0] for scale, r in zip(scales, results, strict=True)}
    orders = {scale: r[1] for scale, r in zip(scales, results, strict=True)}
    return voxels, orders
