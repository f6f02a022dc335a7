"""KServe-v2-style probes and model metadata, and the Prometheus ``/metrics``.

Probes are open (no bearer token). ``live`` answers 200 while the model loads; once loading has
failed every route but ``/metrics`` answers 503 ``model_unavailable`` with the cause.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from seg3d.points import PointFormat
from serve.dependencies import Model, State, model_up, require_auth
from serve.errors import ServiceError
from serve.schemas import error_responses

__all__ = ["router"]

router = APIRouter()

_UNAVAILABLE = error_responses({503: "model_unavailable: the model failed to load (the cause is given)"})


@router.get("/v2/health/live", tags=["health"], dependencies=[Depends(model_up)], responses=_UNAVAILABLE)
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    tags=["health"],
    responses=error_responses({503: "warming_up (loading, see Retry-After) or model_unavailable"}),
)
async def ready(_: Model) -> dict[str, bool]:
    return {"ready": True}


@router.get(
    "/v2/models/{name}",
    tags=["metadata"],
    dependencies=[Depends(require_auth)],
    responses=error_responses(
        {
            401: "unauthorized: missing or wrong bearer token (when auth is on)",
            404: "unknown_model; the error object's `served` lists the names served",
            422: "invalid_parameter: the request could not be validated",
            503: "warming_up (see Retry-After) or model_unavailable",
        }
    ),
)
async def model_metadata(name: str, model: Model, state: State) -> dict[str, Any]:
    if name != model.name:
        served = [model.name]
        raise ServiceError(
            404,
            "unknown_model",
            f"model {name!r} is not served here; served: {', '.join(served)}",
            details={"served": served},
        )
    backend = model.segmenter.backend
    return {
        "name": name,
        "versions": ["1"],
        "platform": backend.name,
        "backend": backend.name,
        "device": backend.device,
        "precision": model.precision,
        "graph_form": model.graph_form,
        "graph": None if model.graph_served is None else model.graph_served.name,
        "int8_layers": model.int8_layers,
        "classes": model.manifest.classes.names,
        "formats": {f.value: f.description for f in PointFormat},
        "max_points": state.settings.max_points,
        "manifest": model.manifest.model_dump(mode="json", by_alias=True),
    }


@router.get("/metrics", tags=["metadata"])
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
