from __future__ import annotations

import math

import pytest
import torch

from seg3d.config import GridConfig
from seg3d.preprocess import crop_mask, quantize, voxelize
from seg3d.preprocess.voxelize import decode_keys, group_keys

GRID = GridConfig(point_range=((-50.0, 50.0), (-50.0, 50.0), (-4.0, 3.0)), spatial_shape=(1000, 1000, 70))


def _random_points(n: int, spread: float = 45.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand((n, 3), generator=g) * 2 - 1) * torch.tensor([spread, spread, 3.4]) + torch.tensor(
        [0.0, 0.0, -0.5]
    )
    return xyz


@pytest.mark.parametrize("scale", [1, 2, 4, 8, 16])
def test_quantize_matches_2dpass_truncation_inside_grid(scale: int) -> None:
    xyz = _random_points(5000)
    cells = GRID.cells(scale)
    expected = torch.stack(
        [
            (float(n) * (xyz[:, a] - lo) / (hi - lo)).long()  # 2DPASS: float32, then truncate
            for a, ((lo, hi), n) in enumerate(zip(GRID.point_range, cells, strict=True))
        ],
        dim=1,
    )
    assert torch.equal(quantize(xyz, GRID, scale), expected)
    assert cells == tuple(math.ceil(n / scale) for n in GRID.spatial_shape)


def test_quantize_floors_and_clamps_outside_grid() -> None:
    xyz = torch.tensor([[-50.05, 49.999, -4.0], [-70.0, 70.0, 10.0], [-50.0, 50.0, 3.0]])
    idx = quantize(xyz, GRID, 1)
    # -0.05 m below the range floors to -1 (truncation would give 0), then clamps to 0.
    assert idx[0].tolist() == [0, 999, 0]
    assert idx[1].tolist() == [0, 999, 69]
    assert idx[2].tolist() == [0, 999, 69]


def test_crop_is_strict() -> None:
    xyz = torch.tensor([[-50.0, 0.0, 0.0], [49.99, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, -3.99]])
    assert crop_mask(xyz, GRID).tolist() == [False, True, False, True]


def test_voxels_match_unique_over_bxyz_rows() -> None:
    xyz = _random_points(4000, spread=5.0)  # dense enough that voxels hold several points
    batch = torch.randint(0, 3, (4000,))
    voxels, orders = voxelize(xyz, batch, GRID, (1, 4, 16))
    for scale, vox in voxels.items():
        rows = torch.cat([batch[:, None], quantize(xyz, GRID, scale)], dim=1)
        unique, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
        assert torch.equal(vox.inverse, inverse)
        assert torch.equal(vox.counts, counts)
        # coords are (b, z, y, x), the reversed spatial order spconv expects
        assert torch.equal(vox.coords.long(), unique[:, [0, 3, 2, 1]])
        assert vox.coords.dtype == torch.int32
        assert vox.keys.dtype == torch.int64
        assert torch.equal(vox.inverse[orders[scale]], vox.inverse[orders[scale]].sort().values)
    assert voxels[16].num_voxels < voxels[4].num_voxels < voxels[1].num_voxels


def test_keys_do_not_mix_batches() -> None:
    xyz = torch.zeros((2, 3))
    voxels, _ = voxelize(xyz, torch.tensor([0, 1]), GRID, (1,))
    assert voxels[1].num_voxels == 2
    assert voxels[1].coords[:, 0].tolist() == [0, 1]
    assert torch.equal(decode_keys(voxels[1].keys, voxels[1].cells).int(), voxels[1].coords)


def test_group_keys_handles_empty() -> None:
    g = group_keys(torch.empty(0, dtype=torch.int64))
    assert g.unique.numel() == g.inverse.numel() == g.counts.numel() == 0
