"""The Open Inference Protocol (KServe v2) over HTTP: server metadata, model metadata and readiness,
and inference (JSON or the binary tensor data extension).

The protocol itself (tensors, formats, the body codec) is `serve.protocol`; this module only binds
it to FastAPI: paths with and without ``/versions/{version}``, the same dependencies as ``/segment``
(bearer auth, readiness, admission) and the same inference path (`serve.inference`), so a cloud gets
byte-identical labels here and there. Errors take the protocol's shape (`serve.errors`).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from seg3d.points import PointFormat
from serve import inference, protocol
from serve.dependencies import Model, State, admit, require_auth
from serve.metrics import RecordedRoute
from serve.routes.segment import read_capped
from serve.schemas import protocol_error_responses

__all__ = ["router"]

router = APIRouter(tags=["kserve-v2"])
infer_router = APIRouter(tags=["kserve-v2"], route_class=RecordedRoute)

_JSON_SLACK = 64 * 1024  # the JSON header around the tensors
# A JSON tensor spells each float in up to ~16 characters plus a separator.
_JSON_BYTES_PER_VALUE = 18

_COMMON = {
    401: "unauthorized: missing or wrong bearer token (when auth is on)",
    404: "unknown_model or unknown_version (the body lists what is served)",
    422: "invalid_parameter: the request could not be validated",
    503: "warming_up (see Retry-After) or model_unavailable",
}


@router.get("/v2", summary="Server metadata", responses=protocol_error_responses({503: _COMMON[503]}))
async def server_metadata() -> dict[str, Any]:
    return protocol.server_metadata()


def _metadata(name: str, version: str | None, model: Model, state: State) -> dict[str, Any]:
    protocol.check_model(name, version, model.name)
    backend = model.segmenter.backend
    classes = model.manifest.classes.names
    return {
        **protocol.model_metadata(model.name, backend.name, classes),
        # beyond the protocol: what a perception engineer asks of a served model
        "backend": backend.name,
        "device": backend.device,
        "precision": model.precision,
        "graph_form": model.graph_form,
        "graph": None if model.graph_served is None else model.graph_served.name,
        "int8_layers": model.int8_layers,
        "int8_arithmetic": model.int8_arithmetic,
        "classes": classes,
        "formats": {f.value: f.description for f in PointFormat},
        "max_points": state.settings.max_points,
        "manifest": model.manifest.model_dump(mode="json", by_alias=True),
    }


_METADATA = {
    "summary": "Model metadata",
    "description": "The protocol's metadata (name, versions, platform, inputs and outputs with their "
    "datatypes and shapes) and the served model's backend, device, precision, classes, point formats, "
    "limit and manifest.",
    "dependencies": [Depends(require_auth)],
    "responses": protocol_error_responses(_COMMON),
}


@router.get("/v2/models/{name}", **_METADATA)  # type: ignore[arg-type]
async def model_metadata(name: str, model: Model, state: State) -> dict[str, Any]:
    return _metadata(name, None, model, state)


@router.get("/v2/models/{name}/versions/{version}", **_METADATA)  # type: ignore[arg-type]
async def model_version_metadata(name: str, version: str, model: Model, state: State) -> dict[str, Any]:
    return _metadata(name, version, model, state)


_READY = {
    "summary": "Model readiness",
    "description": "200 once the model is loaded and warmed up; 503 before (Retry-After) or after a "
    "failed load.",
    "dependencies": [Depends(require_auth)],
    "responses": protocol_error_responses(_COMMON),
}


@router.get("/v2/models/{name}/ready", **_READY)  # type: ignore[arg-type]
async def model_ready(name: str, model: Model) -> dict[str, Any]:
    protocol.check_model(name, None, model.name)
    return {"name": model.name, "ready": True}


@router.get("/v2/models/{name}/versions/{version}/ready", **_READY)  # type: ignore[arg-type]
async def model_version_ready(name: str, version: str, model: Model) -> dict[str, Any]:
    protocol.check_model(name, version, model.name)
    return {"name": model.name, "ready": True}


async def _infer(name: str, version: str | None, request: Request, model: Model, state: State) -> Response:
    protocol.check_model(name, version, model.name)
    started = time.perf_counter()
    max_points = state.settings.max_points
    cap = max_points * max(f.columns for f in PointFormat) * _JSON_BYTES_PER_VALUE + _JSON_SLACK
    raw = await read_capped(request, cap)
    body = protocol.decode_content(raw, request.headers.get("content-encoding"), cap)
    call = protocol.parse_rest_infer(
        body, request.headers.get(protocol.HEADER_LENGTH), max_points, request.query_params.get("format")
    )
    result = await inference.segment(state, model, call.body, call.fmt, call.logits)
    request.state.segmentation = result
    timing = {**{k: round(v, 3) for k, v in result.timing_ms.items()}}
    timing["total"] = round((time.perf_counter() - started) * 1e3, 3)
    content, headers = protocol.rest_infer_response(
        call,
        model.name,
        result.labels,
        result.logits,
        {
            "format": call.fmt.value,
            "points_in_crop": result.points_in_crop,
            "backend": model.segmenter.backend.name,
            "timing_ms": timing,
        },
    )
    return Response(content, headers=headers, media_type=None)


_INFER = {
    "summary": "Inference (Open Inference Protocol)",
    "description": (
        "Input `points`: FP32 `[N, C]`, the rows of a point file; the format from the input's or the "
        "request's `parameters.format` (or `?format=`), else from C (5 nuscenes, 4 kitti, 3 xyz): "
        + "; ".join(f"`{f.value}` = {f.description}" for f in PointFormat)
        + ". As JSON `data`, or binary (the binary tensor data extension: "
        "`Inference-Header-Content-Length` and `binary_data_size`). Outputs: `labels` (UINT8 `[N]`, "
        "the labels of `POST /segment`) by default; `logits` (FP32 `[N, classes]`) when asked for; "
        "`binary_data: true` returns an output as bytes after the JSON header. Content-Encoding gzip "
        "and deflate are read."
    ),
    "dependencies": [Depends(require_auth)],
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    "responses": protocol_error_responses(
        {
            400: "malformed request: JSON, inputs, datatype, shape, sizes, binary header length",
            **_COMMON,
            413: "too_large (body) or too_many_points",
            415: "unsupported_encoding: Content-Encoding other than gzip or deflate",
            422: "NaN/Inf, intensity overflow, unknown_format",
            500: "internal: segmentation failed (see the server log)",
            503: "warming_up or queue_full (see Retry-After), or model_unavailable",
        }
    ),
}


@infer_router.post("/v2/models/{name}/infer", **_INFER)  # type: ignore[arg-type]
async def infer(
    name: str,
    request: Request,
    model: Model,
    state: State,
    _admitted: Annotated[None, Depends(admit, scope="function")],
) -> Response:
    return await _infer(name, None, request, model, state)


@infer_router.post("/v2/models/{name}/versions/{version}/infer", **_INFER)  # type: ignore[arg-type]
async def infer_version(
    name: str,
    version: str,
    request: Request,
    model: Model,
    state: State,
    _admitted: Annotated[None, Depends(admit, scope="function")],
) -> Response:
    return await _infer(name, version, request, model, state)
