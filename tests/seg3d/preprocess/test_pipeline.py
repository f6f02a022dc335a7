from __future__ import annotations

import math

import pytest
import torch

from seg3d.preprocess import POINT_FEATURE_DIM, crop_mask, prepare_inputs


def test_point_features_follow_2dpass_definition(tiny_config) -> None:
    points = torch.tensor(
        [[1.01, 2.02, 0.05, 10.0], [1.09, 2.11, 0.15, 20.0], [-3.0, 4.0, -1.0, 30.0]], dtype=torch.float32
    )
    inputs = prepare_inputs(points, tiny_config)
    f = inputs.features
    assert f.shape == (3, POINT_FEATURE_DIM)
    assert torch.equal(f[:, :4], points)
    # points 0 and 1 share a 0.2 m voxel: relative to their mean they are ±half their offset
    mean01 = points[:2, :3].mean(0)
    torch.testing.assert_close(f[:2, 4:7], points[:2, :3] - mean01)
    torch.testing.assert_close(f[2, 4:7], torch.zeros(3))
    # xyz − voxel min corner lies inside one cell
    size = torch.tensor(tiny_config.grid.voxel_size(1))
    assert bool(((f[:, 7:10] >= 0) & (f[:, 7:10] < size + 1e-6)).all())
    corner = torch.tensor([1.0, 2.0, 0.0])
    torch.testing.assert_close(f[0, 7:10], points[0, :3] - corner, atol=1e-5, rtol=0)


def test_tables_have_documented_shapes(tiny_config, nuscenes_scans) -> None:
    points = nuscenes_scans[0].points
    points = points[crop_mask(points[:, :3], tiny_config.grid)]
    inputs = prepare_inputs(points, tiny_config)
    enc = tiny_config.encoder
    assert set(inputs.voxels) == set(enc.all_scales) == {1, 2, 4, 8, 16}
    assert set(inputs.conv) == set(enc.conv_scales)
    for scale, level in inputs.conv.items():
        v = inputs.voxels[scale].num_voxels
        assert level.neighbours.shape == (v, 27)
        assert level.neighbours.dtype == torch.int64
        assert int(level.neighbours.max()) <= v  # pad index is V
        assert torch.equal(level.neighbours[:, 13], torch.arange(v))  # centre tap is the voxel itself
    assert set(inputs.down_pools) == {(1, 2), (2, 4), (4, 8), (8, 16)}
    for (fine, coarse), pool in inputs.down_pools.items():
        assert pool.num_sources == inputs.voxels[fine].num_voxels
        assert pool.num_targets == inputs.voxels[coarse].num_voxels
        assert pool.width == tiny_config.tables.voxel_pool_width
    # Every point lands in exactly one voxel per scale, and every voxel has points.
    for vox in inputs.voxels.values():
        assert int(vox.counts.sum()) == points.shape[0]
        assert int(vox.counts.min()) >= 1


def test_empty_cloud_prepares(tiny_config) -> None:
    inputs = prepare_inputs(torch.zeros((0, 4)), tiny_config)
    assert inputs.num_points == 0
    assert all(v.num_voxels == 0 for v in inputs.voxels.values())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_points_raise_with_row_count(tiny_config, bad: float) -> None:
    points = torch.randn((100, 4))
    points[[3, 50, 77], 1] = bad
    with pytest.raises(
        ValueError, match=r"^3 of 100 point rows contain NaN or Inf \(first bad rows: 3, 50, 77\)"
    ):
        prepare_inputs(points, tiny_config)


def test_batch_mismatch_raises(tiny_config) -> None:
    with pytest.raises(ValueError, match="batch must have shape"):
        prepare_inputs(torch.zeros((4, 4)), tiny_config, batch=torch.zeros(3, dtype=torch.int64))


def test_batched_cloud_equals_clouds_one_by_one(tiny_config, nuscenes_scans) -> None:
    a, b = nuscenes_scans[0].points, nuscenes_scans[1].points
    both = prepare_inputs(
        torch.cat([a, b]), tiny_config, batch=torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long()
    )
    alone = prepare_inputs(b, tiny_config)
    assert both.batch_size == 2
    v_both, v_alone = both.voxels[1], alone.voxels[1]
    second = v_both.coords[:, 0] == 1
    assert torch.equal(v_both.coords[second][:, 1:], v_alone.coords[:, 1:])
    torch.testing.assert_close(both.features[len(a) :], alone.features)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tables_equal_cpu_tables(full_config, nuscenes_scans) -> None:
    points = nuscenes_scans[0].points
    cpu = prepare_inputs(points, full_config)
    gpu = prepare_inputs(points.cuda(), full_config).to("cpu")
    for scale in cpu.conv:
        assert torch.equal(cpu.conv[scale].neighbours, gpu.conv[scale].neighbours)
    assert torch.equal(cpu.point_pool.index, gpu.point_pool.index)
    torch.testing.assert_close(cpu.features, gpu.features)


def test_to_moves_every_tensor_and_keeps_the_rest(tiny_config, nuscenes_scans) -> None:
    import dataclasses

    inputs = prepare_inputs(nuscenes_scans[0].points[:5000], tiny_config)
    moved = inputs.to("meta")

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield from tensors(getattr(value, f.name))
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)

    found = list(tensors(moved))
    assert len(found) == len(list(tensors(inputs))) > 20
    assert all(t.device.type == "meta" for t in found)
    assert (
        moved.batch_size == inputs.batch_size
        and moved.point_pool.num_targets == inputs.point_pool.num_targets
    )
    assert moved.voxels[2].cells == inputs.voxels[2].cells
