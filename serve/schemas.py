"""Pydantic models of the service's JSON responses, for the OpenAPI schema (and for clients/tests).

The routes still build their responses directly (a `JSONResponse`): a 35k-point label list through
pydantic validation would cost time on the hot path, so these models document the shape
(``responses={200: {"model": ...}}``) and tests check that real responses validate against them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from serve.backends import BackendName

__all__ = [
    "ErrorDetail",
    "ErrorResponse",
    "ProtocolError",
    "SegmentResponse",
    "StageTimings",
    "error_responses",
    "protocol_error_responses",
]


class StageTimings(BaseModel):
    """Wall-clock milliseconds per stage of one request, rounded to 3 decimals."""

    model_config = ConfigDict(extra="forbid")

    parse: float = Field(description="decoding and checking the point file")
    preprocess: float | SkipJsonSchema[None] = Field(
        None,
        description="crop mask, voxelisation and the encoder's inputs (absent for an empty cloud)",
    )
    inference: float | SkipJsonSchema[None] = Field(
        None, description="the encoder on the chosen backend (absent for an empty cloud)"
    )
    postprocess: float | SkipJsonSchema[None] = Field(
        None,
        description="labelling the points outside the crop from their nearest in-crop point "
        "(absent for an empty cloud)",
    )
    total: float = Field(
        description="the whole request in the handler: reading the body, queueing for the inference "
        "thread and every stage above"
    )


class SegmentResponse(BaseModel):
    """The JSON answer of ``POST /segment``: one label per input point, in input order."""

    model_config = ConfigDict(extra="forbid")

    num_points: int = Field(ge=0, description="number of points in the request (N, the length of `labels`)")
    points_in_crop: int = Field(
        ge=0,
        description="points the encoder saw: those inside the model's crop box (the manifest's "
        "`grid.point_range`). Each point outside it takes the label of its nearest in-crop point, "
        "so `num_points - points_in_crop` labels are inferred from neighbours. When no point lies "
        "inside, the whole cloud is clamped onto the box and segmented, and this equals "
        "`num_points`; 0 for an empty cloud.",
    )
    labels: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        description="N class indices (uint8) in input order; `class_names[label]` names each. Never "
        "the ignore class."
    )
    class_names: list[str] = Field(
        description="the model's class names, indexed by label (from its manifest)"
    )
    model: str = Field(description="name of the served model (as in `/v2/models/{name}`)")
    backend: BackendName = Field(description="the inference backend that produced the labels")
    timing_ms: StageTimings = Field(description="milliseconds per stage")


class ErrorDetail(BaseModel):
    """A refused or failed request. Some codes add fields (``unknown_model``: ``served``)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description="stable machine-readable code, e.g. `unauthorized`, `too_large`, `too_many_points`, "
        "`too_few_points`, `unknown_format`, `wrong_format`, `bad_header`, `truncated`, "
        "`missing_intensity`, `warming_up`, `queue_full`, `model_unavailable`, `internal`"
    )
    message: str = Field(description="human-readable explanation")


class ErrorResponse(BaseModel):
    """Every error of the service (4xx and 5xx) outside the KServe v2 paths (`ProtocolError`):
    ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status with its description and the `ErrorResponse` body."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in descriptions.items()}


class ProtocolError(BaseModel):
    """An error on the KServe v2 paths (``/v2/...``), in the Open Inference Protocol's shape
    ``{"error": message}``, with the same stable ``code`` beside it (and any extra fields)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="human-readable explanation")
    code: str = Field(description="stable machine-readable code (as in `ErrorDetail.code`)")


def protocol_error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """`error_responses` for the KServe v2 paths: the `ProtocolError` body."""
    return {status: {"model": ProtocolError, "description": text} for status, text in descriptions.items()}
