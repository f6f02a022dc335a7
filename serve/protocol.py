"""The Open Inference Protocol (KServe v2) as this service speaks it, independent of the transport.

One model, version ``1``. One input, ``points``: ``FP32``, shape ``[N, C]``, the rows of a point file
of one of `seg3d.points.PointFormat` (``C`` its columns), the format named by the ``format``
parameter of the input or of the request, else taken from ``C`` (5: ``nuscenes``, 4: ``kitti``, 3:
``xyz``). Outputs: ``labels`` (``UINT8``, ``[N]``: the labels ``POST /segment`` gives for the same
cloud) by default, and ``logits`` (``FP32``, ``[N, classes]``) only when asked for.

The HTTP routes (`serve.routes.v2`) and the gRPC service (`serve.grpc_service`) both turn their
request into an `InferCall` here (`points_call`), run it through `serve.inference`, and describe the
model with `model_metadata`, so the two protocols cannot drift apart. The REST body codec (JSON and
the binary tensor extension) is here too (`parse_rest_infer`, `rest_infer_response`): pure functions
of bytes, tested without a server. Refusals are `ServiceError` with the statuses of ``/segment``.
"""

from __future__ import annotations

import importlib.metadata
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from seg3d.points import PointFormat
from serve.errors import ServiceError

__all__ = [
    "EXTENSIONS",
    "INPUT",
    "LABELS",
    "LOGITS",
    "MODEL_VERSION",
    "PROTOCOL_VERSION",
    "InferCall",
    "check_model",
    "model_metadata",
    "parse_rest_infer",
    "points_call",
    "rest_infer_response",
    "server_metadata",
]

INPUT, LABELS, LOGITS = "points", "labels", "logits"
MODEL_VERSION = "1"
PROTOCOL_VERSION = "2"
SERVER_NAME = "ddata-lidarseg"
#: What `GET /v2` announces: the binary tensor data extension over HTTP (request and response).
EXTENSIONS = ("binary_tensor_data",)
#: The header that splits a binary request or response into its JSON part and its tensor bytes.
HEADER_LENGTH = "Inference-Header-Content-Length"
_BY_COLUMNS = {5: PointFormat.NUSCENES, 4: PointFormat.KITTI, 3: PointFormat.XYZ}
_COLUMNS = {fmt: fmt.columns for fmt in PointFormat}


@dataclass(frozen=True)
class InferCall:
    """One inference request, whatever the transport: the point records as little-endian float32
    bytes in ``fmt``'s layout, and the outputs asked for (each with its binary flag over HTTP)."""

    body: bytes
    fmt: PointFormat
    outputs: dict[str, bool] = field(default_factory=lambda: {LABELS: False})
    request_id: str | None = None

    @property
    def logits(self) -> bool:
        return LOGITS in self.outputs


def bad_request(message: str, code: str = "bad_request") -> ServiceError:
    return ServiceError(400, code, message)


def check_model(name: str, version: str | None, served: str) -> None:
    """404 ``unknown_model`` for another name, 404 ``unknown_version`` for a version but ``1``."""
    if name != served:
        raise ServiceError(
            404,
            "unknown_model",
            f"model {name!r} is not served here; served: {served}",
            details={"served": [served]},
        )
    if version not in (None, "", MODEL_VERSION):
        raise ServiceError(
            404,
            "unknown_version",
            f"model {name!r} has no version {version!r}; served: {MODEL_VERSION}",
            details={"versions": [MODEL_VERSION]},
        )


def server_metadata() -> dict[str, Any]:
    try:
        version = importlib.metadata.version(SERVER_NAME)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        version = "unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(name: str, platform: str, classes: list[str]) -> dict[str, Any]:
    """The protocol's model metadata: name, versions, platform, and the tensors' names, datatypes and
    shapes (-1: any size). The ``points`` input's formats ride in its ``parameters``."""
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": platform,
        "inputs": [
            {
                "name": INPUT,
                "datatype": "FP32",
                "shape": [-1, -1],
                "parameters": {
                    "format": "request or input parameter 'format' (default by columns: 5 nuscenes, "
                    "4 kitti, 3 xyz); " + "; ".join(f"{f.value}: {f.description}" for f in PointFormat.raw()),
                },
            }
        ],
        "outputs": [
            {"name": LABELS, "datatype": "UINT8", "shape": [-1]},
            {"name": LOGITS, "datatype": "FP32", "shape": [-1, len(classes)]},
        ],
    }


def _format(value: object, columns: int) -> PointFormat:
    if value is None:
        fmt = _BY_COLUMNS.get(columns)
        if fmt is None:
            raise bad_request(
                f"input {INPUT!r} has {columns} columns; a point format has 3, 4 or 5 "
                f"({', '.join(f'{f.value}: {f.columns}' for f in PointFormat.raw())})",
                "bad_shape",
            )
        return fmt
    try:
        fmt = PointFormat(value)
    except ValueError:
        known = ", ".join(f.value for f in PointFormat.raw())
        raise ServiceError(
            422, "unknown_format", f"unknown point format {value!r}; use one of {known}"
        ) from None
    if fmt.self_describing:  # a tensor carries rows, not a file with a header
        known = ", ".join(f.value for f in PointFormat.raw())
        raise ServiceError(
            422,
            "unknown_format",
            f"format {fmt.value} is a file format, not tensor rows; send the points as rows in one of "
            f"{known} (or post the file to /segment?format={fmt.value})",
        )
    if columns != _COLUMNS[fmt]:
        raise bad_request(
            f"input {INPUT!r} has {columns} columns; format {fmt.value} has {_COLUMNS[fmt]} "
            f"({fmt.description})",
            "bad_shape",
        )
    return fmt


def points_call(
    *,
    datatype: str,
    shape: list[int],
    data: bytes,
    fmt: object,
    outputs: dict[str, bool],
    max_points: int,
    request_id: str | None = None,
) -> InferCall:
    """Check the ``points`` tensor (datatype, shape, byte size, format) and the outputs asked for.

    Raises:
        ServiceError: 400 for a wrong datatype, shape, byte size or output name; 413 above
            ``max_points``; 422 for an unknown format.
    """
    if datatype != "FP32":
        raise bad_request(f"input {INPUT!r} must be FP32, got {datatype!r}", "bad_datatype")
    if len(shape) != 2 or any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise bad_request(f"input {INPUT!r} must have shape [N, C], got {shape!r}", "bad_shape")
    n, columns = shape
    if n > max_points:
        raise ServiceError(413, "too_many_points", f"{n} points exceed the limit of {max_points}")
    point_format = _format(fmt, columns)
    if len(data) != n * columns * 4:
        raise bad_request(
            f"input {INPUT!r} of shape {shape} needs {n * columns * 4} bytes of FP32, got {len(data)}",
            "bad_size",
        )
    unknown = sorted(set(outputs) - {LABELS, LOGITS})
    if unknown:
        raise bad_request(f"unknown output(s) {unknown}; outputs: {LABELS}, {LOGITS}", "unknown_output")
    return InferCall(data, point_format, outputs or {LABELS: False}, request_id)


# --- REST: JSON and the binary tensor data extension -------------------------------------------------


def decode_content(body: bytes, encoding: str | None, cap: int) -> bytes:
    """The body after its ``Content-Encoding`` (identity, gzip or deflate, as tritonclient sends),
    refusing more than ``cap`` bytes once decompressed (413) and other encodings (415)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ServiceError(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r}: use identity, gzip or deflate"
        )
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise bad_request(f"body is not valid {encoding}: {exc}", "bad_encoding") from exc
    if len(out) > cap or inflater.unconsumed_tail:
        raise ServiceError(413, "too_large", f"decompressed body exceeds the limit of {cap} bytes")
    return out


def _header_length(value: str | None, size: int) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise bad_request(f"{HEADER_LENGTH} must be a byte count, got {value!r}", "bad_header_length")
    length = int(value)
    if length > size:
        raise bad_request(f"{HEADER_LENGTH} is {length} but the body has {size} bytes", "bad_header_length")
    return length


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the inference request is not valid JSON: {exc}", "bad_json") from exc
    if not isinstance(payload, dict):
        raise bad_request("the inference request must be a JSON object", "bad_json")
    return payload


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = obj.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request(f"{where}.parameters must be an object", "bad_json")
    return parameters


def _json_data(data: object, n: int, columns: int) -> bytes:
    """The ``data`` of a JSON tensor (flat, or nested row-major) as FP32 bytes, checked to hold n × C
    finite-or-not numbers (the point reader checks finiteness, with the same 422 as ``/segment``)."""
    try:
        array = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_request(f"input {INPUT!r}: data must be numbers ({exc})", "bad_data") from exc
    if array.dtype != np.float32 or array.size != n * columns or array.ndim not in (1, 2):
        raise bad_request(
            f"input {INPUT!r}: data holds {array.size} numbers (ndim {array.ndim}), shape [{n}, {columns}] "
            f"needs {n * columns}",
            "bad_size",
        )
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def parse_rest_infer(
    body: bytes, header_length: str | None, max_points: int, request_format: str | None = None
) -> InferCall:
    """A REST inference request (JSON, or JSON + binary tensors) as an `InferCall`.

    Raises:
        ServiceError: 400 for malformed JSON, tensors, sizes or header lengths; 413; 422.
    """
    length = _header_length(header_length, len(body))
    payload = _json_object(body if length is None else body[:length])
    binary = b"" if length is None else body[length:]
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad_request(f"the request needs exactly one input, {INPUT!r}", "bad_inputs")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise bad_request(
            f"unknown input {tensor.get('name')!r}; the model's input is {INPUT!r}", "bad_inputs"
        )
    request_parameters = _parameters(payload, "request")
    tensor_parameters = _parameters(tensor, "inputs[0]")
    shape = tensor.get("shape")
    if not isinstance(shape, list):
        raise bad_request(f"input {INPUT!r} needs a shape [N, C]", "bad_shape")
    datatype = str(tensor.get("datatype"))
    size = tensor_parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size != len(binary):
            raise bad_request(
                f"binary_data_size is {size!r} but {len(binary)} bytes follow the JSON header",
                "bad_binary_size",
            )
        if "data" in tensor:
            raise bad_request(f"input {INPUT!r} has both data and binary_data_size", "bad_inputs")
        data = binary
    else:
        if binary:
            raise bad_request(
                f"{len(binary)} bytes follow the JSON header but no input declares them", "bad_binary_size"
            )
        if "data" not in tensor:
            raise bad_request(f"input {INPUT!r} needs data or binary_data_size", "bad_inputs")
        if datatype != "FP32":
            raise bad_request(f"input {INPUT!r} must be FP32, got {datatype!r}", "bad_datatype")
        dims = [d for d in shape if isinstance(d, int) and not isinstance(d, bool) and d >= 0]
        if len(shape) != 2 or len(dims) != 2:
            raise bad_request(f"input {INPUT!r} must have shape [N, C], got {shape!r}", "bad_shape")
        if dims[0] > max_points:
            raise ServiceError(413, "too_many_points", f"{dims[0]} points exceed the limit of {max_points}")
        data = _json_data(tensor["data"], dims[0], dims[1])
    outputs = _rest_outputs(payload, request_parameters)
    fmt = tensor_parameters.get("format", request_parameters.get("format", request_format))
    request_id = payload.get("id")
    return points_call(
        datatype=datatype,
        shape=shape,
        data=data,
        fmt=fmt,
        outputs=outputs,
        max_points=max_points,
        request_id=None if request_id is None else str(request_id),
    )


def _rest_outputs(payload: dict[str, Any], request_parameters: dict[str, Any]) -> dict[str, bool]:
    """The outputs asked for, each with whether it goes as binary; none named: ``labels`` only, in
    binary when the request's ``binary_data_output`` says so."""
    requested = payload.get("outputs")
    if requested is None:
        return {LABELS: bool(request_parameters.get("binary_data_output", False))}
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise bad_request("outputs must be a list of objects", "bad_outputs")
    outputs: dict[str, bool] = {}
    for output in requested:
        parameters = _parameters(output, "outputs[]")
        if "classification" in parameters:
            raise bad_request("the classification extension is not supported", "unsupported")
        outputs[str(output.get("name"))] = bool(
            parameters.get("binary_data", request_parameters.get("binary_data_output", False))
        )
    return outputs


def output_tensors(
    call: InferCall, labels: npt.NDArray[np.uint8], logits: npt.NDArray[np.float32] | None
) -> list[tuple[str, str, list[int], npt.NDArray[Any]]]:
    """``(name, datatype, shape, array)`` of each output asked for, in a fixed order."""
    tensors: list[tuple[str, str, list[int], npt.NDArray[Any]]] = []
    if LABELS in call.outputs:
        tensors.append((LABELS, "UINT8", [int(labels.size)], labels))
    if LOGITS in call.outputs and logits is not None:
        tensors.append((LOGITS, "FP32", [int(s) for s in logits.shape], logits.astype("<f4", copy=False)))
    return tensors


def rest_infer_response(
    call: InferCall,
    model_name: str,
    labels: npt.NDArray[np.uint8],
    logits: npt.NDArray[np.float32] | None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or JSON then the binary outputs with
    ``Inference-Header-Content-Length`` when any output was asked for in binary."""
    outputs, chunks = [], []
    for name, datatype, shape, array in output_tensors(call, labels, logits):
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if call.outputs[name]:
            raw = np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": MODEL_VERSION, "outputs": outputs}
    if call.request_id is not None:
        response["id"] = call.request_id
    if parameters:
        response["parameters"] = parameters
    header = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
