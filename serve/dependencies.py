"""FastAPI dependencies of the routes: the state, bearer auth, readiness and admission.

Each refuses by raising `ServiceError` (rendered by `serve.errors`), so a handler runs only for a
request that may proceed. Probes (``/v2/health/*``) take none of them but `model_up`.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from serve.errors import ServiceError
from serve.inference import admission
from serve.model import LoadedModel, ModelState, ModelStatus

__all__ = [
    "Model",
    "State",
    "admit",
    "check_token",
    "get_state",
    "model_up",
    "ready_model",
    "require_auth",
]


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


def check_token(state: ModelState, authorization: str | None) -> None:
    """With an auth token set, 401 (``WWW-Authenticate: Bearer``) unless ``authorization`` (the
    HTTP header, or gRPC's ``authorization`` metadata) is ``Bearer <token>``."""
    token = state.settings.auth_token
    if token and not hmac.compare_digest(authorization or "", f"Bearer {token}"):
        raise ServiceError(
            401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
        )


def require_auth(request: Request, state: State) -> None:
    """`check_token` on the request's ``Authorization`` header."""
    check_token(state, request.headers.get("authorization"))


async def admit(state: State) -> AsyncIterator[None]:
    """Admit the request, or 503 ``queue_full`` when ``max_queue`` are already running or waiting
    (`serve.inference.admission`, which gRPC requests share)."""
    async with admission(state):
        yield


Model = Annotated[LoadedModel, Depends(ready_model)]
