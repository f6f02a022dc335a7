"""Fail loudly at start-up: a model that cannot be loaded or warmed up stops ``python -m serve``.

Real processes on loopback ports, on copies of the session's export broken in one way each: the
process must exit 3 within seconds with one log line naming the file and the cause (2 for bad
settings), or with ``--keep-up`` stay up answering 503 ``model_unavailable`` on every route.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve.__main__ import main
from serve.app import create_app
from serve.backends import ORDER, BackendName, OnnxRuntimeBackend
from serve.local import free_port, start_local_server
from serve.settings import BackendChoice, ServeSettings

REPO = Path(__file__).resolve().parents[2]
EXIT_WITHIN_S = 30.0
BODY = np.zeros((10, 5), "<f4").tobytes()
OCTET = {"Content-Type": "application/octet-stream"}


def _edit_manifest(folder: Path, edit: Callable[[dict], None]) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def _truncate(folder: Path, name: str) -> None:
    path = folder / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rehash(folder: Path, name: str) -> None:
    """Record ``name`` as it is now, so the manifest check passes and its runtime must refuse it."""
    data = (folder / name).read_bytes()
    record = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _edit_manifest(folder, lambda m: m["files"].__setitem__(name, record))


def _flip_byte(folder: Path, name: str) -> None:
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def no_model_config(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.pop("model_config"))


def foreign_format(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.__setitem__("format", "other-export/7"))


def truncated_onnx(folder: Path) -> None:
    _truncate(folder, "model.onnx")


def unparsable_onnx(folder: Path) -> None:
    _truncate(folder, "model.onnx")
    _rehash(folder, "model.onnx")


def truncated_encoder(folder: Path) -> None:
    _truncate(folder, "encoder3d.pt")


def unloadable_encoder(folder: Path) -> None:
    _truncate(folder, "encoder3d.pt")
    _rehash(folder, "encoder3d.pt")


def flipped_onnx(folder: Path) -> None:
    _flip_byte(folder, "model.onnx")


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Path], None] | None
    args: tuple[str, ...]
    env: dict[str, str]
    exit_code: int
    says: tuple[str, ...]  # every one of these appears in stderr


TORCH = ("--backend", "torch")
CASES = {
    "no_model_config": Case(no_model_config, (), {}, 3, ("manifest.json", "model_config", "Field required")),
    "foreign_format": Case(foreign_format, (), {}, 3, ("manifest.json", "format 'other-export/7'")),
    "truncated_onnx": Case(truncated_onnx, (), {}, 3, ("model.onnx", "truncated")),
    "unparsable_onnx": Case(unparsable_onnx, (), {}, 3, ("model.onnx", "ONNX Runtime cannot load")),
    "truncated_encoder": Case(truncated_encoder, TORCH, {}, 3, ("encoder3d.pt", "truncated")),
    "unloadable_encoder": Case(
        unloadable_encoder, TORCH, {}, 3, ("encoder3d.pt", "not a readable checkpoint")
    ),
    "flipped_onnx": Case(flipped_onnx, (), {}, 3, ("model.onnx", "SHA-256", "differs from the manifest")),
    "unknown_backend": Case(None, (), {"SEG_BACKEND": "foo"}, 2, ("invalid settings", "SEG_BACKEND", "foo")),
}  # fmt: skip


@dataclass
class Outcome:
    returncode: int | None
    seconds: float
    stderr: str


def _broken_copy(source: Path, root: Path, name: str, breaks: Callable[[Path], None] | None) -> Path:
    folder = root / name
    shutil.copytree(source, folder)
    if breaks is not None:
        breaks(folder)
    return folder


def _run_to_exit(folder: Path, case: Case) -> Outcome:
    command = [sys.executable, "-m", "serve", "--model", str(folder), "--port", str(free_port())]
    command += ["--log-level", "warning", *case.args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_")} | case.env
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_WITHIN_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else str(exc.stderr)
        return Outcome(None, EXIT_WITHIN_S, stderr)
    return Outcome(done.returncode, time.monotonic() - start, done.stderr)


@pytest.fixture(scope="module")
def outcomes(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case's process, two at a time (each spends its seconds importing torch)."""
    root = tmp_path_factory.mktemp("broken")
    folders = {name: _broken_copy(tiny_export, root, name, case.breaks) for name, case in CASES.items()}
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(_run_to_exit, folders[name], case) for name, case in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", CASES)
def test_a_broken_model_or_setting_exits_at_once_naming_the_cause(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    case, outcome = CASES[name], outcomes[name]
    assert outcome.returncode == case.exit_code, (outcome.returncode, outcome.stderr[-2000:])
    assert outcome.seconds < EXIT_WITHIN_S
    for phrase in case.says:
        assert phrase in outcome.stderr, (phrase, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr
    if case.exit_code == 3:  # one line with the cause, logged once
        lines = [line for line in outcome.stderr.splitlines() if "model could not be loaded" in line]
        assert len(lines) == 1 and all(phrase in lines[0] for phrase in case.says), outcome.stderr[-2000:]
    else:
        assert len([line for line in outcome.stderr.splitlines() if line.startswith("error:")]) == 1


def _assert_unavailable(response: httpx.Response, *phrases: str) -> None:
    """503 model_unavailable with the cause, in the route's error shape: the KServe v2 paths answer
    ``{"error": message, "code": ...}``, the others ``{"error": {"code": ..., "message": ...}}``."""
    assert response.status_code == 503, response.text[:300]
    body = response.json()
    v2 = response.request.url.path.startswith("/v2/")
    code, message = (body["code"], body["error"]) if v2 else (body["error"]["code"], body["error"]["message"])
    assert code == "model_unavailable", body
    assert all(phrase in message for phrase in phrases), body


def _until_settled(client: httpx.Client | TestClient, timeout: float = EXIT_WITHIN_S) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (r := client.get("/v2/health/ready")).status_code == 503 and r.json()["code"] == "warming_up":
        assert time.monotonic() < deadline, "still warming_up"
        time.sleep(0.1)
    return r


@pytest.fixture(
    scope="module", params=[("flipped_onnx", "flag"), ("unparsable_onnx", "env")], ids=lambda p: p[0]
)
def kept_up(
    request: pytest.FixtureRequest, tiny_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    name, how = request.param
    folder = _broken_copy(tiny_export, tmp_path_factory.mktemp("kept"), name, CASES[name].breaks)
    args, env = (("--keep-up",), {}) if how == "flag" else ((), {"SEG_KEEP_UP": "1"})
    local = start_local_server(folder, "--log-level", "warning", *args, env=env, wait="answering")
    yield name, local.url
    local.stop()


def test_keep_up_answers_model_unavailable_everywhere(kept_up: tuple[str, str]) -> None:
    name, url = kept_up
    says = CASES[name].says[:2]
    with httpx.Client(base_url=url, timeout=30) as client:
        _assert_unavailable(_until_settled(client), *says)
        _assert_unavailable(client.get("/v2/health/live"), *says)
        _assert_unavailable(client.get("/v2/models/tiny"), *says)
        _assert_unavailable(client.post("/segment", content=BODY, headers=OCTET), *says)
        _assert_unavailable(client.post("/segment?format=kitti", files={"file": ("x.bin", BODY)}), *says)
        time.sleep(0.5)  # and it stays up, never warming_up again
        _assert_unavailable(client.get("/v2/health/ready"), *says)
        assert 'seg_errors_total{code="model_unavailable",status="503"} 2.0' in client.get("/metrics").text


def test_a_warm_up_inference_that_raises_fails_the_start(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: OnnxRuntimeBackend, inputs: object) -> np.ndarray:
        raise RuntimeError("CUDA kernel exploded")

    monkeypatch.setattr(OnnxRuntimeBackend, "predict", broken)
    failed = threading.Event()
    causes: list[str] = []

    def on_failure(cause: str) -> None:
        causes.append(cause)
        failed.set()

    settings = ServeSettings(model=tiny_export, backend="onnxruntime", auth_token="s3cret")
    with TestClient(create_app(settings, on_failure=on_failure)) as client:
        assert failed.wait(EXIT_WITHIN_S), "the failure callback did not fire"
        assert len(causes) == 1
        says = ("warm-up inference", "onnxruntime", "RuntimeError: CUDA kernel exploded", str(tiny_export))
        assert all(phrase in causes[0] for phrase in says), causes
        _assert_unavailable(_until_settled(client), *says[:3])
        _assert_unavailable(client.get("/v2/health/live"), *says[:3])
        auth = {"Authorization": "Bearer s3cret"}
        _assert_unavailable(client.get("/v2/models/tiny", headers=auth), *says[:3])
        _assert_unavailable(client.post("/segment", content=BODY, headers={**OCTET, **auth}), *says[:3])
        assert client.post("/segment", content=BODY, headers=OCTET).status_code == 401  # auth still first


def test_cli_exits_3_when_the_model_fails(tmp_path: Path, tiny_export: Path) -> None:
    """In-process `main`: the failure callback stops uvicorn and the exit code says why."""
    folder = _broken_copy(tiny_export, tmp_path, "broken", flipped_onnx)
    start = time.monotonic()
    assert main(["--model", str(folder), "--port", str(free_port()), "--log-level", "warning"]) == 3
    assert time.monotonic() - start < EXIT_WITHIN_S


def test_bad_settings_exit_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEG_MAX_QUEUE", "0")
    assert main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_queue" in err and "SEG_MAX_QUEUE" in err, err
    with pytest.raises(SystemExit) as exit_info:  # argparse: the choices come from BackendName
        main(["--backend", "foo"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'foo'" in capsys.readouterr().err


def test_backend_names_have_one_source() -> None:
    assert ORDER == get_args(BackendName) == ("tensorrt", "onnxruntime", "torch", "spconv")
    assert get_args(BackendChoice) == ("auto", *ORDER)
    assert ServeSettings.model_fields["backend"].annotation == BackendChoice
