from __future__ import annotations

import torch

from export.onnx_graph import build_encoder_graph
from export.profiles import dimension_values, profile_shapes, symbolic_dims
from seg3d.graph_inputs import graph_inputs
from seg3d.model import Encoder3D
from seg3d.model.folding import fold_state_dict
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans


def test_profiles_cover_every_input_and_real_clouds(tiny_config, nuscenes_scans) -> None:
    model = Encoder3D(tiny_config).eval()
    graph = build_encoder_graph(fold_state_dict(model.state_dict(), model), tiny_config)
    shapes = profile_shapes(graph, tiny_config, nuscenes_scans[0].points, 1_000, 35_000, 300_000)
    assert set(shapes) == {i.name for i in graph.graph.input}
    assert shapes["features"] == ((1_000, 10), (35_000, 10), (300_000, 10))
    for low, opt, high in shapes.values():
        assert all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True))
    # every real scan (up to 120k points) fits inside the profile, dim by dim
    dims = symbolic_dims(graph)
    scans = nuscenes_scans + real_scans(("kitti",))
    for scan in scans:
        points = scan.points[crop_mask(scan.points[:, :3], tiny_config.grid)]
        values = dimension_values(graph, graph_inputs(prepare_inputs(points, tiny_config), tiny_config))
        for name, (low, _, high) in shapes.items():
            for axis, dim in enumerate(dims[name]):
                if isinstance(dim, str) and dim != "N":
                    assert low[axis] <= values[dim] <= high[axis], (scan.name, name, dim)


def test_profile_rejects_inconsistent_points(tiny_config) -> None:
    import pytest

    model = Encoder3D(tiny_config).eval()
    graph = build_encoder_graph(fold_state_dict(model.state_dict(), model), tiny_config)
    with pytest.raises(ValueError, match="need 1 <= min <= opt <= max"):
        profile_shapes(graph, tiny_config, torch.zeros((10, 4)), 5_000, 1_000, 300_000)
