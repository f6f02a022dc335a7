"""A real uvicorn server process on a loopback port, serving a tiny model exported for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import export.to_trt as to_trt

ROOT = Path(__file__).resolve().parents[2]
MAX_POINTS = 200_000


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    assert (
        to_trt.main(["--config", "tiny", "--random-init", "--seed", "5", "--out", str(out), "--skip-parity"])
        == 0
    )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    model_dir: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def start_server(model_dir: Path, env: dict[str, str] | None = None, *args: str) -> Server:
    port = _free_port()
    command = [sys.executable, "-m", "serve", "--model", str(model_dir), "--port", str(port),
               "--max-points", str(MAX_POINTS), "--log-level", "warning", *args]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return Server(url, process, model_dir)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not become ready within 120 s")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(tiny_export: Path) -> Iterator[Server]:
    s = start_server(tiny_export, None, "--backend", "onnxruntime")
    yield s
    stop_server(s)
