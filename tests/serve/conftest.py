"""A real uvicorn server process on a loopback port, serving a tiny model exported for the tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import export.to_trt as to_trt
from serve.local import start_local_server

MAX_POINTS = 200_000


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    assert (
        to_trt.main(["--config", "tiny", "--random-init", "--seed", "5", "--out", str(out), "--skip-parity"])
        == 0
    )
    return out


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    model_dir: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def server(tiny_export: Path) -> Iterator[Server]:
    local = start_local_server(
        tiny_export, "--backend", "onnxruntime", "--max-points", str(MAX_POINTS), "--log-level", "warning"
    )
    yield Server(local.url, local.process, tiny_export)
    local.stop()
