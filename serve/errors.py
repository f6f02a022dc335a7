"""The service's error shape, ``{"error": {"code": ..., "message": ...}}`` (the Open Inference
Protocol's on its ``/v2`` paths), and its handlers.

Handlers, dependencies and the segmenter raise `ServiceError` (status, stable code, message, headers,
and any extra fields of the error object, e.g. ``served`` on ``unknown_model``);
`install_error_handlers` renders it, and FastAPI's own errors (404, 405, request validation), in the
same JSON shape; on the KServe v2 paths (``/v2/...``) in the Open Inference Protocol's shape
(``{"error": message, "code": ...}``), which its clients (tritonclient) read.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from seg3d.points import PointFormat

__all__ = [
    "ServiceError",
    "error_response",
    "install_error_handlers",
    "speaks_protocol",
    "validation_error",
]


class ServiceError(Exception):
    """A request the service refuses or cannot serve: HTTP status, machine-readable code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        #: extra fields of the error object, after ``code`` and ``message`` (e.g. ``served``)
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
    protocol: bool = False,
) -> JSONResponse:
    """The error body: ``{"error": {code, message, ...}}``, or with ``protocol`` (the KServe v2 paths)
    the Open Inference Protocol's ``{"error": message}`` with ``code`` and the details beside it."""
    if protocol:
        body: dict[str, Any] = {"error": message, "code": code, **(details or {})}
    else:
        body = {"error": {**(details or {}), "code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def speaks_protocol(request: Request) -> bool:
    """Whether the request is on the KServe v2 paths, whose errors take the protocol's shape."""
    path: str = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def validation_error(exc: RequestValidationError) -> ServiceError:
    """A 422 for a request FastAPI could not validate; an unknown ``format`` keeps ``unknown_format``."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = tuple(str(p) for p in first.get("loc", ()))
    if loc == ("query", "format"):
        known = ", ".join(f.value for f in PointFormat)
        found = first.get("input")
        return ServiceError(422, "unknown_format", f"unknown point format {found!r}; use one of {known}")
    where = ".".join(loc)
    return ServiceError(422, "invalid_parameter", f"{where}: {first.get('msg', 'invalid request')}")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, exc.headers, exc.details, speaks_protocol(request)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, code, str(exc.detail), headers, protocol=speaks_protocol(request)
        )

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc)
        return error_response(error.status, error.code, error.message, protocol=speaks_protocol(request))
