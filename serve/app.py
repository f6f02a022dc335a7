"""The FastAPI application: ``POST /segment`` plus KServe-v2-style health/metadata and ``/metrics``.

The model loads and warms up on a background thread (`serve.model`), so ``/v2/health/live`` answers
at once and ``/v2/health/ready`` turns 200 only after a warm-up inference. If loading fails, every
route but ``/metrics`` answers 503 ``model_unavailable`` with the cause, and ``on_failure`` is called
with it (``python -m serve`` then exits). Every request's CPU/GPU work runs on one inference thread
(the model is not shared between threads), behind an admission count of ``max_queue`` requests:
more get 503 with ``Retry-After`` instead of piling up. Errors are always JSON
``{"error": {"code": ..., "message": ...}}``. ``/docs`` (Swagger UI) is served from vendored files,
without a CDN (`serve.docs`); ReDoc is off.

Layout: `serve.routes` (routers), `serve.dependencies` (auth, readiness, admission),
`serve.errors` (the error shape), `serve.schemas` (response models for OpenAPI), `serve.docs`
(offline ``/docs``), `serve.metrics`, `serve.model` (loading and state).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serve.docs import install_docs
from serve.errors import install_error_handlers
from serve.model import ModelState
from serve.routes import health, segment
from serve.settings import ServeSettings

__all__ = ["create_app"]


def create_app(
    settings: ServeSettings | None = None, on_failure: Callable[[str], None] | None = None
) -> FastAPI:
    """The service for ``settings``; ``on_failure(cause)`` is called if the model fails to load."""
    state = ModelState(settings or ServeSettings(), on_failure=on_failure)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield
        state.close()

    app = FastAPI(
        title="2DDATA LiDAR segmentation",
        version="0.1.0",
        summary="POST a point cloud, get one semantic label per point.",
        lifespan=lifespan,
        # FastAPI's pages load from a CDN; `install_docs` serves /docs from vendored files instead
        docs_url=None,
        redoc_url=None,
    )
    app.state.seg = state
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(segment.router)
    return app
