from __future__ import annotations

import math

import pytest
import torch

from seg3d.config import load_config
from seg3d.model import Encoder3D, fold_batchnorm
from seg3d.preprocess import crop_mask, prepare_inputs
from tests.helpers import randomize_batchnorm


@pytest.mark.parametrize(
    ("config", "expected"),
    [("nuscenes_full", 45_614_865), ("nuscenes_c128", 11_462_673), ("semantickitti_small", 1_933_460)],
)
def test_parameter_counts_match_2dpass(config: str, expected: int) -> None:
    model = Encoder3D(load_config(config), "table")
    assert sum(p.numel() for p in model.parameters()) == expected


def test_backends_share_one_state_dict(tiny_config) -> None:
    pytest.importorskip("spconv.pytorch")
    table = Encoder3D(tiny_config, "table")
    reference = Encoder3D(tiny_config, "spconv")
    reference.load_state_dict(table.state_dict(), strict=True)
    table.load_state_dict(reference.state_dict(), strict=True)
    conv = table.state_dict()["blocks.0.voxel.0.conv1.weight"]
    assert conv.shape == (32, 3, 3, 3, 32)  # KRSC: (C_out, k, k, k, C_in)


def _model_pair(config, seed: int = 0):
    pytest.importorskip("spconv.pytorch")
    torch.manual_seed(seed)
    table = Encoder3D(config, "table")
    randomize_batchnorm(table, seed)
    table.eval()
    reference = Encoder3D(config, "spconv")
    reference.load_state_dict(table.state_dict())
    return table, reference.eval()


def test_tiny_parity_on_every_real_nuscenes_scan(tiny_config, nuscenes_scans) -> None:
    table, reference = _model_pair(tiny_config)
    for scan in nuscenes_scans:
        points = scan.points[crop_mask(scan.points[:, :3], tiny_config.grid)]
        inputs = prepare_inputs(points, tiny_config)
        with torch.no_grad():
            a, b = table(inputs), reference(inputs)
        diff = float((a - b).abs().max())
        assert diff < 1e-4 * (1 + float(b.abs().max())), f"{scan.name}: max |Δ| = {diff:.2e}"
        assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.999


def test_training_mode_forward_agrees(tiny_config, nuscenes_scans) -> None:
    """Train mode (BatchNorm on batch statistics) gives the same logits on both backends."""
    table, reference = _model_pair(tiny_config)
    inputs = prepare_inputs(nuscenes_scans[0].points[:6000], tiny_config)
    with torch.no_grad():
        a, b = table.train()(inputs), reference.train()(inputs)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="spconv's CPU build has no backward (it asks for a CUDA stream)"
)
def test_training_gradients_agree_on_cuda(tiny_config, nuscenes_scans) -> None:
    table, reference = _model_pair(tiny_config)
    inputs = prepare_inputs(nuscenes_scans[0].points[:6000].cuda(), tiny_config)
    labels = torch.randint(0, tiny_config.num_classes, (inputs.num_points,), device="cuda")
    grads = []
    for model in (table.cuda().train(), reference.cuda().train()):
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], atol=1e-4, rtol=1e-3, msg=name)


def test_empty_cloud_returns_no_rows_without_calling_spconv(tiny_config, monkeypatch) -> None:
    spconv = pytest.importorskip("spconv.pytorch")

    def forbidden(*args, **kwargs):
        raise AssertionError("spconv must not be called on an empty cloud")

    monkeypatch.setattr(spconv, "SparseConvTensor", forbidden)
    inputs = prepare_inputs(torch.zeros((0, 4)), tiny_config)
    for backend in ("spconv", "table"):
        logits = Encoder3D(tiny_config, backend).eval()(inputs)
        assert logits.shape == (0, tiny_config.num_classes)


def test_rotated_cloud_outside_grid_keeps_every_point(tiny_config, nuscenes_scans) -> None:
    points = nuscenes_scans[0].points.clone()  # uncropped: reaches ~100 m, far outside the 50 m grid
    angle = math.pi / 4
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points[:, :2] = points[:, :2] @ rot.T
    outside = ~crop_mask(points[:, :3], tiny_config.grid)
    assert int(outside.sum()) > 100
    table, reference = _model_pair(tiny_config)
    inputs = prepare_inputs(points, tiny_config)
    with torch.no_grad():
        a, b = table(inputs), reference(inputs)
    assert a.shape == b.shape == (points.shape[0], tiny_config.num_classes)
    assert bool(torch.isfinite(a).all())
    assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.999


def test_nan_coordinates_raise_before_the_encoder(tiny_config) -> None:
    points = torch.randn((10, 4))
    points[4, 0] = float("nan")
    with pytest.raises(ValueError, match="1 of 10 point rows contain NaN or Inf"):
        prepare_inputs(points, tiny_config)


def test_encoder_output_exposes_block_features(tiny_config, nuscenes_scans) -> None:
    model = Encoder3D(tiny_config, "table").eval()
    inputs = prepare_inputs(nuscenes_scans[0].points[:3000], tiny_config)
    out = model.forward_features(inputs)
    enc = tiny_config.encoder
    assert len(out.voxel_features) == len(out.point_features) == len(enc.scale_list)
    for v, r_prev in zip(out.voxel_features, enc.conv_scales, strict=True):
        assert v.shape == (inputs.voxels[r_prev].num_voxels, enc.hidden)
    assert all(p.shape == (3000, enc.hidden) for p in out.point_features)


def test_folding_removes_batchnorm_and_keeps_outputs(tiny_config, nuscenes_scans) -> None:
    table, reference = _model_pair(tiny_config, seed=5)
    inputs = prepare_inputs(nuscenes_scans[1].points[:8000], tiny_config)
    for model in (table, reference):
        folded = fold_batchnorm(model)
        assert folded.folded
        assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
        with torch.no_grad():
            torch.testing.assert_close(folded(inputs), model(inputs), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="already folded"):
        fold_batchnorm(fold_batchnorm(table))


def test_present_taps_and_per_voxel_head_match_the_reference(tiny_config, nuscenes_scans) -> None:
    """The CPU fast path (present taps, per-voxel head, entry-wise pools) computes the same logits."""
    table, reference = _model_pair(tiny_config, seed=9)
    fast = fold_batchnorm(table)
    fast.present_taps = True
    points = nuscenes_scans[2].points[crop_mask(nuscenes_scans[2].points[:, :3], tiny_config.grid)]
    inputs = prepare_inputs(points, tiny_config)
    with torch.no_grad():
        expected = reference(inputs)
        got = fast(inputs)
        kept = fast.forward_features(inputs, keep_point_features=True)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kept.logits, got)
    assert len(kept.point_features) == len(tiny_config.encoder.scale_list)
    assert fast.forward_features(inputs, keep_point_features=False).point_features == []
