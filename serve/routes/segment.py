"""``POST /segment``: one point cloud in, one label per point out.

Dependencies refuse before any work (bearer token → 401, model not ready → 503, queue full → 503);
the body is read within the size cap (`body_cap`), decoded and segmented on the inference thread.
Metrics are recorded by the router's route class (`serve.metrics.RecordedRoute`).

A PCD or PLY body, or one with the ``intensity_max`` option, is decoded here first, on a worker
thread (ascii parsing and LZF are slow work that must not hold the single inference thread), into
model-scale ``xyzi`` records, which then take the same path as any raw body; so does a body whose
answer is a labelled file (``Accept: application/x-ply`` / ``application/x-pcd``), whose points that
answer carries (`seg3d.labelled`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from seg3d.labelled import encode_labelled
from seg3d.points import INTENSITY_RULE, PointFormat
from serve import inference
from serve.dependencies import Model, State, admit, require_auth
from serve.errors import ServiceError
from serve.metrics import RecordedRoute
from serve.schemas import SegmentResponse, error_responses

__all__ = ["LABELLED_TYPES", "body_cap", "read_body", "read_capped", "router"]

log = logging.getLogger("serve")

_MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part (and a PCD/PLY header)
#: Body bytes allowed per point of a PCD/PLY file: x, y, z and intensity as ascii text at full
#: precision (plyfile writes 18 digits: about 85 bytes a point), or binary records of up to 32 float32.
FILE_BYTES_PER_POINT = 128
#: The labelled-file answers, by media type in ``Accept``.
LABELLED_TYPES = {"application/x-ply": PointFormat.PLY, "application/x-pcd": PointFormat.PCD}
_OCTET = "application/octet-stream"

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


def body_cap(max_points: int, fmt: PointFormat | None = None) -> int:
    """The largest body for ``max_points`` points of ``fmt`` (None: of any format): the widest raw
    layout's records, or `FILE_BYTES_PER_POINT` a point for PCD/PLY, plus room for a multipart
    envelope and a file header."""
    raw = max_points * 4 * max(f.columns for f in PointFormat.raw())
    if fmt is not None and not fmt.self_describing:
        return raw + _MULTIPART_SLACK
    return max(raw, max_points * FILE_BYTES_PER_POINT) + _MULTIPART_SLACK


async def read_body(request: Request, max_points: int, fmt: PointFormat | None = None) -> bytes:
    """The point file from a raw body or a multipart ``file`` part, within `body_cap`."""
    cap = body_cap(max_points, fmt)
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
        if upload.size is not None and upload.size > cap:
            await form.close()
            raise ServiceError(413, "too_large", f"file part exceeds the limit of {cap} bytes")
        data = await upload.read()
        await form.close()
        return data
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"Content-Type {content_type or '(none)'!r}: send application/octet-stream or multipart/form-data",
    )


def _labelled_answer(accept: str) -> PointFormat | None:
    """The labelled file ``Accept`` asks for first, if any (before or instead of raw labels)."""
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == _OCTET:
            return None
        if media in LABELLED_TYPES:
            return LABELLED_TYPES[media]
    return None


def _wants_octets(accept: str) -> bool:
    return any(part.split(";")[0].strip().lower() == _OCTET for part in accept.split(","))


async def _decode_here(
    model: Model, body: bytes, fmt: PointFormat, intensity_max: float | None, allow_missing: bool
) -> npt.NDArray[np.float32]:
    """`serve.segmenter.Segmenter.decode` on a worker thread; anything but its `ServiceError` is a
    logged 500 ``internal``, as in `serve.inference.segment`."""
    decode = functools.partial(
        model.segmenter.decode,
        body,
        fmt,
        file_intensity_max=intensity_max,
        allow_missing_intensity=allow_missing,
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(None, decode)
    except ServiceError:
        raise
    except Exception as exc:
        log.exception("decoding failed")
        raise ServiceError(500, "internal", "decoding the point file failed; see the server log") from exc


_HEADERS_DOC = {
    "X-Num-Points": "binary and labelled-file answers: N, the number of labels",
    "X-Inference-Ms": "binary and labelled-file answers: the encoder's time in milliseconds",
    "X-Model-Name": "binary and labelled-file answers: the served model's name",
    "X-Backend": "binary and labelled-file answers: the inference backend",
}


@router.post(
    "/segment",
    tags=["segmentation"],
    summary="Segment one point cloud",
    description=(
        "Body: the point file, raw (`Content-Type: application/octet-stream`) or multipart with a "
        "`file` part. `format`: "
        + "; ".join(f"`{f.value}` = {f.description}" for f in PointFormat)
        + ". "
        + INTENSITY_RULE
        + ". `intensity_max` sets the file's intensity scale (any format with intensity); "
        "`allow_missing_intensity=true` reads a PCD/PLY file without an intensity field with intensity 0. "
        "A PCD/PLY file sent as a raw format is refused (422 `wrong_format`). Response: JSON by default "
        "(`SegmentResponse`); with `Accept: application/octet-stream`, N bytes of uint8 labels in input "
        "order (the nuScenes lidarseg `.bin` layout); with `Accept: application/x-ply` or "
        "`application/x-pcd`, the points with a `label` and the class colours (binary little-endian "
        "PLY: float x, y, z, intensity (the model's scale), uchar red, green, blue, label; PCD "
        "`DATA binary`: x y z intensity label rgb, rgb packed as PCL does). Errors: "
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
                },
                "application/x-ply": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "with `Accept: application/x-ply`: a binary little-endian PLY, "
                        "one vertex per input point in input order: float x, y, z, intensity, uchar "
                        "red, green, blue (the class colour), uchar label",
                    }
                },
                "application/x-pcd": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "with `Accept: application/x-pcd`: a PCD, DATA binary, one point "
                        "per input point in input order: x y z intensity (F4), label (U4), rgb (the "
                        "class colour packed as PCL does)",
                    }
                },
            },
            "headers": {
                name: {
                    "description": text,
                    "schema": {"type": "integer" if name == "X-Num-Points" else "string"},
                }
                for name, text in _HEADERS_DOC.items()
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
                "invalid_parameter, invalid_option, too_few_points (below a TensorRT engine's profile "
                "minimum), wrong_format (a PCD/PLY file sent as a raw format); PCD/PLY files: "
                "bad_header, unknown_field_type, truncated, bad_count, bad_data, missing_field, "
                "missing_intensity (" + INTENSITY_RULE + "), list_property, out_of_range",
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
    format: Annotated[PointFormat, Query(description="format of the point file")] = PointFormat.NUSCENES,
    intensity_max: Annotated[
        float | None,
        Query(
            gt=0,
            description="maximum of the file's intensity scale (e.g. 1 for 0-1 remission, 255), in place "
            "of the format's or the PCD/PLY intensity rule's",
        ),
    ] = None,
    allow_missing_intensity: Annotated[
        bool,
        Query(description="PCD/PLY: a file without an intensity field reads intensity 0 instead of a 422"),
    ] = False,
) -> Response:
    started = time.perf_counter()
    accept = request.headers.get("accept", "")
    labelled = _labelled_answer(accept)
    body = await read_body(request, state.settings.max_points, format)
    points = None
    fmt, decode_ms = format, 0.0
    if format.self_describing or intensity_max is not None or labelled is not None:
        decode_start = time.perf_counter()
        points = await _decode_here(model, body, format, intensity_max, allow_missing_intensity)
        decode_ms = (time.perf_counter() - decode_start) * 1e3
        # already checked and in the model's scale: the model's own raw layout takes them unchanged
        body, fmt = points.tobytes(), PointFormat.XYZI
    result = await inference.segment(state, model, body, fmt)
    if decode_ms:
        result.timing_ms["parse"] = result.timing_ms.get("parse", 0.0) + decode_ms
    request.state.segmentation = result
    total_ms = (time.perf_counter() - started) * 1e3
    labels, timing = result.labels, result.timing_ms
    backend = model.segmenter.backend.name
    headers = {
        "X-Num-Points": str(labels.size),
        "X-Model-Name": model.name,
        "X-Backend": backend,
        "X-Inference-Ms": f"{timing.get('inference', 0.0):.2f}",
    }
    if labelled is not None and points is not None:
        content = encode_labelled(points, labels, model.segmenter.config.classes, labelled)
        media = next(media for media, fmt in LABELLED_TYPES.items() if fmt is labelled)
        return Response(content, media_type=media, headers=headers)
    if _wants_octets(accept):
        return Response(labels.tobytes(), media_type=_OCTET, headers=headers)
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
