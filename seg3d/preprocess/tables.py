"""Neighbour and pooling tables: the data-dependent part of the encoder, computed outside it.

With these tables the whole encoder is dense tensor algebra (Gather, MatMul, ReduceSum), which is
what lets it run as a plugin-free ONNX/TensorRT graph (`docs/export.md` §2).

Neighbour table
    ``(V, 27)`` int64 per convolution scale. Column ``t = k0*9 + k1*3 + k2`` holds the row of the
    voxel at ``(z, y, x) + (k0 - 1, k1 - 1, k2 - 1)``, or ``V`` when that voxel is absent, so that a
    gather from the features with one zero row appended yields exactly spconv's submanifold input.

Segment pool
    A weighted mean of source rows into target rows as fixed-width tables (see `SegmentPool`).
    Used for points → scale-1 voxels (mean over points), for voxel → coarser-voxel moves (mean over
    points, expressed as a count-weighted mean over (child, parent) fragments, which is exact even
    where coarse cells do not nest the fine ones) and for the point branch's 2× context cells
    (mean over child voxels).

Tap pairs
    For each non-centre tap of a neighbour table, the voxels that have that neighbour and which
    voxel it is (`tap_pairs`): the present-tap form of a submanifold convolution (the PyTorch CPU
    fast path, and the ``sparse`` exported graph). Computed once per resolution, shared by every
    convolution at that resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import KERNEL_TAPS
from seg3d.preprocess.device import move_to

__all__ = [
    "SegmentPool",
    "TapPairs",
    "build_segment_pool",
    "kernel_offsets",
    "neighbour_table",
    "pool_dtypes",
    "tap_pairs",
]


def pool_dtypes(x: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """``(compute, result)`` dtypes of a mean over rows of ``x``.

    A mean is always accumulated in at least float32: bf16 has 8 significant bits, so bf16 weights
    (1/3 is off by 0.2 %) and bf16 sums over hundreds of rows drift by ~0.5-1 %. Under autocast the
    result stays float32 (the next Linear/MatMul casts it to the autocast dtype itself, the additions
    promote); outside autocast it is ``x.dtype``, rounded once from the float32 mean.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    device_type = x.device.type
    autocast = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    return compute, compute if autocast else x.dtype


def kernel_offsets(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(27, 3)`` int64 offsets ``(dz, dy, dx)`` in spconv's flattened 3×3×3 tap order."""
    r = torch.arange(-1, 2, device=device)
    dz, dy, dx = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([dz.flatten(), dy.flatten(), dx.flatten()], dim=1)


def neighbour_table(coords: torch.Tensor, cells: tuple[int, int, int]) -> torch.Tensor:
    """``(V, 27)`` neighbour rows of voxels with ``coords`` ``(b, z, y, x)`` sorted by key.

    A neighbour outside the grid or not occupied gets the pad index ``V``.
    """
    num = coords.shape[0]
    device = coords.device
    if num == 0:
        return torch.empty((0, KERNEL_TAPS), dtype=torch.int64, device=device)
    nx, ny, nz = cells
    c = coords.to(torch.int64)
    # Keys on a grid padded by one cell per side: a step off the grid lands on a key no voxel has,
    # instead of aliasing into the next row or sample, so no per-axis range check is needed.
    # The padding keeps the (b, x, y, z) order, so these keys are as sorted as the voxels.
    keys = ((c[:, 0] * (nx + 2) + c[:, 3] + 1) * (ny + 2) + c[:, 2] + 1) * (nz + 2) + c[:, 1] + 1
    half = KERNEL_TAPS // 2  # taps 0..12; tap 26 - t is the opposite offset of tap t
    offsets = kernel_offsets(device)[:half]
    delta = offsets[:, 2] * ((ny + 2) * (nz + 2)) + offsets[:, 1] * (nz + 2) + offsets[:, 0]
    wanted = keys[:, None] + delta[None, :]
    position = torch.searchsorted(keys, wanted).clamp_(max=num - 1)
    source, tap = torch.nonzero(keys[position] == wanted, as_tuple=True)
    found = position[source, tap]
    table = torch.full((num, KERNEL_TAPS), num, dtype=torch.int64, device=device)
    # Neighbourhood is symmetric: if voxel j sits at i + d, then i sits at j - d.
    table[source, tap] = found
    table[found, KERNEL_TAPS - 1 - tap] = source
    table[:, half] = torch.arange(num, device=device)
    return table


@dataclass(frozen=True)
class TapPairs:
    """For each non-centre tap, the voxels that have that neighbour (``rows``) and which one it is
    (``sources``): ``out[rows[i]] += x[sources[i]] @ W[taps[i]]`` is the tap's whole contribution."""

    taps: tuple[int, ...]
    rows: tuple[torch.Tensor, ...]
    sources: tuple[torch.Tensor, ...]


def tap_pairs(neighbours: torch.Tensor) -> TapPairs:
    """Pairs of a ``(V, 27)`` neighbour table (pad ``V``), computed once per resolution and shared by
    its convolutions.

    Tap ``26 - t`` is tap ``t`` seen from the other voxel, so half the taps are searched and the other
    half are the same pairs swapped: the taps come in the order ``0, 26, 1, 25, …, 12, 14``, and taps
    ``t`` and ``26 - t`` always have the same number of pairs.
    """
    num = neighbours.shape[0]
    centre = neighbours.shape[1] // 2
    taps: list[int] = []
    rows: list[torch.Tensor] = []
    sources: list[torch.Tensor] = []
    for t in range(centre):
        r = torch.nonzero(neighbours[:, t] < num).flatten()
        src = neighbours[r, t]
        taps += [t, neighbours.shape[1] - 1 - t]
        rows += [r, src]
        sources += [src, r]
    return TapPairs(tuple(taps), tuple(rows), tuple(sources))


@dataclass(frozen=True)
class SegmentPool:
    """Weighted mean of source rows into target rows, as Gather + Mul + ReduceSum.

    ``index`` ``(F, M)`` lists source rows (pad = ``num_sources``, which reads an appended zero row)
    and ``weight`` ``(F, M)`` their normalised weights (0 on pads). Summing a row gives a *fragment*.
    Rows ``0 .. T-1`` are the first fragments of targets ``0 .. T-1``; a target with more than ``M``
    sources continues in extra rows ``T ..`` and is listed in ``overflow_targets`` ``(H,)`` with the
    rows to add up in ``overflow_index`` ``(H, K)`` (pad = ``F``). Any width ``M`` is exact; ``M`` only
    trades padding against overflow rows. These tables are the export form (`apply_tables`).

    The same mean is also kept entry by entry (``entry_source``, ``entry_target``, ``entry_weight``,
    one per source entry), which `apply` uses in PyTorch: a weighted ``index_add`` reads each source
    row once instead of a padded ``(F, M, C)`` gather, 5–15× faster on CPU.
    """

    index: torch.Tensor
    weight: torch.Tensor
    num_sources: int
    num_targets: int
    overflow_targets: torch.Tensor
    overflow_index: torch.Tensor
    entry_source: torch.Tensor
    entry_target: torch.Tensor
    entry_weight: torch.Tensor

    @property
    def width(self) -> int:
        return int(self.index.shape[1])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(num_sources, C)`` into ``(num_targets, C)`` (weighted ``index_add``).

        Computed in float32 or wider whatever ``x`` is; the result dtype is `pool_dtypes`'s.
        """
        if x.shape[0] != self.num_sources:
            raise ValueError(f"pool expects {self.num_sources} source rows, got {x.shape[0]}")
        compute, result = pool_dtypes(x)
        weighted = x[self.entry_source].to(compute) * self.entry_weight.to(compute)[:, None]
        out = weighted.new_zeros((self.num_targets, x.shape[1])).index_add_(0, self.entry_target, weighted)
        return out.to(result)

    def apply_tables(self, x: torch.Tensor) -> torch.Tensor:
        """The same mean through the fixed-width tables, as the exported graph computes it (the
        graph, too, pools in float32 whatever its precision)."""
        if x.shape[0] != self.num_sources:
            raise ValueError(f"pool expects {self.num_sources} source rows, got {x.shape[0]}")
        compute, result = pool_dtypes(x)
        x = x.to(compute)
        padded = torch.cat([x, x.new_zeros((1, x.shape[1]))])
        fragments = (padded[self.index] * self.weight.to(compute)[:, :, None]).sum(dim=1, dtype=compute)
        out = fragments[: self.num_targets]
        if self.overflow_targets.numel():
            padded_fragments = torch.cat([fragments, fragments.new_zeros((1, x.shape[1]))])
            complete = padded_fragments[self.overflow_index].sum(dim=1, dtype=compute)
            out = out.index_copy(0, self.overflow_targets, complete)
        return out.to(result)

    def to(self, device: torch.device | str) -> SegmentPool:
        return move_to(self, device)


def build_segment_pool(
    source_row: torch.Tensor,
    target: torch.Tensor,
    num_sources: int,
    num_targets: int,
    width: int,
    weight: torch.Tensor | None = None,
    presorted: bool = False,
) -> SegmentPool:
    """Tables for ``out[t] = Σ_i w_i x[source_row_i] / Σ_i w_i`` over the entries ``i`` with target ``t``.

    Args:
        source_row: ``(S,)`` int64, the row of ``x`` each entry reads.
        target: ``(S,)`` int64 in ``[0, num_targets)``, the target of each entry.
        num_sources: number of rows of ``x``.
        num_targets: number of output rows (a target with no entry pools to zeros).
        width: table width ``M``.
        weight: ``(S,)`` non-negative weights, default 1 (an unweighted mean).
        presorted: the entries are already sorted by ``target`` (skips a sort).
    """
    device = target.device
    entries = target.shape[0]
    if weight is None:
        weight = torch.ones(entries, dtype=torch.float64, device=device)
    weight = weight.to(torch.float64)
    if presorted:
        order = torch.arange(entries, device=device)
        target_sorted = target
    else:
        order = torch.argsort(target, stable=True)
        target_sorted = target[order]
    counts = torch.bincount(target_sorted, minlength=num_targets)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(entries, device=device) - starts[target_sorted]
    fragment_of_target = torch.div(rank, width, rounding_mode="floor")
    column = rank - fragment_of_target * width

    fragments_per_target = torch.div(counts + width - 1, width, rounding_mode="floor")
    extra = (fragments_per_target - 1).clamp_(min=0)
    extra_start = torch.cumsum(extra, 0) - extra
    num_rows = num_targets + int(extra.sum())
    row = torch.where(
        fragment_of_target == 0,
        target_sorted,
        num_targets + extra_start[target_sorted] + fragment_of_target - 1,
    )

    totals = torch.zeros(num_targets, dtype=torch.float64, device=device).index_add_(0, target, weight)
    normalised = weight[order] / totals[target_sorted].clamp(min=torch.finfo(torch.float64).tiny)

    index = torch.full((num_rows, width), num_sources, dtype=torch.int64, device=device)
    table_weight = torch.zeros((num_rows, width), dtype=torch.float32, device=device)
    index[row, column] = source_row[order]
    entry_weight = normalised.to(torch.float32)
    table_weight[row, column] = entry_weight

    overflow_targets = torch.nonzero(extra > 0).flatten()
    if overflow_targets.numel():
        depth = int(fragments_per_target.max())
        j = torch.arange(depth, device=device)[None, :]
        t = overflow_targets[:, None]
        rows = torch.where(j == 0, t, num_targets + extra_start[t] + j - 1)
        overflow_index = torch.where(j < fragments_per_target[t], rows, torch.full_like(rows, num_rows))
    else:
        overflow_index = torch.empty((0, 1), dtype=torch.int64, device=device)
    return SegmentPool(
        index,
        table_weight,
        num_sources,
        num_targets,
        overflow_targets,
        overflow_index,
        entry_source=source_row[order],
        entry_target=target_sorted,
        entry_weight=entry_weight,
    )
