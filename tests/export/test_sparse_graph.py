"""The ``sparse`` (present-tap) graph form: valid and inside the allowlist, equal to the dense form
and to the spconv reference, no empty dims on tiny clouds, and served unchanged from an export."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch

import export.to_trt as to_trt
from export.allowlist import check_graph
from export.manifest import graph_parameter_count
from export.onnx_graph import build_encoder_graph
from export.parity import ort_session, run_parity
from export.profiles import profile_shapes
from seg3d.config import load_config
from seg3d.graph_inputs import (
    NON_CENTRE_TAPS,
    TAP_SUM_WIDTH,
    export_taps,
    graph_form_of,
    graph_input_names,
    graph_inputs,
)
from seg3d.manifest import MANIFEST_NAME, load_manifest
from seg3d.model import Encoder3D, fold_batchnorm
from seg3d.model.folding import fold_state_dict
from seg3d.preprocess import crop_mask, neighbour_table, prepare_inputs, tap_pairs
from seg3d.scans import real_scans
from serve.backends import BackendLoadError, OnnxRuntimeBackend, load_backend
from serve.local import start_local_server
from tests.helpers import randomize_batchnorm


@pytest.fixture(scope="module")
def model(tiny_config) -> Encoder3D:
    torch.manual_seed(3)
    m = Encoder3D(tiny_config, "table")
    randomize_batchnorm(m, 4)
    return m.eval()


@pytest.fixture(scope="module")
def folded(model) -> dict[str, torch.Tensor]:
    return fold_state_dict(model.state_dict(), model)


def _session(folded, config, precision: str, form: str):
    return ort_session(build_encoder_graph(folded, config, precision, form).SerializeToString())  # type: ignore[arg-type]


def _run(session, inputs, config, form: str) -> tuple[np.ndarray, np.ndarray]:
    feeds = {k: v.numpy() for k, v in graph_inputs(inputs, config, form).items()}  # type: ignore[arg-type]
    logits, labels = session.run(["logits", "labels"], feeds)
    return logits, labels


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_sparse_graph_is_valid_and_inside_the_allowlist(folded, tiny_config, precision: str) -> None:
    graph = build_encoder_graph(folded, tiny_config, precision, "sparse")  # type: ignore[arg-type]
    onnx.checker.check_model(graph, full_check=True)
    ops = check_graph(graph)
    assert "Reshape" not in ops  # no im2col: no [V, 27·C] anywhere
    assert ("Cast" in ops) == (precision == "fp16")
    names = [i.name for i in graph.graph.input]
    assert names == graph_input_names(tiny_config, "sparse") and graph_form_of(names) == "sparse"
    assert not any(n.startswith("neighbours_") for n in names)
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    # every tap its own dynamic dim, shared with the opposite tap (the same pairs, swapped)
    assert dims["tap_source_s1_t0"] == ["P1_0"] and dims["tap_source_s1_t26"] == ["P1_0"]
    assert dims["tap_source_s1_t12"] == ["P1_12"] and dims["tap_source_s1_t14"] == ["P1_12"]
    assert dims["tap_sum_s1_index"] == ["V1", TAP_SUM_WIDTH]
    # the same weights as the dense graph, split by tap
    assert graph_parameter_count(graph) == sum(v.numel() for v in folded.values())
    if precision == "fp16":  # conv weights in float16, every reduction (tap sums, pools) in float32
        conv = [t for t in graph.graph.initializer if ".conv1.weight_" in t.name]
        assert conv and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv)
        inferred = onnx.shape_inference.infer_shapes(graph)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        sums = [n for n in graph.graph.node if n.op_type == "ReduceSum"]
        assert sums and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in sums)


def test_sparse_equals_dense_and_the_torch_model_on_real_sweeps(
    folded, model, tiny_config, nuscenes_scans
) -> None:
    sparse, dense = (_session(folded, tiny_config, "fp32", f) for f in ("sparse", "dense"))
    reference = fold_batchnorm(model)
    for scan in nuscenes_scans:  # one session, sweeps of different sizes: the tap dims are dynamic
        points = scan.points[crop_mask(scan.points[:, :3], tiny_config.grid)]
        inputs = prepare_inputs(points, tiny_config)
        logits_sparse, labels_sparse = _run(sparse, inputs, tiny_config, "sparse")
        logits_dense, labels_dense = _run(dense, inputs, tiny_config, "dense")
        with torch.no_grad():
            expected = reference(inputs).numpy()
        assert np.abs(logits_sparse - logits_dense).max() < 1e-5
        assert np.abs(logits_sparse - expected).max() < 1e-5
        assert (labels_sparse == labels_dense).mean() >= 0.9999
        assert labels_sparse.min() >= 1


@pytest.mark.parametrize(("precision", "threshold"), [("fp32", 0.999), ("fp16", 0.995)])
def test_sparse_graph_matches_spconv_on_every_real_scan(
    model, folded, tiny_config, precision, threshold
) -> None:
    pytest.importorskip("spconv.pytorch")
    scans = real_scans(("nuscenes", "kitti"), tiny_config.input.intensity_max)
    if not scans:
        pytest.skip("real scans not found")
    reference = Encoder3D(tiny_config, "spconv")
    reference.load_state_dict(model.state_dict())
    session = _session(folded, tiny_config, precision, "sparse")
    results = run_parity(session, reference.eval(), tiny_config, scans, progress=False, graph="sparse")
    assert {r.scan for r in results} == {s.name for s in scans}
    for r in results:
        print(f"{precision} {r.scan}: agreement {r.argmax_agreement:.5f}, max |Δ| {r.max_abs_diff:.2e}")
        assert r.argmax_agreement >= threshold, r
        assert r.label_agreement >= threshold, r
    if precision == "fp32":
        assert max(r.max_abs_diff for r in results) < 1e-4


@pytest.mark.parametrize("count", [1, 2, 3])
def test_tiny_clouds_with_empty_taps_run_without_empty_dims(folded, model, tiny_config, count: int) -> None:
    # points in adjacent voxels along x only: most taps have no pair at all
    points = torch.tensor([[1.0 + 0.2 * i, 2.0, 0.0, 10.0] for i in range(count)])
    inputs = prepare_inputs(points, tiny_config)
    pairs = inputs.conv[1].tap_pairs
    assert any(r.numel() == 0 for r in pairs.rows)
    named = graph_inputs(inputs, tiny_config, "sparse")
    assert all(t.numel() > 0 and min(t.shape) >= 1 for t in named.values())
    for precision in ("fp32", "fp16"):
        logits, labels = _run(
            _session(folded, tiny_config, precision, "sparse"), inputs, tiny_config, "sparse"
        )
        with torch.no_grad():
            expected = fold_batchnorm(model)(inputs).numpy()
        assert logits.shape == (count, tiny_config.num_classes) and labels.shape == (count,)
        assert np.abs(logits - expected).max() < (1e-5 if precision == "fp32" else 5e-2)


def _brute_force_conv(x, neighbours, kernel):
    padded = torch.cat([x, torch.zeros(1, x.shape[1], dtype=x.dtype)])
    return torch.einsum("vtc,tcd->vd", padded[neighbours], kernel)


def test_export_taps_sum_every_present_tap_with_overflow() -> None:
    # a full 3×3×3 block (the centre voxel has all 26 neighbours: overflow past width 4) plus a
    # lone voxel (all its taps empty), and a tap with no pairs anywhere
    coords = [(0, z, y, x) for z in range(3) for y in range(3) for x in range(3)] + [(0, 9, 9, 9)]
    keyed = sorted(coords, key=lambda c: (c[0], c[3], c[2], c[1]))
    neighbours = neighbour_table(torch.tensor(keyed), (12, 12, 12))
    v = neighbours.shape[0]
    # remove tap 0 and its opposite entirely: no pairs there
    neighbours[:, 0] = v
    neighbours[:, 26] = v
    form = export_taps(tap_pairs(neighbours), v)
    assert len(form.sources) == len(NON_CENTRE_TAPS) and all(s.numel() >= 1 for s in form.sources)
    assert form.sources[0].tolist() == [0]  # the dummy pair reads row 0, summed by no voxel
    assert form.overflow_target.shape[0] >= 1 and form.extra_index.shape[0] >= 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn((v, 5), dtype=torch.float64, generator=g)
    kernel = torch.randn((27, 5, 4), dtype=torch.float64, generator=g)
    # the graph's arithmetic, spelled out
    padded = torch.cat([x, torch.zeros(1, 5, dtype=x.dtype)])
    contributions = torch.cat(
        [padded[s] @ kernel[t] for t, s in zip(NON_CENTRE_TAPS, form.sources, strict=True)]
    )
    rows = torch.cat([contributions, torch.zeros(1, 4, dtype=x.dtype)])
    main = rows[form.index].sum(1)
    extra = rows[form.extra_index].sum(1)
    fragments = torch.cat([main, extra, torch.zeros(1, 4, dtype=x.dtype)])
    main[form.overflow_target[:, 0]] = fragments[form.overflow_index].sum(1)
    out = x @ kernel[13] + main
    torch.testing.assert_close(out, _brute_force_conv(x, neighbours, kernel))


def test_preprocess_tap_pairs_are_the_torch_paths_and_computed_lazily(tiny_config, nuscenes_scans) -> None:
    from seg3d.model import Encoder3D
    from seg3d.model.sparse_conv import tap_pairs as model_tap_pairs

    assert model_tap_pairs is tap_pairs  # one definition: the torch path imports preprocessing's
    inputs = prepare_inputs(nuscenes_scans[0].points[:5000], tiny_config)
    graph_inputs(inputs, tiny_config, "dense")
    assert not any("tap_pairs" in vars(level) for level in inputs.conv.values())  # dense never pays
    encoder = Encoder3D(tiny_config, "table").eval()
    encoder.present_taps = True
    with torch.no_grad():
        encoder(inputs)
    cached = {scale: vars(level)["tap_pairs"] for scale, level in inputs.conv.items()}
    with torch.no_grad():
        encoder(inputs)
    # computed once per resolution by the torch path too, and shared with the sparse graph's inputs
    assert all(inputs.conv[scale].tap_pairs is pairs for scale, pairs in cached.items())
    graph_inputs(inputs, tiny_config, "sparse")
    assert all(inputs.conv[scale].tap_pairs is pairs for scale, pairs in cached.items())


def test_unknown_graph_form_is_refused(folded, tiny_config) -> None:
    with pytest.raises(ValueError, match="dense, sparse"):
        build_encoder_graph(folded, tiny_config, "fp32", "half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dense, sparse"):
        graph_input_names(tiny_config, "half")  # type: ignore[arg-type]


def test_sparse_profile_covers_every_input(folded, tiny_config, nuscenes_scans) -> None:
    graph = build_encoder_graph(folded, tiny_config, "fp32", "sparse")
    shapes = profile_shapes(graph, tiny_config, nuscenes_scans[0].points, 1, 35_000, 300_000)
    assert set(shapes) == set(graph_input_names(tiny_config, "sparse"))
    for name, (low, opt, high) in shapes.items():
        assert all(1 <= a <= b <= c for a, b, c in zip(low, opt, high, strict=True)), name
    assert shapes["tap_sum_s1_overflow_index"][2][1] == -(-26 // TAP_SUM_WIDTH)
    # a real cloud of up to max points fits the profile
    inputs = graph_inputs(prepare_inputs(nuscenes_scans[1].points, tiny_config), tiny_config, "sparse")
    for name, tensor in inputs.items():
        low, _, high = shapes[name]
        assert all(lo <= s <= hi for lo, s, hi in zip(low, tensor.shape, high, strict=True)), name


def test_old_manifests_read_as_dense(tmp_path: Path, nuscenes_scans) -> None:
    out = tmp_path / "old"
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(out), "--skip-parity"]) == 0
    manifest = load_manifest(out)
    assert manifest.graph.form == "dense"
    data = json.loads((out / MANIFEST_NAME).read_text())
    assert data["graph"]["form"] == "dense"
    del data["graph"]["form"]  # as written before the field existed
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    assert load_manifest(out).graph.form == "dense"
    assert load_backend("onnxruntime", out, manifest.config).graph == "dense"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def sparse_and_dense_exports(tmp_path_factory) -> tuple[Path, Path]:
    """The same random-init tiny encoder exported in both forms; the sparse one with its parity."""
    root = tmp_path_factory.mktemp("forms")
    common = ["--config", "tiny", "--random-init", "--seed", "5"]
    assert to_trt.main([*common, "--out", str(root / "sparse"), "--graph", "sparse"]) == 0
    assert to_trt.main([*common, "--out", str(root / "dense"), "--graph", "dense", "--skip-parity"]) == 0
    return root / "sparse", root / "dense"


def test_sparse_export_records_its_form_contract_and_parity(sparse_and_dense_exports) -> None:
    sparse_dir, dense_dir = sparse_and_dense_exports
    manifest, dense = load_manifest(sparse_dir), load_manifest(dense_dir)
    assert manifest.graph.form == "sparse" and dense.graph.form == "dense"
    inputs = {t.name: t for t in manifest.graph.inputs}
    assert list(inputs) == graph_input_names(manifest.config, "sparse")
    assert inputs["tap_source_s1_t5"].dims == ["P1_5"] and inputs["tap_source_s1_t5"].dtype == "int64"
    assert inputs["tap_sum_s2_index"].dims == ["V2", TAP_SUM_WIDTH]
    assert manifest.graph.parameters == dense.graph.parameters
    parity = manifest.parity
    assert parity.status == "passed" and (parity.min_argmax_agreement or 0) >= 0.999
    if real_scans(("nuscenes", "kitti")):
        assert parity.source == "real"
        assert {s.scan for s in parity.scans} == {s.name for s in real_scans(("nuscenes", "kitti"))}


def test_onnxruntime_backend_feeds_the_recorded_form(sparse_and_dense_exports, tmp_path: Path) -> None:
    sparse_dir, dense_dir = sparse_and_dense_exports
    config = load_manifest(sparse_dir).config
    backend = load_backend("onnxruntime", sparse_dir, config)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.graph == "sparse"
    assert load_backend("onnxruntime", dense_dir, config).graph == "dense"  # type: ignore[union-attr]
    # a manifest that says dense over a sparse graph is refused, naming both
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in ("model.onnx", "encoder3d.pt"):
        (wrong / name).write_bytes((sparse_dir / name).read_bytes())
    data = json.loads((sparse_dir / MANIFEST_NAME).read_text())
    data["graph"]["form"] = "dense"
    (wrong / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BackendLoadError, match="records a dense graph"):
        load_backend("onnxruntime", wrong, config)


def test_serving_a_sparse_export_gives_the_dense_exports_labels(
    sparse_and_dense_exports, nuscenes_scans
) -> None:
    sparse_dir, dense_dir = sparse_and_dense_exports
    body = nuscenes_scans[0].path.read_bytes()
    labels = {}
    for form, folder in (("sparse", sparse_dir), ("dense", dense_dir)):
        local = start_local_server(folder, "--backend", "onnxruntime", "--log-level", "warning")
        try:
            with httpx.Client(base_url=local.url, timeout=120) as client:
                metadata = client.get(f"/v2/models/{folder.name}").json()
                response = client.post(
                    "/segment",
                    content=body,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Accept": "application/octet-stream",
                    },
                    params={"format": "nuscenes"},
                )
            assert response.status_code == 200, response.text
            labels[form] = np.frombuffer(response.content, dtype=np.uint8)
            assert metadata["backend"] == "onnxruntime"
            assert metadata["manifest"]["graph"]["form"] == form
        finally:
            local.stop()
    assert labels["sparse"].shape == labels["dense"].shape == (nuscenes_scans[0].points.shape[0],)
    assert (labels["sparse"] == labels["dense"]).mean() >= 0.9999


def test_full_config_name_has_both_forms() -> None:
    config = load_config("nuscenes_full")
    dense, sparse = graph_input_names(config, "dense"), graph_input_names(config, "sparse")
    scales = sorted(set(config.encoder.conv_scales))
    assert len(sparse) == len(dense) - len(scales) + len(scales) * (26 + 4)
