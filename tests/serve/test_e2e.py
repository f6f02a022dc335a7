"""End to end against a real uvicorn process: every real scan, both body styles, both response types."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_inputs
from seg3d.manifest import load_manifest
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans
from tests.serve.conftest import MAX_POINTS, Server

SCANS = real_scans(("nuscenes", "kitti"))
FORMAT = {"nuscenes": ("nuscenes", 5), "kitti": ("kitti", 4)}


def _config(server: Server) -> ModelConfig:
    return load_manifest(server.model_dir).config


def _check_labels(
    labels: np.ndarray, points: np.ndarray, config: ModelConfig, session: ort.InferenceSession
) -> None:
    """In-crop labels equal ONNX Runtime's; every out-of-crop label is that of a nearest in-crop point."""
    assert labels.shape == (points.shape[0],)
    tensor = torch.from_numpy(points)
    inside = crop_mask(tensor[:, :3], config.grid).numpy()
    feeds = {k: v.numpy() for k, v in graph_inputs(prepare_inputs(tensor[inside], config), config).items()}
    (expected,) = session.run(["labels"], feeds)
    np.testing.assert_array_equal(labels[inside], expected)
    assert labels.min() >= 1  # never the ignore class
    inner, inner_labels = tensor[inside, :3], torch.from_numpy(expected)
    outside = np.flatnonzero(~inside)
    for start in range(0, outside.size, 256):
        rows = outside[start : start + 256]
        d = torch.cdist(tensor[rows, :3].double(), inner.double())
        nearest = d <= d.min(dim=1, keepdim=True).values + 1e-9
        allowed = (
            nearest & (inner_labels[None, :] == torch.from_numpy(labels[rows].astype(np.int64))[:, None])
        ).any(1)
        assert bool(allowed.all()), (
            f"out-of-crop rows {rows[~allowed.numpy()][:5]} not labelled by a nearest point"
        )


@pytest.fixture(scope="module")
def session(server: Server) -> ort.InferenceSession:
    return ort.InferenceSession(str(server.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.skipif(not SCANS, reason="real scans not found")
@pytest.mark.parametrize("scan", SCANS, ids=[s.name for s in SCANS])
def test_every_real_scan_both_bodies_both_responses(scan, server: Server, session) -> None:
    fmt, columns = FORMAT[scan.kind]
    raw = scan.path.read_bytes()
    points = np.frombuffer(raw, dtype="<f4").reshape(-1, columns)[:, :4].copy()
    if fmt == "kitti":
        points[:, 3] *= 255.0  # the service converts reflectance 0-1 to the model's 0-255
    config = _config(server)
    with server.client() as client:
        responses = {
            ("raw", "json"): client.post(f"/segment?format={fmt}", content=raw,
                                         headers={"Content-Type": "application/octet-stream"}),
            ("raw", "bin"): client.post(f"/segment?format={fmt}", content=raw,
                                        headers={"Content-Type": "application/octet-stream",
                                                 "Accept": "application/octet-stream"}),
            ("multipart", "json"): client.post(f"/segment?format={fmt}", files={"file": ("scan.bin", raw)}),
            ("multipart", "bin"): client.post(f"/segment?format={fmt}", files={"file": ("scan.bin", raw)},
                                              headers={"Accept": "application/octet-stream"}),
        }  # fmt: skip
    decoded = {}
    for (body, kind), response in responses.items():
        assert response.status_code == 200, (body, kind, response.text[:300])
        if kind == "json":
            payload = response.json()
            assert payload["num_points"] == points.shape[0]
            assert payload["class_names"][0] == "ignore" and payload["backend"] == "onnxruntime"
            assert set(payload["timing_ms"]) >= {"parse", "preprocess", "inference", "postprocess", "total"}
            decoded[body, kind] = np.asarray(payload["labels"], dtype=np.uint8)
        else:
            assert response.headers["content-type"] == "application/octet-stream"
            assert int(response.headers["x-num-points"]) == points.shape[0]
            decoded[body, kind] = np.frombuffer(response.content, dtype=np.uint8)
    first = decoded["raw", "json"]
    for labels in decoded.values():
        np.testing.assert_array_equal(labels, first)
    _check_labels(first, points, config, session)


def _nuscenes_bytes(n: int, seed: int = 0) -> bytes:
    g = np.random.default_rng(seed)
    cloud = np.concatenate(
        [
            g.uniform(-40, 40, (n, 2)),
            g.uniform(-2, 1, (n, 1)),
            g.uniform(0, 255, (n, 1)),
            g.integers(0, 32, (n, 1)),
        ],
        axis=1,
    )
    return cloud.astype("<f4").tobytes()


NAN_ROWS = np.array([[1, 2, math.nan, 4, 0]] * 3, "<f4").tobytes()
INF_ROW = np.array([[1, 2, 3, math.inf, 0]], "<f4").tobytes()
BAD_INPUTS = [
    ("text/plain", "nuscenes", _nuscenes_bytes(10), 415, "unsupported_media_type"),
    (None, "nuscenes", _nuscenes_bytes(10), 415, "unsupported_media_type"),
    ("application/octet-stream", "nuscenes", b"\x00" * 7, 422, "bad_length"),
    ("application/octet-stream", "kitti", _nuscenes_bytes(3)[:-4], 422, "bad_length"),
    ("application/octet-stream", "las", _nuscenes_bytes(10), 422, "unknown_format"),
    ("application/octet-stream", "nuscenes", NAN_ROWS, 422, "non_finite"),
    ("application/octet-stream", "nuscenes", INF_ROW, 422, "non_finite"),
    ("application/octet-stream", "nuscenes", _nuscenes_bytes(MAX_POINTS + 1), 413, "too_many_points"),
    ("application/octet-stream", "kitti", b"\x00" * (MAX_POINTS * 20 + 70_000), 413, "too_large"),
]  # fmt: skip


def test_bad_inputs_get_their_status_and_the_server_survives(server: Server, session) -> None:
    with server.client() as client:
        for content_type, fmt, body, status, code in BAD_INPUTS:
            headers = {"Content-Type": content_type} if content_type else {}
            response = client.post(f"/segment?format={fmt}", content=body, headers=headers)
            assert response.status_code == status, (code, response.text[:200])
            assert response.json()["error"]["code"] == code
            assert response.json()["error"]["message"]
        no_boundary = client.post("/segment", content=b"", headers={"Content-Type": "multipart/form-data"})
        assert no_boundary.status_code == 400 and no_boundary.json()["error"]["code"] == "bad_multipart"
        missing_part = client.post("/segment", files={"data": ("scan.bin", _nuscenes_bytes(4))})
        assert missing_part.status_code == 422 and missing_part.json()["error"]["code"] == "missing_file"
        empty = client.post("/segment", content=b"", headers={"Content-Type": "application/octet-stream"})
        assert empty.status_code == 200 and empty.json()["num_points"] == 0 and empty.json()["labels"] == []
        empty_bin = client.post(
            "/segment",
            content=b"",
            headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
        )
        assert empty_bin.status_code == 200 and empty_bin.content == b""
        # still answering, and correctly
        body = _nuscenes_bytes(5_000, seed=3)
        good = client.post("/segment", content=body, headers={"Content-Type": "application/octet-stream"})
        assert good.status_code == 200
    points = np.frombuffer(body, "<f4").reshape(-1, 5)[:, :4].copy()
    _check_labels(np.asarray(good.json()["labels"], np.uint8), points, _config(server), session)
    assert server.process.poll() is None


def test_health_metadata_metrics_and_docs(server: Server) -> None:
    with server.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        meta = client.get("/v2/models/tiny").json()
        assert meta["backend"] == "onnxruntime" and meta["classes"][1] == "barrier"
        assert meta["manifest"]["input"]["intensity_max"] == 255.0
        missing = client.get("/v2/models/other")
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_model"
        metrics = client.get("/metrics").text
        assert 'seg_requests_total{status="200"}' in metrics
        assert 'seg_stage_seconds_count{stage="inference"}' in metrics
        assert "seg_inflight" in metrics and 'seg_model_info{backend="onnxruntime"' in metrics
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
        assert "application/octet-stream" in spec["paths"]["/segment"]["post"]["requestBody"]["content"]
