"""Run the service as its own process on a free loopback port (end-to-end tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["LocalServer", "free_port", "start_local_server"]

_REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalServer:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self, timeout: float = 15.0) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _status(url: str) -> int | None:
    """The HTTP status of ``GET url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def start_local_server(
    model_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
    wait: Literal["ready", "answering"] = "ready",
) -> LocalServer:
    """``python -m serve --model model_dir --port <free> *args``, returned once it reports ready
    (``wait="answering"``: once it answers ``/v2/health/live`` at all, whatever the status).

    Raises:
        RuntimeError: the process exited, or did not become ready within ``ready_timeout`` s.
    """
    port = free_port()
    command = [sys.executable, "-m", "serve", "--model", str(model_dir), "--port", str(port), *args]
    process = subprocess.Popen(command, cwd=_REPO, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {' '.join(command)}")
        if wait == "ready" and _status(f"{url}/v2/health/ready") == 200:
            return LocalServer(process, url)
        if wait == "answering" and _status(f"{url}/v2/health/live") is not None:
            return LocalServer(process, url)
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server did not become ready within {ready_timeout:.0f} s: {' '.join(command)}")
