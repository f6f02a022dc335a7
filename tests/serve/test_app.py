"""In-process checks of the app's states: warming up, auth, queue full (same app, TestClient)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from seg3d.points import PointFormat
from serve.app import create_app
from serve.model import ModelState
from serve.settings import ServeSettings

BODY = np.zeros((100, 5), "<f4").tobytes()
OCTET = {"Content-Type": "application/octet-stream"}


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready in 60 s"
        time.sleep(0.1)


def test_warming_up_answers_503_with_retry_after(tiny_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_loader = ModelState.load

    def slow_loader(state: ModelState) -> None:
        release.wait(30)
        real_loader(state)

    monkeypatch.setattr(ModelState, "load", slow_loader)
    with TestClient(create_app(ServeSettings(model=tiny_export, backend="onnxruntime"))) as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        busy = client.post("/segment", content=BODY, headers=OCTET)
        for response in (ready, busy):
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert ready.json()["code"] == "warming_up"  # the KServe v2 paths' error shape
        assert busy.json()["error"]["code"] == "warming_up"
        release.set()
        _wait_ready(client)
        assert client.post("/segment", content=BODY, headers=OCTET).status_code == 200


def test_a_model_that_cannot_load_is_reported(tmp_path: Path) -> None:
    with TestClient(create_app(ServeSettings(model=tmp_path))) as client:
        deadline = time.monotonic() + 10
        while (r := client.get("/v2/health/ready")).json()["code"] == "warming_up":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["code"] == "model_unavailable"
        assert "manifest.json not found" in r.json()["error"]


def test_bearer_token(tiny_export: Path) -> None:
    settings = ServeSettings(model=tiny_export, backend="onnxruntime", auth_token="s3cret")
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        denied = client.post("/segment", content=BODY, headers=OCTET)
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/segment", content=BODY, headers={**OCTET, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/v2/models/tiny").status_code == 401
        ok = client.post("/segment", content=BODY, headers={**OCTET, "Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["num_points"] == 100
        assert client.get("/v2/health/ready").status_code == 200  # probes stay open


def test_queue_full_answers_503(tiny_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServeSettings(model=tiny_export, backend="onnxruntime", max_queue=1)
    gate = threading.Event()
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        segmenter = client.app.state.seg.model.segmenter
        real_segment = segmenter.segment

        def held(*args, **kwargs):
            gate.wait(30)
            return real_segment(*args, **kwargs)

        monkeypatch.setattr(segmenter, "segment", held)
        first: dict = {}
        worker = threading.Thread(
            target=lambda: first.update(r=client.post("/segment", content=BODY, headers=OCTET))
        )
        worker.start()
        deadline = time.monotonic() + 10
        while client.app.state.seg.admitted < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = client.post("/segment", content=BODY, headers=OCTET)
        assert second.status_code == 503 and second.json()["error"]["code"] == "queue_full"
        assert second.headers["retry-after"] == "1"
        gate.set()
        worker.join(30)
        assert first["r"].status_code == 200
        assert 'seg_errors_total{code="queue_full",status="503"} 1.0' in client.get("/metrics").text


def test_cli_refuses_a_folder_without_an_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from serve.__main__ import main

    assert main(["--model", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "has no manifest.json" in err and "export/to_trt.py" in err


def test_format_is_an_enum_in_the_openapi_schema(tmp_path: Path) -> None:
    client = TestClient(create_app(ServeSettings(model=tmp_path)))  # no lifespan: no model needed
    parameters = client.get("/openapi.json").json()["paths"]["/segment"]["post"]["parameters"]
    (fmt,) = [p for p in parameters if p["name"] == "format"]
    schema = fmt["schema"]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = {**client.get("/openapi.json").json()["components"]["schemas"][name], **schema}
    # the enum is `PointFormat` itself (formats are added there), nuscenes first and the default
    assert schema["enum"] == [f.value for f in PointFormat] and schema["default"] == "nuscenes"
    assert schema["enum"][:3] == ["nuscenes", "kitti", "xyzi"]
