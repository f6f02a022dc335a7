"""Which model answered: the served name is the manifest's ``model.name`` unless ``--name`` /
``SEG_MODEL_NAME`` overrides it, and every route, header, metric and log line reports that one name.

Real server processes (the session's, and one per way of renaming), plus ``main`` in-process for
the exit-2 and ``--help`` checks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve.__main__ import main
from serve.backends import DESCRIPTIONS, ORDER
from serve.local import start_local_server
from serve.model import ModelState, ModelStatus
from serve.settings import ServeSettings
from tests.serve.conftest import Server

BODY = np.zeros((10, 5), "<f4").tobytes()
OCTET = {"Content-Type": "application/octet-stream"}


def _manifest_name(model_dir: Path) -> str:
    name: str = json.loads((model_dir / "manifest.json").read_text())["model"]["name"]
    return name


def _assert_reports(client: httpx.Client, name: str) -> None:
    """Every place the service names its model says ``name``; any other name is a 404 listing it."""
    as_json = client.post("/segment", content=BODY, headers=OCTET)
    assert as_json.status_code == 200 and as_json.json()["model"] == name
    as_bin = client.post("/segment", content=BODY, headers={**OCTET, "Accept": "application/octet-stream"})
    assert as_bin.status_code == 200 and as_bin.headers["X-Model-Name"] == name
    meta = client.get(f"/v2/models/{name}")
    assert meta.status_code == 200 and meta.json()["name"] == name
    info = [line for line in client.get("/metrics").text.splitlines() if line.startswith("seg_model_info{")]
    assert len(info) == 1 and f'name="{name}"' in info[0], info

    wrong = client.get("/v2/models/not-this-one")
    assert wrong.status_code == 404
    assert wrong.json() == {  # the Open Inference Protocol's error shape, on every /v2 path
        "error": f"model 'not-this-one' is not served here; served: {name}",
        "code": "unknown_model",
        "served": [name],
    }


def test_the_default_name_is_the_manifests(server: Server) -> None:
    with server.client() as client:
        _assert_reports(client, _manifest_name(server.model_dir))


@pytest.fixture(params=["flag", "env"])
def renamed(request: pytest.FixtureRequest, tiny_export: Path) -> Iterator[str]:
    """A server on the session's export, renamed ``other`` by ``--name`` or ``SEG_MODEL_NAME``."""
    args = ["--backend", "onnxruntime", "--log-level", "warning"]
    if request.param == "flag":
        local = start_local_server(tiny_export, *args, "--name", "other")
    else:
        local = start_local_server(tiny_export, *args, env={"SEG_MODEL_NAME": "other"})
    yield local.url
    local.stop()


def test_name_overrides_what_every_route_reports(renamed: str, tiny_export: Path) -> None:
    assert _manifest_name(tiny_export) != "other"
    with httpx.Client(base_url=renamed, timeout=60) as client:
        _assert_reports(client, "other")
        exported = _manifest_name(tiny_export)
        assert client.get(f"/v2/models/{exported}").json()["served"] == ["other"]
        # the metadata still carries the manifest as exported
        assert client.get("/v2/models/other").json()["manifest"]["model"]["name"] == exported


def test_the_ready_log_line_and_metric_use_the_served_name(
    tiny_export: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = ModelState(ServeSettings(model=tiny_export, backend="onnxruntime", model_name="other"))
    with caplog.at_level(logging.INFO, logger="serve"):
        state.load()
    state.close()
    assert state.status is ModelStatus.READY and state.model is not None and state.model.name == "other"
    ready = [r.getMessage() for r in caplog.records if "ready on" in r.getMessage()]
    assert len(ready) == 1 and ready[0].startswith("model other (exported as "), ready
    assert (
        state.metrics.registry.get_sample_value(
            "seg_model_info",
            {
                "name": "other",
                "backend": "onnxruntime",
                "device": "cpu",
                "precision": state.model.manifest.model.precision,
            },
        )
        == 1.0
    )


@pytest.mark.parametrize("name", ["demo", "tiny-v2.1_b", "x" * 64, "..a", "A.B"])
def test_valid_names(name: str) -> None:
    assert ServeSettings(model_name=name).model_name == name


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65, ".", "..", "na\u00efve", "a b", "a%2Fb", "a?b"])
@pytest.mark.parametrize("source", ["flag", "env"])
def test_an_invalid_name_exits_2_in_one_line(
    name: str, source: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if source == "flag":
        assert main(["--name", name, "--port", "0"]) == 2
    else:
        monkeypatch.setenv("SEG_MODEL_NAME", name)
        assert main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: invalid settings: model_name"), err
    assert "--name / SEG_MODEL_NAME" in err and "URL path segment" in err, err


def test_help_explains_backend_and_name_without_double_backticks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text
    flat = " ".join(text.split())  # argparse wraps the help lines
    backend_help = flat.split("--backend {auto,", 1)[1].split(" --host ", 1)[0]
    assert "auto (the default)" in backend_help
    for backend in ORDER:
        assert f"{backend}: {DESCRIPTIONS[backend]}" in backend_help
    assert "--name NAME" in flat and "SEG_MODEL_NAME" in flat
    assert set(DESCRIPTIONS) == set(ORDER)
