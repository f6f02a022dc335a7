"""``POST /segment``: one point cloud in, one label per point out.

Dependencies refuse before any work (bearer token → 401, model not ready → 503, queue full → 503);
the body is read within the size cap, decoded and segmented on the inference thread. Metrics are
recorded by the router's route class (`serve.metrics.RecordedRoute`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from seg3d.points import PointFormat
from serve import inference
from serve.dependencies import Model, State, admit, require_auth
from serve.errors import ServiceError
from serve.metrics import RecordedRoute
from serve.schemas import SegmentResponse, error_responses

__all__ = ["read_body", "read_capped", "router"]

_MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part

router = APIRouter(route_class=RecordedRoute)


async def read_capped(request: Request, cap: int) -> bytes:
    """The raw body, refused with 413 ``too_large`` as soon as it is declared or read beyond ``cap``
    bytes (the KServe v2 infer route reads its bodies with it too)."""
    refuse_declared_over(request, cap)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ServiceError(413, "too_large", f"body exceeds the limit of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_declared_over(request: Request, cap: int) -> None:
    """413 ``too_large`` for a ``Content-Length`` above ``cap``, before reading anything."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise ServiceError(413, "too_large", f"body of {declared} bytes exceeds the limit of {cap} bytes")


async def read_body(request: Request, max_points: int) -> bytes:
    """The point file from a raw body or a multipart ``file`` part, within the size cap."""
    cap = max_points * 4 * max(f.columns for f in PointFormat) + _MULTIPART_SLACK
    refuse_declared_over(request, cap)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/octet-stream":
        return await read_capped(request, cap)
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=4)
        except (StarletteHTTPException, MultiPartException, KeyError, ValueError) as exc:
            # Starlette reports a malformed multipart body (no boundary, too many parts) as a 400.
            detail = getattr(exc, "detail", None) or str(exc)
            raise ServiceError(400, "bad_multipart", f"malformed multipart body: {detail}") from exc
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ServiceError(422, "missing_file", "multipart body needs a file part named 'file'")
        data = await upload.read()
        await form.close()
        return data
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"Content-Type {content_type or '(none)'!r}: send application/octet-stream or multipart/form-data",
    )


@router.post(
    "/segment",
    tags=["segmentation"],
    summary="Segment one point cloud",
    description=(
        "Body: the raw point file (`Content-Type: application/octet-stream`) or multipart with a "
        "`file` part. `format`: "
        + "; ".join(f"`{f.value}` = {f.description}" for f in PointFormat)
        + ". Response: JSON by default (`SegmentResponse`); with `Accept: application/octet-stream`, "
        "N bytes of uint8 labels in input order (the nuScenes lidarseg `.bin` layout). Errors: "
        '`{"error": {"code": ..., "message": ...}}`.'
    ),
    # route dependencies run first: 401, then the parameters' 503 warming_up, then queue_full
    dependencies=[Depends(require_auth)],
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
        200: {
            "description": "one label per input point, in input order",
            "model": SegmentResponse,
            "content": {
                "application/octet-stream": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "with `Accept: application/octet-stream`: N bytes, one uint8 "
                        "label per point (the nuScenes lidarseg `.bin` layout)",
                    }
                }
            },
            "headers": {
                "X-Num-Points": {
                    "description": "binary answer only: N, the number of labels",
                    "schema": {"type": "integer"},
                },
                "X-Inference-Ms": {
                    "description": "binary answer only: the encoder's time in milliseconds",
                    "schema": {"type": "string"},
                },
                "X-Model-Name": {
                    "description": "binary answer only: the served model's name",
                    "schema": {"type": "string"},
                },
                "X-Backend": {
                    "description": "binary answer only: the inference backend",
                    "schema": {"type": "string"},
                },
            },
        },
        **error_responses(
            {
                400: "bad_multipart: malformed multipart body",
                401: "unauthorized: missing or wrong bearer token (when auth is on)",
                413: "too_large (body) or too_many_points (the service's limit, or the points in the "
                "crop above a TensorRT engine's profile maximum)",
                415: "unsupported_media_type: send application/octet-stream or multipart/form-data",
                422: "bad length, NaN/Inf, intensity overflow, unknown_format, missing_file, "
                "invalid_parameter, too_few_points (below a TensorRT engine's profile minimum)",
                500: "internal: segmentation failed (see the server log)",
                503: "warming_up or queue_full (see Retry-After), or model_unavailable",
            }
        ),
    },
)
async def segment(
    request: Request,
    model: Model,
    state: State,
    _admitted: Annotated[None, Depends(admit, scope="function")],
    format: Annotated[PointFormat, Query(description="layout of the point file")] = PointFormat.NUSCENES,
) -> Response:
    started = time.perf_counter()
    body = await read_body(request, state.settings.max_points)
    result = await inference.segment(state, model, body, format)
    request.state.segmentation = result
    total_ms = (time.perf_counter() - started) * 1e3
    labels, timing = result.labels, result.timing_ms
    backend = model.segmenter.backend.name
    if "application/octet-stream" in request.headers.get("accept", ""):
        return Response(
            labels.tobytes(),
            media_type="application/octet-stream",
            headers={
                "X-Num-Points": str(labels.size),
                "X-Model-Name": model.name,
                "X-Backend": backend,
                "X-Inference-Ms": f"{timing.get('inference', 0.0):.2f}",
            },
        )
    # built directly (the fields of `SegmentResponse`, which documents it): no validation pass over
    # the label list on the hot path
    return JSONResponse(
        {
            "num_points": int(labels.size),
            "points_in_crop": result.points_in_crop,
            "labels": labels.tolist(),
            "class_names": model.manifest.classes.names,
            "model": model.name,
            "backend": backend,
            "timing_ms": {**{k: round(v, 3) for k, v in timing.items()}, "total": round(total_ms, 3)},
        }
    )
