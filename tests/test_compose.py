"""docker-compose.yml and its Dockerfiles, checked by parsing (no Docker engine on CI)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}``: the variable when set and non-empty, else the default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)


def test_both_services_with_ready_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {"gpu", "cpu"}
    for name, service in services.items():
        assert service["profiles"] == [name]
        check = service["healthcheck"]
        assert any("/v2/health/ready" in part for part in check["test"])
        assert check["start_period"].endswith("s") and int(check["start_period"][:-1]) >= 60
        assert _interpolate(service["environment"]["SEG_MODEL"], {}) == "/models/demo"
        assert _interpolate(service["environment"]["SEG_MODEL"], {"MODEL": "mine"}) == "/models/mine"
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile


def test_gpu_service_reserves_a_gpu_and_builds_the_engine() -> None:
    gpu = _compose()["services"]["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["SEG_BACKEND"] == "tensorrt"
    assert not any(v.endswith(":ro") for v in gpu["volumes"])  # the engine is written into the model folder
    dockerfile = (ROOT / gpu["build"]["dockerfile"]).read_text()
    assert "nvcr.io/nvidia/tensorrt" in dockerfile
    entrypoint = (ROOT / "docker" / "gpu-entrypoint.sh").read_text()
    assert "model.engine" in entrypoint and "export/to_trt.py --onnx" in entrypoint


def test_cpu_service_has_no_gpu_reservation() -> None:
    cpu = _compose()["services"]["cpu"]
    assert "deploy" not in cpu and cpu["environment"]["SEG_BACKEND"] == "onnxruntime"
    assert "download.pytorch.org/whl/cpu" in (ROOT / cpu["build"]["dockerfile"]).read_text()


def test_the_build_context_leaves_out_what_is_large_or_local() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", "runs", "exports", ".git"} <= ignored
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.gpu"):
        copied = re.findall(r"^COPY (?!docker/)(\S+)", (ROOT / "docker" / dockerfile).read_text(), re.M)
        assert copied and not set(copied) & ignored, (dockerfile, copied)


def test_both_services_serve_grpc_on_a_published_port() -> None:
    for name, service in _compose()["services"].items():
        port = int(service["environment"]["SEG_GRPC_PORT"])  # python -m serve --grpc-port
        assert 1 <= port <= 65535 and port != 8000, name
        assert {"8000:8000", f"{port}:{port}"} <= set(service["ports"]), name


def test_the_images_install_the_grpc_extra_the_services_need() -> None:
    # without it `python -m serve` refuses SEG_GRPC_PORT (exit 2) and the container never serves
    for name, service in _compose()["services"].items():
        dockerfile = service["build"]["dockerfile"]
        extras = re.findall(r"pip install [^\n]*\.\[([^\]]*)\]", (ROOT / dockerfile).read_text())
        assert any("grpc" in e.split(",") for e in extras), f"{name}: install '.[grpc]' in {dockerfile}"
