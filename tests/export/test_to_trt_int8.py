"""`python export/to_trt.py --precision int8`: calibration, the int8 layer choice and the accuracy
gate, on the bundled demo model and the real scans.

The demo model is calibrated on the real SemanticKITTI scans (HDL-64), which the gate does not
read; the gate runs on the nuScenes and KITTI scans. A calibration on three points in a corner of
the crop gives ranges far too small for a real sweep: the gate fails and nothing is written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import export.to_trt as to_trt
from export.parity import ort_session
from seg3d.graph_inputs import graph_inputs
from seg3d.manifest import load_manifest
from seg3d.ort_options import int8_kernels_exact
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_data_dir
from serve.app import create_app
from serve.backends import OnnxRuntimeBackend
from serve.settings import ServeSettings
from tests.export.conftest import corner_cloud

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "demo" / "encoder3d.pt"


@pytest.fixture(scope="module")
def real() -> Path:
    found = real_data_dir()
    if found is None or not (found / "semantickitti").is_dir():
        pytest.skip("real scans not found (set SEG3D_REAL_DATA or place ../shared/data/real)")
    return found


def test_demo_int8_export_passes_the_gate(tmp_path: Path, real: Path, nuscenes_scans) -> None:
    out = tmp_path / "demo-int8"
    args = ["--checkpoint", str(DEMO), "--out", str(out), "--graph", "sparse", "--precision", "int8"]
    args += ["--calibrate", str(real / "semantickitti"), "--int8-target", "0.998", "--onnx-only"]
    assert to_trt.main(args) == 0
    manifest = load_manifest(out)
    assert manifest.model.precision == "int8" and manifest.graph.form == "sparse"
    parity = manifest.parity
    assert parity.status == "passed" and parity.threshold_argmax_agreement == 0.99
    assert parity.source == "real" and min(s.argmax_agreement for s in parity.scans) >= 0.99
    quantization = manifest.graph.quantization
    assert quantization is not None and quantization.method == "percentile"
    assert quantization.calibration.startswith("3 of 3 clouds") and quantization.clouds == 3
    assert quantization.calibration_agreement >= 0.998
    layers = manifest.graph.layers
    int8 = {k for k, p in layers.items() if p == "int8"}
    assert int8 and set(quantization.activation_ranges) <= int8  # plus the shortcuts riding along
    assert set(quantization.float_layers).isdisjoint(int8)
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(manifest.graph.op_types)
    assert "emulated exactly" in parity.runtime  # the graph's arithmetic, not this CPU's kernels
    # the service's ONNX Runtime backend runs it in the recorded form: on the integer kernels where
    # they are exact (VNNI), else emulated, and then with the very labels the export measured
    backend = OnnxRuntimeBackend.load(out, manifest.config, threads=None)
    arithmetic = "integer" if int8_kernels_exact() else "emulated"
    assert backend.graph == "sparse" and backend.int8_arithmetic == arithmetic
    points = nuscenes_scans[0].points
    points = points[crop_mask(points[:, :3], manifest.config.grid)]
    inputs = prepare_inputs(points, manifest.config)
    labels = backend.predict(inputs)
    assert labels.shape == (points.shape[0],) and int(labels.min()) > 0
    exported = ort_session((out / "model.onnx").read_bytes(), precision="int8")
    feeds = {k: v.numpy() for k, v in graph_inputs(inputs, manifest.config, "sparse").items()}
    agreement = float((exported.run(["labels"], feeds)[0] == labels).mean())
    assert agreement == 1.0 if arithmetic == "emulated" else agreement >= 0.99
    with TestClient(create_app(ServeSettings(model=out, backend="onnxruntime"))) as client:
        deadline = time.monotonic() + 60
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.1)
        meta = client.get("/v2/models/demo-int8").json()
    assert (meta["precision"], meta["graph_form"]) == ("int8", "sparse")
    assert meta["int8_layers"] == len(int8) and meta["int8_arithmetic"] == arithmetic


def test_broken_calibration_fails_the_gate_and_writes_nothing(tmp_path: Path, real: Path, capsys) -> None:
    corner = corner_cloud(tmp_path / "corner.bin")
    out = tmp_path / "broken"
    args = ["--checkpoint", str(DEMO), "--out", str(out), "--graph", "sparse", "--precision", "int8"]
    args += ["--calibrate", str(corner), "--int8-target", "0.99", "--onnx-only"]
    assert to_trt.main(args) == 3
    assert "below 99.0% for int8" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no artifact, no manifest, no staging folder


def test_int8_arguments_are_checked(tmp_path: Path, real: Path, capsys) -> None:
    base = ["--checkpoint", str(DEMO), "--precision", "int8", "--onnx-only", "--skip-parity"]
    assert to_trt.main([*base, "--out", str(tmp_path / "a"), "--calibrate", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert to_trt.main([*base, "--out", str(tmp_path / "b"), "--int8-target", "1.5"]) == 2
    assert "--int8-target must be in (0, 1]" in capsys.readouterr().err
    assert to_trt.main([*base, "--out", str(tmp_path / "c")]) == 2
    assert "--precision int8 needs --calibrate" in capsys.readouterr().err
