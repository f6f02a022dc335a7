from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seg3d.config import GridConfig
from seg3d.preprocess import build_segment_pool, kernel_offsets, neighbour_table, prepare_inputs, voxelize

SMALL = GridConfig(point_range=((0.0, 1.0), (0.0, 1.0), (0.0, 1.0)), spatial_shape=(6, 5, 4))


def _brute_force_neighbours(coords: torch.Tensor) -> torch.Tensor:
    lookup = {tuple(c): i for i, c in enumerate(coords.tolist())}
    table = torch.full((len(coords), 27), len(coords), dtype=torch.int64)
    for i, (b, z, y, x) in enumerate(coords.tolist()):
        for t, (dz, dy, dx) in enumerate(kernel_offsets().tolist()):
            j = lookup.get((b, z + dz, y + dy, x + dx))
            if j is not None:
                table[i, t] = j
    return table


def test_kernel_offsets_follow_spconv_flattening() -> None:
    offsets = kernel_offsets()
    # tap t = k0*9 + k1*3 + k2 reads p + (k - 1); tap 26 - t is the opposite offset
    assert offsets[0].tolist() == [-1, -1, -1]
    assert offsets[13].tolist() == [0, 0, 0]
    assert offsets[5].tolist() == [-1, 0, 1]
    assert torch.equal(offsets.flip(0), -offsets)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 120),
    batches=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_neighbour_table_equals_brute_force(n: int, batches: int, seed: int) -> None:
    # A tiny grid, so that many voxels touch its borders, where a linear key would alias.
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand((n, 3), generator=g) * 1.2 - 0.1  # some points outside: clamped to the border
    batch = torch.randint(0, batches, (n,), generator=g)
    vox = voxelize(xyz, batch, SMALL, (1,))[0][1]
    assert torch.equal(neighbour_table(vox.coords, vox.cells), _brute_force_neighbours(vox.coords))


def _naive_weighted_mean(x, source_row, target, weight, num_targets):
    out = torch.zeros((num_targets, x.shape[1]), dtype=torch.float64)
    total = torch.zeros(num_targets, dtype=torch.float64)
    for s, t, w in zip(source_row.tolist(), target.tolist(), weight.tolist(), strict=True):
        out[t] += w * x[s].double()
        total[t] += w
    return out / total.clamp(min=1e-300)[:, None]


@settings(max_examples=60, deadline=None)
@given(
    entries=st.integers(0, 200),
    num_sources=st.integers(1, 40),
    num_targets=st.integers(1, 12),
    width=st.integers(1, 9),
    weighted=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_segment_pool_is_exact_weighted_mean(
    entries, num_sources, num_targets, width, weighted, seed
) -> None:
    g = torch.Generator().manual_seed(seed)
    source_row = torch.randint(0, num_sources, (entries,), generator=g)
    target = torch.randint(0, num_targets, (entries,), generator=g)
    weight = (
        torch.randint(1, 20, (entries,), generator=g).double() if weighted else torch.ones(entries).double()
    )
    x = torch.randn((num_sources, 3), generator=g)
    pool = build_segment_pool(
        source_row, target, num_sources, num_targets, width, weight if weighted else None
    )
    assert pool.index.shape[1] == width
    expected = _naive_weighted_mean(x, source_row, target, weight, num_targets)
    torch.testing.assert_close(pool.apply(x).double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pool.apply_tables(x).double(), expected, atol=1e-5, rtol=1e-5)
    fan_in = torch.bincount(target, minlength=num_targets)
    assert pool.overflow_targets.tolist() == torch.nonzero(fan_in > width).flatten().tolist()


def test_segment_pool_rejects_wrong_source_count() -> None:
    pool = build_segment_pool(torch.tensor([0, 1]), torch.tensor([0, 0]), 2, 1, 4)
    for method in (pool.apply, pool.apply_tables):
        with pytest.raises(ValueError, match="expects 2 source rows"):
            method(torch.zeros((3, 2)))


def test_pools_on_a_real_sweep_equal_scatter_means(nuscenes_scans, full_config) -> None:
    """The tables reproduce 2DPASS's point-level scatter-means exactly on a real sweep."""
    points = nuscenes_scans[0].points
    inputs = prepare_inputs(points, full_config)
    v1, v2 = inputs.voxels[1], inputs.voxels[2]
    # The ego-vehicle returns pile up in a few voxels: the overflow path is exercised for real.
    assert int(v1.counts.max()) > full_config.tables.point_pool_width
    assert inputs.point_pool.overflow_targets.numel() > 0

    # References in float64: a float32 sum over the ~1,500 points of one voxel is itself off by 1e-5.
    values = torch.randn((points.shape[0], 5))
    expected = torch.zeros((v1.num_voxels, 5), dtype=torch.float64).index_add_(0, v1.inverse, values.double())
    expected /= v1.counts[:, None]
    torch.testing.assert_close(inputs.point_pool.apply(values).double(), expected, atol=2e-6, rtol=2e-6)
    torch.testing.assert_close(
        inputs.point_pool.apply_tables(values).double(), expected, atol=2e-6, rtol=2e-6
    )

    # Voxel values broadcast to points, then averaged over points into the coarser voxels.
    voxel_values = torch.randn((v1.num_voxels, 5))
    per_point = voxel_values[v1.inverse].double()
    expected = torch.zeros((v2.num_voxels, 5), dtype=torch.float64).index_add_(0, v2.inverse, per_point)
    expected /= v2.counts[:, None]
    got = inputs.down_pools[(1, 2)].apply(voxel_values).double()
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=2e-6)

    # Context cells: mean over the child voxels of each (coords // 2) cell.
    level = inputs.conv[1]
    halved = torch.cat([v1.coords[:, :1], v1.coords[:, 1:] // 2], dim=1)
    _, cell = torch.unique(halved, dim=0, return_inverse=True)
    ones = torch.ones(v1.num_voxels)
    n_cells = int(cell.max()) + 1
    expected = (
        torch.zeros((n_cells, 5)).index_add_(0, cell, voxel_values)
        / torch.zeros(n_cells).index_add_(0, cell, ones)[:, None]
    )
    got = level.context_pool.apply(voxel_values)[level.context_inverse]
    torch.testing.assert_close(got, expected[cell], atol=1e-5, rtol=1e-5)
