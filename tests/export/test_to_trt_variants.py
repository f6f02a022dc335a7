"""`python export/to_trt.py --also FORM:PRECISION`: more graphs of the same weights in one export,
each through the allowlist and its own parity gate; a refused one is recorded, not written. The
service serves any of them (``--onnx-graph``), and ``auto`` times them all and keeps the fastest.

The demo model with real parity scans: the dense fp32 primary, a sparse fp32 variant, and a sparse
int8 variant calibrated on three points in a corner of the crop (ranges far too small for a real
sweep), which the gate refuses."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import export.to_trt as to_trt
from seg3d.manifest import ArtifactError, ManifestError, load_manifest
from seg3d.model import Encoder3D
from seg3d.scans import real_data_dir
from serve.app import create_app
from serve.backends import BackendUnavailable, OnnxRuntimeBackend, choose_backend, load_backend
from serve.settings import ServeSettings
from tests.export.conftest import corner_cloud

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "demo" / "encoder3d.pt"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if real_data_dir() is None:
        pytest.skip("real scans not found (set SEG3D_REAL_DATA or place ../shared/data/real)")
    tmp = tmp_path_factory.mktemp("variants")
    corner = corner_cloud(tmp / "corner.bin")
    out = tmp / "demo"
    args = ["--checkpoint", str(DEMO), "--out", str(out), "--onnx-only"]
    args += ["--also", "sparse:fp32", "--also", "sparse:int8", "--calibrate", str(corner)]
    calls: list[int] = []
    spconv_forward = Encoder3D._forward_spconv
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            Encoder3D, "_forward_spconv", lambda self, i: calls.append(1) or spconv_forward(self, i)
        )
        assert to_trt.main(args) == 0  # the primary passed; a refused variant does not fail the export
    # three gates (primary, two variants), one spconv reference run per parity scan
    assert len(calls) == len(load_manifest(out).parity.scans) > 0
    return out


def test_variants_are_gated_recorded_and_verified(export_dir: Path, tmp_path: Path) -> None:
    manifest = load_manifest(export_dir)  # verifies every file, the variants' too
    graphs = {g.name: g for g in manifest.graphs()}
    assert list(graphs) == ["dense-fp32", "sparse-fp32"]
    sparse = graphs["sparse-fp32"]
    assert sparse.graph.file == "model.sparse-fp32.onnx" and sparse.graph.form == "sparse"
    assert sparse.parity.status == "passed" and sparse.parity.min_argmax_agreement is not None
    assert sparse.parity.min_argmax_agreement >= 0.999 and sparse.parity.source == "real"
    assert "model.sparse-fp32.onnx" in manifest.files
    (refused,) = manifest.refused_variants
    assert refused.name == "sparse-int8" and "below 99.0%" in refused.reason
    assert not (export_dir / "model.sparse-int8.onnx").exists()
    with pytest.raises(ManifestError, match=r"export refused it: .*below"):
        manifest.servable_graph("sparse-int8")
    # a variant file changed after export is caught like any artifact
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    (copy / "model.sparse-fp32.onnx").write_bytes((copy / "model.onnx").read_bytes())
    with pytest.raises(ArtifactError, match=r"model\.sparse-fp32\.onnx"):
        load_manifest(copy)


def test_bad_also_requests_are_refused_before_any_work(tmp_path: Path, capsys) -> None:
    base = ["--checkpoint", str(DEMO), "--out", str(tmp_path / "x"), "--onnx-only", "--skip-parity"]
    assert to_trt.main([*base, "--also", "dense:fp32"]) == 2  # the primary itself
    assert "is the primary graph" in capsys.readouterr().err
    assert to_trt.main([*base, "--also", "sparse:int8"]) == 2  # int8 without --calibrate
    assert "needs --calibrate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        to_trt.main([*base, "--also", "sparse"])
    assert "FORM:PRECISION" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_the_service_serves_the_graph_it_is_told_and_auto_times_them_all(
    export_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_manifest(export_dir).config
    sparse = load_backend("onnxruntime", export_dir, config, onnx_graph="sparse-fp32")
    assert isinstance(sparse, OnnxRuntimeBackend)
    assert (sparse.graph, sparse.graph_name, sparse.precision) == ("sparse", "sparse-fp32", "fp32")
    with pytest.raises(BackendUnavailable, match="it has dense-fp32, sparse-fp32"):
        load_backend("onnxruntime", export_dir, config, onnx_graph="dense-int8")
    with pytest.raises(BackendUnavailable, match="no graph 'dense-int8'"):  # auto does not skip a typo
        choose_backend("auto", export_dir, config, onnx_graph="dense-int8")
    probe_settings = ServeSettings(model=export_dir, backend="auto")
    with caplog.at_level(logging.INFO, logger="serve"), TestClient(create_app(probe_settings)) as client:
        _ready(client)
    chosen = [r.getMessage() for r in caplog.records if "backend auto ->" in r.getMessage()]
    assert chosen and "onnxruntime[dense-fp32]" in chosen[0] and "onnxruntime[sparse-fp32]" in chosen[0]
    settings = ServeSettings(model=export_dir, backend="onnxruntime", onnx_graph="sparse-fp32")
    with TestClient(create_app(settings)) as client:
        _ready(client)
        meta = client.get("/v2/models/demo").json()
        answer = client.post(
            "/segment",
            content=np.zeros((40, 5), np.float32).tobytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
    assert (meta["graph"], meta["graph_form"], meta["precision"]) == ("sparse-fp32", "sparse", "fp32")
    assert answer.status_code == 200 and len(answer.json()["labels"]) == 40
    # without a probe, auto takes the first backend that loads, the primary graph
    first = choose_backend("auto", export_dir, config)
    assert not isinstance(first, OnnxRuntimeBackend) or first.graph_name == "dense-fp32"


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready in 120 s"
        time.sleep(0.1)
