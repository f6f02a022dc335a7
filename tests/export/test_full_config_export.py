"""Acceptance: `--config nuscenes_full --random-init` exports in fp32 and fp16, and ONNX Runtime agrees
with the spconv reference on every real nuScenes and KITTI scan (≥ 99.9 % / ≥ 99 %); the figures are in
the manifest. About 75 s per precision on 2 CPU cores, 7.6 GB peak memory. The sparse (present-tap)
graph form passes the same gate in fp32, and gives the dense form's logits on a real sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import export.to_trt as to_trt
from export.onnx_graph import build_encoder_graph
from export.parity import ort_session
from seg3d.checkpoint import load_encoder
from seg3d.graph_inputs import graph_inputs
from seg3d.manifest import load_manifest
from seg3d.model.folding import fold_state_dict
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not real_scans(("nuscenes", "kitti")), reason="real scans not found")
@pytest.mark.parametrize(("precision", "threshold"), [("fp32", 0.999), ("fp16", 0.995)])
def test_full_config_random_init_export(tmp_path: Path, precision: str, threshold: float) -> None:
    pytest.importorskip("spconv.pytorch")
    out = tmp_path / precision
    args = ["--config", "nuscenes_full", "--random-init", "--out", str(out), "--precision", precision]
    assert to_trt.main(args) == 0
    manifest = load_manifest(out)
    assert manifest.graph.parameters == 45_614_865 - 6 * 2 * 3 * 2 * 256 - 6 * 2 * 2 * 128 + 6 * 2 * 3 * 256
    parity = manifest.parity
    names = {s.scan for s in parity.scans}
    expected = {s.name for s in real_scans(("nuscenes", "kitti"))}
    assert names == expected
    for scan in parity.scans:
        assert scan.argmax_agreement >= threshold, scan
    print(parity.model_dump_json(indent=1))


@pytest.mark.skipif(not real_scans(("nuscenes", "kitti")), reason="real scans not found")
def test_full_config_sparse_graph_export(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    out = tmp_path / "sparse"
    args = ["--config", "nuscenes_full", "--random-init", "--out", str(out), "--graph", "sparse"]
    assert to_trt.main(args) == 0
    manifest = load_manifest(out)
    assert manifest.graph.form == "sparse"
    assert manifest.graph.parameters == 45_614_865 - 6 * 2 * 3 * 2 * 256 - 6 * 2 * 2 * 128 + 6 * 2 * 3 * 256
    parity = manifest.parity
    assert {s.scan for s in parity.scans} == {s.name for s in real_scans(("nuscenes", "kitti"))}
    for scan in parity.scans:
        print(f"{scan.scan}: agreement {scan.argmax_agreement:.5f}, max |Δ| {scan.max_abs_diff:.2e}")
        assert scan.argmax_agreement >= 0.999, scan
    # the dense graph of the same weights gives the same logits on a real sweep
    config = manifest.config
    sweep = real_scans(("nuscenes",), config.input.intensity_max)[0]
    inputs = prepare_inputs(sweep.points[crop_mask(sweep.points[:, :3], config.grid)], config)
    model = load_encoder(out / "encoder3d.pt")
    dense = ort_session(
        build_encoder_graph(fold_state_dict(model.state_dict(), model), config).SerializeToString()
    )
    sparse = ort_session((out / "model.onnx").read_bytes())
    logits = {}
    for form, session in (("dense", dense), ("sparse", sparse)):
        feeds = {k: v.numpy() for k, v in graph_inputs(inputs, config, form).items()}  # type: ignore[arg-type]
        (logits[form],) = session.run(["logits"], feeds)
    diff = float(np.abs(logits["sparse"] - logits["dense"]).max())
    print(f"sparse vs dense on {sweep.name}: max |Δ| {diff:.2e}")
    assert diff < 1e-5
