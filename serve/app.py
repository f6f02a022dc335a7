"""The FastAPI application: ``POST /segment`` plus KServe-v2-style health/metadata and ``/metrics``.

The model loads and warms up on a background thread, so ``/v2/health/live`` answers at once and
``/v2/health/ready`` turns 200 only after a warm-up inference. Every request's CPU/GPU work runs on
one inference thread (the model is not shared between threads), behind an admission count of
``max_queue`` requests: more get 503 with ``Retry-After`` instead of piling up. Errors are always
JSON ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from seg3d.config import ModelConfig
from seg3d.io import POINT_FORMATS
from seg3d.manifest import load_manifest
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.testing import synthetic_sweep
from serve.backends import BackendUnavailable, choose_backend
from serve.segmenter import InputError, Segmenter
from serve.settings import ServeSettings

__all__ = ["create_app"]

log = logging.getLogger("serve")
_MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part
_STAGES = ("parse", "preprocess", "inference", "postprocess")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


@dataclass
class _Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "seg_requests", "POST /segment requests by HTTP status", ["status"], registry=r
        )
        self.errors = Counter(
            "seg_errors", "refused or failed requests by status and code", ["status", "code"], registry=r
        )
        self.latency = Histogram(
            "seg_request_seconds",
            "POST /segment end to end",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.stage = Histogram(
            "seg_stage_seconds",
            "time per stage",
            ["stage"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.points = Histogram(
            "seg_points",
            "points per request",
            registry=r,
            buckets=(0, 1_000, 10_000, 35_000, 100_000, 300_000, 1_000_000, 2_000_000),
        )
        self.inflight = Gauge("seg_inflight", "requests admitted (running or waiting)", registry=r)
        self.info = Gauge(
            "seg_model_info", "the served model", ["name", "backend", "device", "precision"], registry=r
        )


@dataclass
class _State:
    settings: ServeSettings
    metrics: _Metrics
    manifest: dict[str, Any] | None = None
    config: ModelConfig | None = None
    segmenter: Segmenter | None = None
    ready: bool = False
    failure: str | None = None
    admitted: int = 0
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="seg-infer")
    )


def _load_and_warm(state: _State) -> None:
    """Background start-up: manifest, backend, one warm-up inference, then ready."""
    settings = state.settings
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        manifest, config = load_manifest(settings.model)
        warm = synthetic_sweep(settings.warmup_points, intensity_max=config.input.intensity_max)
        # `auto` times every backend on this cloud; a named backend needs no probe.
        probe = (
            prepare_inputs(warm[crop_mask(warm[:, :3], config.grid)], config)
            if settings.backend == "auto"
            else None
        )
        backend = choose_backend(settings.backend, settings.model, config, settings.threads, probe)
        segmenter = Segmenter(config, backend, settings.max_points)
        start = time.perf_counter()
        segmenter.segment(warm.numpy())
        log.info(
            "model %s ready on %s/%s after a %.0f ms warm-up%s",
            config.name,
            backend.name,
            backend.device,
            (time.perf_counter() - start) * 1e3,
            " (UNTRAINED: random-init export)" if manifest["model"].get("random_init") else "",
        )
        state.manifest, state.config, state.segmenter = manifest, config, segmenter
        state.metrics.info.labels(
            config.name, backend.name, backend.device, manifest["model"]["precision"]
        ).set(1)
        state.ready = True
    except (OSError, ValueError, BackendUnavailable) as exc:
        state.failure = str(exc)
        log.error("model could not be loaded: %s", exc)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    state = _State(settings=settings, metrics=_Metrics())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=_load_and_warm, args=(state,), name="seg-load", daemon=True)
        loader.start()
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="2DDATA LiDAR segmentation",
        version="0.1.0",
        summary="POST a point cloud, get one semantic label per point.",
        lifespan=lifespan,
    )
    app.state.seg = state

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_parameter", f"{where}: {first.get('msg', 'invalid request')}")

    def not_ready() -> JSONResponse:
        if state.failure:
            return _error(503, "model_unavailable", f"model failed to load: {state.failure}")
        return _error(
            503,
            "warming_up",
            "the model is loading or warming up",
            {"Retry-After": str(settings.retry_after_s)},
        )

    def unauthorized(request: Request) -> JSONResponse | None:
        if not settings.auth_token:
            return None
        if request.headers.get("authorization", "") != f"Bearer {settings.auth_token}":
            return _error(
                401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )
        return None

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"], responses={503: {"description": "loading or warming up"}})
    async def ready() -> Any:
        return {"ready": True} if state.ready else not_ready()

    @app.get("/v2/models/{name}", tags=["metadata"], responses={404: {"description": "no such model"}})
    async def model_metadata(name: str, request: Request) -> Any:
        if (denied := unauthorized(request)) is not None:
            return denied
        if not state.ready or state.manifest is None or state.segmenter is None:
            return not_ready()
        if name != state.manifest["model"]["name"]:
            return _error(404, "unknown_model", f"model {name!r} is not served here")
        backend = state.segmenter.backend
        return {
            "name": name,
            "versions": ["1"],
            "platform": backend.name,
            "backend": backend.name,
            "device": backend.device,
            "classes": state.manifest["classes"]["names"],
            "formats": {k: v.description for k, v in POINT_FORMATS.items()},
            "max_points": settings.max_points,
            "manifest": state.manifest,
        }

    @app.get("/metrics", tags=["metadata"])
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def read_body(request: Request) -> bytes:
        """The point file from a raw body or a multipart ``file`` part, within the size cap."""
        cap = settings.max_points * 4 * max(f.columns for f in POINT_FORMATS.values()) + _MULTIPART_SLACK
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise InputError(413, "too_large", f"body of {declared} bytes exceeds the limit of {cap} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/octet-stream":
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise InputError(413, "too_large", f"body exceeds the limit of {cap} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        if content_type == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=4)
            except (StarletteHTTPException, MultiPartException, KeyError, ValueError) as exc:
                # Starlette reports a malformed multipart body (no boundary, too many parts) as a 400.
                detail = getattr(exc, "detail", None) or str(exc)
                raise InputError(400, "bad_multipart", f"malformed multipart body: {detail}") from exc
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InputError(422, "missing_file", "multipart body needs a file part named 'file'")
            data = await upload.read()
            await form.close()
            return data
        raise InputError(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type or '(none)'!r}: "
            "send application/octet-stream or multipart/form-data",
        )

    @app.post(
        "/segment",
        tags=["segmentation"],
        summary="Segment one point cloud",
        description=(
            "Body: the raw point file (`Content-Type: application/octet-stream`) or multipart with a "
            "`file` part. `format`: "
            + "; ".join(f"`{k}` = {v.description}" for k, v in POINT_FORMATS.items())
            + ". Response: JSON by default; with `Accept: application/octet-stream`, N bytes of uint8 "
            "labels in input order (the nuScenes lidarseg `.bin` layout)."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    },
                },
            }
        },
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "one label per input point"},
            401: {"description": "missing or wrong bearer token (when auth is on)"},
            413: {"description": "too many points or too large a body"},
            415: {"description": "unsupported Content-Type"},
            400: {"description": "malformed multipart body"},
            422: {"description": "bad length, NaN/Inf, unknown format, missing file part"},
            503: {"description": "warming up or queue full; see Retry-After"},
        },
    )
    async def segment(request: Request, format: str = "nuscenes") -> Response:
        m = state.metrics
        started = time.perf_counter()
        if (denied := unauthorized(request)) is not None:
            m.requests.labels("401").inc()
            return denied
        if not state.ready:
            m.requests.labels("503").inc()
            m.errors.labels("503", "warming_up").inc()
            return not_ready()
        if state.admitted >= settings.max_queue:
            m.requests.labels("503").inc()
            m.errors.labels("503", "queue_full").inc()
            return _error(
                503,
                "queue_full",
                f"{state.admitted} requests in flight; try again",
                {"Retry-After": str(settings.retry_after_s)},
            )
        state.admitted += 1
        m.inflight.inc()
        try:
            body = await read_body(request)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(state.executor, state.segmenter.handle, body, format)
        except InputError as exc:
            m.requests.labels(str(exc.status)).inc()
            m.errors.labels(str(exc.status), exc.code).inc()
            return _error(exc.status, exc.code, str(exc))
        except Exception:
            log.exception("segmentation failed")
            m.requests.labels("500").inc()
            m.errors.labels("500", "internal").inc()
            return _error(500, "internal", "segmentation failed; see the server log")
        finally:
            state.admitted -= 1
            m.inflight.dec()
        total_ms = (time.perf_counter() - started) * 1e3
        labels, timing = result.labels, result.timing_ms
        for stage in _STAGES:
            if stage in timing:
                m.stage.labels(stage).observe(timing[stage] / 1e3)
        m.latency.observe(total_ms / 1e3)
        m.points.observe(labels.size)
        m.requests.labels("200").inc()
        assert state.manifest is not None and state.segmenter is not None
        model_name = state.manifest["model"]["name"]
        backend = state.segmenter.backend.name
        if "application/octet-stream" in request.headers.get("accept", ""):
            return Response(
                labels.tobytes(),
                media_type="application/octet-stream",
                headers={
                    "X-Num-Points": str(labels.size),
                    "X-Model-Name": model_name,
                    "X-Backend": backend,
                    "X-Inference-Ms": f"{timing.get('inference', 0.0):.2f}",
                },
            )
        return JSONResponse(
            {
                "num_points": int(labels.size),
                "points_in_crop": result.points_in_crop,
                "labels": labels.tolist(),
                "class_names": state.manifest["classes"]["names"],
                "model": model_name,
                "backend": backend,
                "timing_ms": {**{k: round(v, 3) for k, v in timing.items()}, "total": round(total_ms, 3)},
            }
        )

    return app
