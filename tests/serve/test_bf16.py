"""The torch backend's precision setting: ``--torch-precision`` / ``SEG_TORCH_PRECISION`` reaches the
backend, which stores its weights in bf16, and the service reports it (model metadata, metric, log)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

import serve.__main__ as serve_main
from seg3d.manifest import load_manifest
from serve.app import create_app
from serve.backends import BackendUnavailable, TorchBackend, choose_backend, load_backend
from serve.settings import ServeSettings


class _Captured(Exception):
    pass


def _settings_of(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> ServeSettings:
    """The settings ``python -m serve argv`` would start the app with (stopped before uvicorn)."""
    seen: list[ServeSettings] = []

    def fake_app(settings: ServeSettings, on_failure: object = None) -> None:
        seen.append(settings)
        raise _Captured

    monkeypatch.setattr(serve_main, "create_app", fake_app)
    with pytest.raises(_Captured):
        serve_main.main(argv)
    return seen[0]


def test_the_setting_comes_from_the_flag_or_the_environment(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--model", str(tiny_export)]
    assert _settings_of(base, monkeypatch).torch_precision == "fp32"  # the default
    assert _settings_of([*base, "--torch-precision", "bf16"], monkeypatch).torch_precision == "bf16"
    monkeypatch.setenv("SEG_TORCH_PRECISION", "bf16")
    assert _settings_of(base, monkeypatch).torch_precision == "bf16"
    assert (
        _settings_of([*base, "--torch-precision", "fp32"], monkeypatch).torch_precision == "fp32"
    )  # flag wins
    monkeypatch.setenv("SEG_TORCH_PRECISION", "fp8")
    assert serve_main.main(base) == 2
    err = capsys.readouterr().err
    assert "torch_precision = 'fp8' (--torch-precision / SEG_TORCH_PRECISION)" in err
    with pytest.raises(SystemExit) as exited:
        serve_main.main([*base, "--torch-precision", "int8"])
    assert exited.value.code == 2


def test_the_torch_backend_loads_bf16_weights(tiny_export: Path) -> None:
    config = load_manifest(tiny_export).config
    backend = load_backend("torch", tiny_export, config, torch_precision="bf16")
    assert isinstance(backend, TorchBackend) and backend.precision == "bf16"
    assert backend.model.precision == "bf16" and backend.model.embed.fc2.weight.dtype == torch.bfloat16
    # The reference is never bf16, whatever the setting.
    pytest.importorskip("spconv.pytorch")
    reference = load_backend("spconv", tiny_export, config, torch_precision="bf16")
    assert isinstance(reference, TorchBackend) and reference.precision == "fp32"
    assert {p.dtype for p in reference.model.parameters()} == {torch.float32}


def test_fp16_is_unavailable_without_cuda(tiny_export: Path) -> None:
    """fp16 is a CUDA precision: on a CPU host the torch backend says so instead of loading, and
    ``auto`` skips that candidate and serves another."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: fp16 loads here (bench/gpu.py checks it)")
    config = load_manifest(tiny_export).config
    with pytest.raises(BackendUnavailable, match="fp16 runs on a CUDA device only"):
        load_backend("torch", tiny_export, config, torch_precision="fp16")
    chosen = choose_backend("auto", tiny_export, config, torch_precision="fp16")
    assert not (isinstance(chosen, TorchBackend) and chosen.name == "torch")


def test_the_service_reports_the_precision(tiny_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = json.loads((tiny_export / "manifest.json").read_text())["model"]["name"]
    settings = ServeSettings(model=tiny_export, backend="torch", torch_precision="bf16")
    with caplog.at_level(logging.INFO, logger="serve"), TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.1)
        meta = client.get(f"/v2/models/{name}").json()
        assert (meta["backend"], meta["device"], meta["precision"]) == ("torch", "cpu", "bf16")
        assert meta["graph_form"] is None and meta["int8_layers"] == 0  # the encoder, not a graph
        info = [
            line for line in client.get("/metrics").text.splitlines() if line.startswith("seg_model_info{")
        ]
        assert len(info) == 1 and 'precision="bf16"' in info[0], info
        points = torch.zeros((50, 5)).numpy().tobytes()
        answer = client.post("/segment", content=points, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 200 and answer.json()["backend"] == "torch"
    messages = [r.getMessage() for r in caplog.records]
    assert any("weights in bf16" in m for m in messages), messages
    assert any("ready on torch/cpu (bf16)" in m for m in messages), messages


def test_the_onnx_backend_reports_the_exported_precision(tiny_export: Path) -> None:
    name = json.loads((tiny_export / "manifest.json").read_text())["model"]["name"]
    exported = load_manifest(tiny_export).model.precision
    with TestClient(create_app(ServeSettings(model=tiny_export, backend="onnxruntime"))) as client:
        deadline = time.monotonic() + 60
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.1)
        meta = client.get(f"/v2/models/{name}").json()
        assert meta["precision"] == exported
        assert meta["graph_form"] == load_manifest(tiny_export).graph.form
