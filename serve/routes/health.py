"""KServe v2 health probes and the Prometheus ``/metrics`` (model metadata and inference:
`serve.routes.v2`).

Probes are open (no bearer token). ``live`` answers 200 while the model loads; once loading has
failed every route but ``/metrics`` answers 503 ``model_unavailable`` with the cause.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.dependencies import Model, State, model_up
from serve.schemas import protocol_error_responses

__all__ = ["router"]

router = APIRouter()

_UNAVAILABLE = protocol_error_responses(
    {503: "model_unavailable: the model failed to load (the cause is given)"}
)


@router.get("/v2/health/live", tags=["health"], dependencies=[Depends(model_up)], responses=_UNAVAILABLE)
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    tags=["health"],
    responses=protocol_error_responses({503: "warming_up (loading, see Retry-After) or model_unavailable"}),
)
async def ready(_: Model) -> dict[str, bool]:
    return {"ready": True}


@router.get("/metrics", tags=["metadata"])
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
