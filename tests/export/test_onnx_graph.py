from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from export.allowlist import check_graph
from export.manifest import graph_parameter_count
from export.onnx_graph import build_encoder_graph
from export.parity import ort_session
from seg3d.graph_inputs import export_pool, graph_input_names, graph_inputs
from seg3d.model import Encoder3D, fold_batchnorm
from seg3d.model.folding import fold_state_dict
from seg3d.preprocess import build_segment_pool, crop_mask, prepare_inputs
from tests.helpers import randomize_batchnorm


@pytest.fixture(scope="module")
def model(tiny_config) -> Encoder3D:
    torch.manual_seed(3)
    m = Encoder3D(tiny_config, "table")
    randomize_batchnorm(m, 4)
    return m.eval()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graph_is_valid_and_inside_the_allowlist(model, tiny_config, precision: str) -> None:
    graph = build_encoder_graph(fold_state_dict(model.state_dict(), model), tiny_config, precision)
    onnx.checker.check_model(graph, full_check=True)
    ops = check_graph(graph)
    assert "ScatterND" in ops and "Gather" in ops
    assert [i.name for i in graph.graph.input] == graph_input_names(tiny_config)
    # dynamic point and voxel dims
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    assert dims["features"] == ["N", 10] and dims["neighbours_s1"] == ["V1", 27]


def test_graph_weights_are_exactly_the_folded_encoder(model, tiny_config) -> None:
    folded = fold_state_dict(model.state_dict(), model)
    graph = build_encoder_graph(folded, tiny_config)
    assert graph_parameter_count(graph) == sum(v.numel() for v in folded.values())


def test_unfolded_state_is_refused(model, tiny_config) -> None:
    with pytest.raises(ValueError, match="fold it first"):
        build_encoder_graph(model.state_dict(), tiny_config)


@pytest.mark.parametrize(("precision", "threshold", "atol"), [("fp32", 0.999, 1e-4), ("fp16", 0.99, 5e-2)])
def test_onnxruntime_matches_the_torch_model_on_real_sweeps(
    model, tiny_config, nuscenes_scans, precision, threshold, atol
) -> None:
    """One session, several real sweeps of different sizes: the dims really are dynamic."""
    session = ort_session(
        build_encoder_graph(
            fold_state_dict(model.state_dict(), model), tiny_config, precision
        ).SerializeToString()
    )
    folded = fold_batchnorm(model)
    for scan, size in zip(nuscenes_scans[:2], (20_000, 27_000), strict=True):
        points = scan.points[crop_mask(scan.points[:, :3], tiny_config.grid)][:size]
        inputs = prepare_inputs(points, tiny_config)
        feeds = {k: v.numpy() for k, v in graph_inputs(inputs, tiny_config).items()}
        logits, labels = session.run(["logits", "labels"], feeds)
        with torch.no_grad():
            expected = folded(inputs).numpy()
        assert logits.dtype == np.float32 and labels.dtype == np.int64
        assert np.abs(logits - expected).max() < atol
        assert (logits.argmax(1) == expected.argmax(1)).mean() >= threshold
        assert labels.min() >= 1  # never the ignore class 0
        masked = expected.copy()
        masked[:, 0] = -np.inf
        assert (labels == masked.argmax(1)).mean() >= threshold


def _apply_export_form(form, x: torch.Tensor) -> torch.Tensor:
    """The export form's arithmetic exactly as the graph spells it."""
    padded = torch.cat([x, torch.zeros(1, x.shape[1])])
    main = (padded[form.index] * form.weight[..., None]).sum(1)
    extra = (padded[form.extra_index] * form.extra_weight[..., None]).sum(1)
    every = torch.cat([main, extra, torch.zeros(1, x.shape[1])])
    out = main.clone()
    out[form.overflow_target[:, 0]] = every[form.overflow_index].sum(1)
    return out


def test_export_pool_has_no_empty_dims_and_keeps_the_mean() -> None:
    x = torch.randn((6, 3))
    # no overflow (width 4 >= fan-in) and no extra rows: one pad row and one no-op overflow row
    pool = build_segment_pool(torch.arange(6), torch.tensor([0, 0, 1, 1, 1, 2]), 6, 3, 4)
    form = export_pool(pool)
    assert form.extra_index.shape == (1, 4) and form.overflow_target.shape == (1, 1)
    torch.testing.assert_close(_apply_export_form(form, x), pool.apply_tables(x))
    # with overflow: fan-in 5 over width 2
    pool = build_segment_pool(torch.arange(6), torch.tensor([0, 0, 0, 0, 0, 1]), 6, 2, 2)
    out = _apply_export_form(export_pool(pool), x)
    torch.testing.assert_close(out, pool.apply_tables(x))
    torch.testing.assert_close(out[0], x[:5].mean(0))
