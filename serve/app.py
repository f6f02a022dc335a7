"""The FastAPI application: ``POST /segment``, the Open Inference Protocol (KServe v2: health, metadata,
inference) and ``/metrics``.

The model loads and warms up on a background thread (`serve.model`), so ``/v2/health/live`` answers
at once and ``/v2/health/ready`` turns 200 only after a warm-up inference. If loading fails, every
route but ``/metrics`` answers 503 ``model_unavailable`` with the cause, and ``on_failure`` is called
with it (``python -m serve`` then exits). Every request's CPU/GPU work runs on one inference thread
(the model is not shared between threads), behind an admission count of ``max_queue`` requests:
more get 503 with ``Retry-After`` instead of piling up. Errors are always JSON
``{"error": {"code": ..., "message": ...}}``, and ``{"error": message, "code": ...}`` (the protocol's
shape) on the ``/v2`` paths. ``/docs`` (Swagger UI) is served from vendored files,
without a CDN (`serve.docs`); ReDoc is off. With a gRPC port set, the lifespan also serves the
protocol over gRPC (`serve.grpc_service`) on the same event loop and `ModelState`: one model, one
admission bound and one inference thread for both transports. ``GET /`` is the web viewer
(`serve.routes.viewer`): a page that segments a dropped point file through ``POST /segment`` and
draws it, from vendored three.js.

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
from serve.routes import health, segment, v2
from serve.routes.viewer import install_viewer
from serve.settings import ServeSettings

__all__ = ["create_app"]


def create_app(
    settings: ServeSettings | None = None, on_failure: Callable[[str], None] | None = None
) -> FastAPI:
    """The service for ``settings``; ``on_failure(cause)`` is called if the model fails to load."""
    state = ModelState(settings or ServeSettings(), on_failure=on_failure)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        grpc_server = None
        port = state.settings.grpc_port
        if port is not None:
            # imported here: the gRPC extra is optional, and only a gRPC port needs it
            from serve.grpc_service import STOP_GRACE_S, start_grpc_server

            # bound before the model loads, so a taken port fails at once (uvicorn then exits 1)
            grpc_server = await start_grpc_server(state, state.settings.host, port)
        state.start_loading()
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(STOP_GRACE_S)
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
    app.include_router(v2.router)
    app.include_router(v2.infer_router)
    install_viewer(app)
    return app
