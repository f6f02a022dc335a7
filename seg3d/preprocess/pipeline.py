"""`prepare_inputs`: raw points → everything the encoder reads (one definition for all callers).

Training, export and serving call this function and nothing else to turn a cloud into encoder
inputs, so voxelization, point features and tables cannot differ between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from typing import cast

import torch

from seg3d.config import ModelConfig
from seg3d.points import check_points
from seg3d.preprocess.device import move_to
from seg3d.preprocess.parallel import parallel_map
from seg3d.preprocess.tables import SegmentPool, TapPairs, build_segment_pool, neighbour_table, tap_pairs
from seg3d.preprocess.voxelize import ScaleVoxels, unique_voxels, voxelize

__all__ = ["POINT_FEATURE_DIM", "ConvLevel", "EncoderInputs", "point_features", "prepare_inputs"]

#: Width of the per-point input of the embedding: xyz, intensity, xyz − voxel mean, xyz − voxel corner.
POINT_FEATURE_DIM = 10


@dataclass(frozen=True)
class ConvLevel:
    """Tables of one resolution at which sparse convolutions run.

    Attributes:
        neighbours: ``(V, 27)`` neighbour rows (pad ``V``), shared by every 3×3×3 conv of the block.
        context_inverse: ``(V,)`` row of each voxel's 2× context cell (coordinates // 2).
        context_pool: mean of voxels into context cells.
        tap_pairs: the per-tap pair lists of ``neighbours`` (`seg3d.preprocess.tables.tap_pairs`),
            computed on first use and then kept: the present-tap convolutions (the PyTorch fast
            path, the ``sparse`` exported graph) read them; the dense graph and the gather
            convolution never do, so they never pay for them. Not a field: `to` recomputes them on
            the new device when asked.
    """

    neighbours: torch.Tensor
    context_inverse: torch.Tensor
    context_pool: SegmentPool

    @cached_property
    def tap_pairs(self) -> TapPairs:
        return tap_pairs(self.neighbours)

    def to(self, device: torch.device | str) -> ConvLevel:
        return move_to(self, device)


@dataclass(frozen=True)
class EncoderInputs:
    """A prepared cloud (or batch of clouds): the encoder's whole input.

    Attributes:
        batch: ``(N,)`` int64 sample index of each point.
        batch_size: number of samples.
        features: ``(N, 10)`` float32 point features of the input embedding.
        voxels: voxelization per scale (keys, ``(b, z, y, x)`` coords, point inverse, counts).
        point_pool: mean of points into scale-1 voxels.
        conv: tables per convolution resolution.
        down_pools: ``(r_prev, r) → pool`` moving voxel values from ``r_prev`` to ``r`` as the mean
            over points; absent where ``r_prev == r`` (the move is the identity).
    """

    batch: torch.Tensor
    batch_size: int
    features: torch.Tensor
    voxels: dict[int, ScaleVoxels]
    point_pool: SegmentPool
    conv: dict[int, ConvLevel]
    down_pools: dict[tuple[int, int], SegmentPool]

    @property
    def num_points(self) -> int:
        return int(self.features.shape[0])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def to(self, device: torch.device | str) -> EncoderInputs:
        return move_to(self, device)


def point_features(points: torch.Tensor, scale1: ScaleVoxels, config: ModelConfig) -> torch.Tensor:
    """The 10-D input of the embedding, as 2DPASS builds it.

    ``[x, y, z, intensity] ‖ xyz − mean xyz of the point's scale-1 voxel ‖ xyz − voxel min corner``
    (2DPASS calls the corner "center"; it is the corner).
    """
    xyz = points[:, :3]
    sums = torch.zeros((scale1.num_voxels, 3), dtype=xyz.dtype, device=xyz.device)
    sums.index_add_(0, scale1.inverse, xyz)
    mean = sums / scale1.counts[:, None].to(xyz.dtype)
    lows = torch.tensor([lo for lo, _ in config.grid.point_range], dtype=xyz.dtype, device=xyz.device)
    interval = torch.tensor(config.grid.voxel_size(1), dtype=xyz.dtype, device=xyz.device)
    cell_xyz = scale1.coords[:, [3, 2, 1]].to(xyz.dtype)[scale1.inverse]
    corner = cell_xyz * interval + lows
    return torch.cat([points[:, :4], xyz - mean[scale1.inverse], xyz - corner], dim=1)


def _context_level(voxels: ScaleVoxels, width: int) -> tuple[torch.Tensor, SegmentPool]:
    """2× context cells of the point branch: voxels grouped by ``coords // 2``."""
    nx, ny, nz = voxels.cells
    half = ((nx + 1) // 2, (ny + 1) // 2, (nz + 1) // 2)
    coords = voxels.coords.to(torch.int64)
    b, z, y, x = coords[:, 0], coords[:, 1] // 2, coords[:, 2] // 2, coords[:, 3] // 2
    keys = ((b * half[0] + x) * half[1] + y) * half[2] + z
    cells, order = unique_voxels(keys, voxels.scale * 2, half)
    pool = build_segment_pool(
        order, cells.inverse[order], voxels.num_voxels, cells.num_voxels, width, presorted=True
    )
    return cells.inverse, pool


def _down_pool(fine: ScaleVoxels, coarse: ScaleVoxels, width: int) -> SegmentPool:
    """Mean over points from ``fine`` voxels into ``coarse`` voxels as (child, parent) fragments."""
    # Keyed parent-major, so the distinct pairs come out sorted by their target.
    pairs = coarse.inverse * fine.num_voxels + fine.inverse
    unique_pairs, pair_counts = torch.unique(pairs, sorted=True, return_counts=True)
    parent = torch.div(unique_pairs, fine.num_voxels, rounding_mode="floor")
    child = unique_pairs - parent * fine.num_voxels
    return build_segment_pool(
        child,
        parent,
        fine.num_voxels,
        coarse.num_voxels,
        width,
        weight=pair_counts.to(torch.float64),
        presorted=True,
    )


@contextmanager
def _stage(timings: dict[str, float] | None, name: str, device: torch.device) -> Iterator[None]:
    if timings is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = timings.get(name, 0.0) + (time.perf_counter() - start) * 1e3


def prepare_inputs(
    points: torch.Tensor,
    config: ModelConfig,
    batch: torch.Tensor | None = None,
    timings: dict[str, float] | None = None,
) -> EncoderInputs:
    """Voxelize a cloud and build every table the encoder needs.

    Args:
        points: ``(N, D >= 4)`` float, columns ``x, y, z, intensity`` in the model's intensity scale.
            Points outside the grid are kept (clamped into border cells); crop beforehand with
            `seg3d.preprocess.crop_mask` where 2DPASS would.
        config: the model config (grid, scales, table widths).
        batch: ``(N,)`` sample index for a batch of clouds; default one cloud.
        timings: if given, receives milliseconds per stage (``check``, ``voxelize``, ``features``,
            ``tables``: neighbour and pooling tables); on CUDA each stage is synchronised.

    Raises:
        ValueError: malformed points or NaN/Inf coordinates (see `check_points`).
    """
    device = points.device
    with _stage(timings, "check", device):
        points = check_points(points)[:, :4]
        n = points.shape[0]
        if batch is None:
            batch = torch.zeros(n, dtype=torch.int64, device=device)
        elif batch.shape != (n,):
            raise ValueError(f"batch must have shape ({n},), got {tuple(batch.shape)}")
        batch = batch.to(device=device, dtype=torch.int64)
        batch_size = int(batch.max()) + 1 if n else 1

    enc = config.encoder
    widths = config.tables
    with _stage(timings, "voxelize", device):
        voxels, orders = voxelize(points[:, :3], batch, config.grid, enc.all_scales)
    scale1 = voxels[1]
    with _stage(timings, "features", device):
        features = point_features(points, scale1, config)
    conv_scales = sorted(set(enc.conv_scales))
    moves = [(r_prev, r) for r_prev, r in zip(enc.conv_scales, enc.scale_list, strict=True) if r_prev != r]

    def conv_level(scale: int) -> ConvLevel:
        level = voxels[scale]
        context_inverse, context_pool = _context_level(level, widths.voxel_pool_width)
        return ConvLevel(neighbour_table(level.coords, level.cells), context_inverse, context_pool)

    def down_pool(move: tuple[int, int]) -> SegmentPool:
        return _down_pool(voxels[move[0]], voxels[move[1]], widths.voxel_pool_width)

    def point_pool_table() -> SegmentPool:
        order = orders[1]
        return build_segment_pool(
            order, scale1.inverse[order], n, scale1.num_voxels, widths.point_pool_width, presorted=True
        )

    # Independent jobs, largest first so that the workers finish together.
    jobs: list[tuple[tuple[object, ...], Callable[[], object]]] = [
        (("conv", conv_scales[0]), partial(conv_level, conv_scales[0])),
        (("point_pool",), point_pool_table),
        *[(("down", move), partial(down_pool, move)) for move in moves],
        *[(("conv", scale), partial(conv_level, scale)) for scale in conv_scales[1:]],
    ]
    with _stage(timings, "tables", device):
        done = dict(
            zip([key for key, _ in jobs], parallel_map(lambda job: job[1](), jobs, device), strict=True)
        )
    conv = {scale: cast(ConvLevel, done[("conv", scale)]) for scale in conv_scales}
    point_pool = cast(SegmentPool, done[("point_pool",)])
    down_pools = {move: cast(SegmentPool, done[("down", move)]) for move in moves}
    return EncoderInputs(batch, batch_size, features, voxels, point_pool, conv, down_pools)
