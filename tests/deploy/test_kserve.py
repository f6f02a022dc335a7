"""deploy/kserve/inferenceservice.yaml, checked by parsing against the service it runs (no cluster
here): every ``SEG_*`` variable is a setting of the service with a valid value, the probes are
routes the app serves, and each InferenceService exposes the port its settings listen on, under the
name Knative routes by protocol (``http1`` REST, ``h2c`` gRPC)."""

from __future__ import annotations

from pathlib import Path

import yaml

from serve.app import create_app
from serve.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[2]


def _services() -> list[dict]:
    documents = yaml.safe_load_all((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    return [d for d in documents if d]


def _settings(container: dict) -> ServeSettings:
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    fields = {
        name.removeprefix("SEG_").lower(): value for name, value in env.items() if name.startswith("SEG_")
    }
    unknown = set(fields) - set(ServeSettings.model_fields)
    assert not unknown, f"not settings of the service: {unknown}"
    return ServeSettings(**fields)  # validates the values (ports, backend, model name)


def test_each_inference_service_serves_its_protocol_on_the_port_it_exposes() -> None:
    services = _services()
    assert [s["kind"] for s in services] == ["InferenceService", "InferenceService"]
    routes = set(create_app(ServeSettings()).openapi()["paths"])
    exposed = {}
    for service in services:
        (container,) = service["spec"]["predictor"]["containers"]
        settings = _settings(container)
        assert str(settings.model) == "/mnt/models"  # where KServe's storage initializer writes
        (port,) = container["ports"]
        exposed[port["name"]] = port["containerPort"]
        if port["name"] == "http1":
            assert port["containerPort"] == settings.port
        else:
            assert port["name"] == "h2c" and port["containerPort"] == settings.grpc_port
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container:
                get = container[probe]["httpGet"]
                assert get["path"] in routes and get["port"] == settings.port
    assert set(exposed) == {"http1", "h2c"}
