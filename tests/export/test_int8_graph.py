"""The int8 graph (export/onnx_graph.py, precision int8): explicit quantization that passes the
allowlist and that ONNX Runtime runs on its integer kernels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from export.allowlist import check_graph
from export.calibrate import calibrate, graph_feeds
from export.onnx_graph import INT8_EXCLUDED, build_encoder_graph, calibration_graph, layer_precisions
from export.parity import ort_session
from seg3d.checkpoint import load_encoder
from seg3d.model.folding import fold_state_dict
from seg3d.ort_options import disabled_optimizers, session_options
from seg3d.scans import synthetic_sweep

FORMS = ("sparse", "dense")


@pytest.fixture(scope="module")
def folded(trained_checkpoint: Path):
    model = load_encoder(trained_checkpoint)
    return fold_state_dict(model.state_dict(), model), model.config


@pytest.fixture(scope="module")
def calibrated(folded):
    state, config = folded
    clouds = [synthetic_sweep(seed=seed, intensity_max=config.input.intensity_max) for seed in (100, 101)]
    feeds = {form: graph_feeds(clouds, config, form) for form in FORMS}
    scales = {
        form: calibrate(state, config, feeds[form], "minmax", form, progress=False).scales for form in FORMS
    }
    return scales, feeds


def _optimized_ops(model: onnx.ModelProto, path: Path, disabled: list[str]) -> Counter[str]:
    options = session_options()
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(model.SerializeToString(), options, disabled_optimizers=disabled)
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("form", FORMS)
def test_int8_graph_passes_checker_and_allowlist(folded, calibrated, form) -> None:
    state, config = folded
    graph = build_encoder_graph(state, config, "int8", form, calibrated[0][form])
    onnx.checker.check_model(graph, full_check=True)
    ops = check_graph(graph)
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(ops)
    int8 = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    weights = [t for t in int8 if ".weight_" in t.name]
    assert weights and all(len(t.dims) == 2 for t in weights)  # the int8 weight matrices
    zero_points = [numpy_helper.to_array(t) for t in int8 if ".weight_" not in t.name]
    assert zero_points and all(not z.any() for z in zero_points)  # symmetric: TensorRT's only form


def test_layer_precisions_record_every_layer(folded, calibrated) -> None:
    state, config = folded
    scales = calibrated[0]["sparse"]
    layers = layer_precisions(build_encoder_graph(state, config, "int8", "sparse", scales))
    assert {layer for layer, p in layers.items() if p == "fp32"} == set(INT8_EXCLUDED)
    assert all(p == "int8" for layer, p in layers.items() if layer not in INT8_EXCLUDED)
    # the shortcut rides in its conv's centre MatMul: no scale of its own, its conv's precision
    assert not any(layer.endswith("shortcut") for layer in scales)
    assert layers["blocks.0.voxel.0.shortcut"] == "int8"
    some = {k: scales[k] for k in ("embed.fc2", "blocks.0.voxel.0.conv1", "head.0")}
    partial = layer_precisions(build_encoder_graph(state, config, "int8", "sparse", some))
    assert {k for k, p in partial.items() if p == "int8"} == {*some, "blocks.0.voxel.0.shortcut"}
    assert layer_precisions(build_encoder_graph(state, config, "fp32", "sparse")) == dict.fromkeys(
        layers, "fp32"
    )


def test_onnxruntime_runs_every_int8_layer_on_integer_kernels(folded, calibrated, tmp_path) -> None:
    """With the session options of `seg3d.ort_options`, each int8 layer's MatMul becomes
    MatMulIntegerToFloat; with ONNX Runtime's defaults its MatMul + bias Add becomes a float Gemm
    over dequantized inputs, which is why the option exists."""
    state, config = folded
    graph = build_encoder_graph(state, config, "int8", "sparse", calibrated[0]["sparse"])
    ours = _optimized_ops(graph, tmp_path / "ours.onnx", disabled_optimizers("int8"))
    assert ours["MatMul"] == len(INT8_EXCLUDED) and ours["Gemm"] == 0 and ours["FusedGemm"] == 0
    assert ours["MatMulIntegerToFloat"] > 0 and ours["DequantizeLinear"] == 0
    default = _optimized_ops(graph, tmp_path / "default.onnx", [])
    assert default["Gemm"] + default["FusedGemm"] > 0 and default["DequantizeLinear"] > 0


@pytest.mark.parametrize("form", FORMS)
def test_int8_labels_follow_the_float_graph(folded, calibrated, form) -> None:
    state, config = folded
    scales, feeds = calibrated
    float_session = ort_session(build_encoder_graph(state, config, "fp32", form).SerializeToString())
    int8_session = ort_session(
        build_encoder_graph(state, config, "int8", form, scales[form]).SerializeToString(), precision="int8"
    )
    for f in feeds[form]:
        logits, labels = float_session.run(None, f)
        logits8, labels8 = int8_session.run(None, f)
        assert float((labels8 == labels).mean()) >= 0.95  # quantized, on its own calibration clouds
        assert 0 < float(np.abs(logits8 - logits).max()) < 0.5 * float(np.abs(logits).max())


def test_int8_needs_positive_scales(folded, calibrated) -> None:
    state, config = folded
    with pytest.raises(ValueError, match="calibrate first"):
        build_encoder_graph(state, config, "int8", "sparse")
    bad = {**calibrated[0]["sparse"], "embed.fc2": 0.0}
    with pytest.raises(ValueError, match=r"embed\.fc2 must be a positive number"):
        build_encoder_graph(state, config, "int8", "sparse", bad)


def test_calibration_graph_outputs_each_layer_input(folded, calibrated) -> None:
    state, config = folded
    model, sites = calibration_graph(state, config, "sparse")
    assert set(sites) == set(calibrated[0]["sparse"])  # every layer an int8 graph may quantize
    assert not set(INT8_EXCLUDED) & set(sites)
    session = ort_session(model.SerializeToString())
    values = dict(zip(sites, session.run(list(sites.values()), calibrated[1]["sparse"][0]), strict=True))
    points = calibrated[1]["sparse"][0]["features"].shape[0]
    assert values["embed.fc2"].shape[1] == config.encoder.hidden
    assert values["head.0"].shape == (points, len(config.encoder.scale_list) * config.encoder.hidden)
