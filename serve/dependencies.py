"""FastAPI dependencies of the routes: the state, bearer auth, readiness and admission.

Each refuses by raising `ServiceError` (rendered by `serve.errors`), so a handler runs only for a
request that may proceed. Probes (``/v2/health/*``) take none of them but `model_up`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from serve.errors import ServiceError
from serve.model import LoadedModel, ModelState, ModelStatus

__all__ = ["Model", "State", "admit", "get_state", "model_up", "ready_model", "require_auth"]


def get_state(request: Request) -> ModelState:
    state: ModelState = request.app.state.seg
    return state


State = Annotated[ModelState, Depends(get_state)]


def unavailable(state: ModelState) -> ServiceError:
    return ServiceError(503, "model_unavailable", f"model failed to load: {state.failure}")


def model_up(state: State) -> None:
    """Refuse with 503 ``model_unavailable`` (and the cause) once loading has failed."""
    if state.status is ModelStatus.FAILED:
        raise unavailable(state)


def ready_model(state: State) -> LoadedModel:
    """The loaded model, or 503: ``model_unavailable`` after a failed load, ``warming_up`` before."""
    model_up(state)
    if state.status is not ModelStatus.READY or state.model is None:
        raise ServiceError(
            503,
            "warming_up",
            "the model is loading or warming up",
            {"Retry-After": str(state.settings.retry_after_s)},
        )
    return state.model


def require_auth(request: Request, state: State) -> None:
    """With an auth token set, 401 (``WWW-Authenticate: Bearer``) unless the request carries it."""
    token = state.settings.auth_token
    if token and request.headers.get("authorization", "") != f"Bearer {token}":
        raise ServiceError(
            401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
        )


async def admit(state: State) -> AsyncIterator[None]:
    """Admit the request, or 503 ``queue_full`` when ``max_queue`` are already running or waiting."""
    if state.admitted >= state.settings.max_queue:
        raise ServiceError(
            503,
            "queue_full",
            f"{state.admitted} requests in flight; try again",
            {"Retry-After": str(state.settings.retry_after_s)},
        )
    state.admitted += 1
    state.metrics.inflight.inc()
    try:
        yield
    finally:
        state.admitted -= 1
        state.metrics.inflight.dec()


Model = Annotated[LoadedModel, Depends(ready_model)]
