"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

The same protocol as `serve.routes.v2`, for clients that speak gRPC (``tritonclient.grpc``, Triton's
perf_analyzer, KServe): ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer; every other RPC of the service answers UNIMPLEMENTED. It runs on uvicorn's event loop
(started and stopped by `serve.app`'s lifespan) and shares the HTTP side's `ModelState`, so one
admission bound (`serve.inference.admission`) and one inference thread serve both protocols, and a
cloud gets the labels of ``POST /segment`` byte for byte (`protocol.points_call`, then
`serve.inference.segment`, as over HTTP).

ModelInfer takes the ``points`` input from ``raw_input_contents`` (what tritonclient sends) or from
``contents.fp32_contents``, its ``format`` from the input's or the request's ``parameters`` (a
``string_param``), and answers the outputs asked for (none named: ``labels`` only) in
``raw_output_contents``. With an auth token set, every RPC but ServerLive, ServerReady and
ServerMetadata (open, as over HTTP) needs the metadata ``authorization: Bearer <token>``.

Refusals are the service's `ServiceError`s with their gRPC status (`STATUS_CODES`), the message as
the details, and the trailing metadata ``error-code`` (the stable code: ``queue_full``,
``warming_up`` ...) and ``retry-after`` where HTTP sends ``Retry-After``. 413 (``too_many_points``)
maps to RESOURCE_EXHAUSTED, the status gRPC itself gives a message above the receive limit, so an
oversized cloud gets one status whichever layer stops it. Nothing escapes as UNKNOWN: an unexpected
exception is logged and answered INTERNAL.

This module needs the ``grpc`` extra (grpcio and tritonclient's generated classes); `serve.app`
imports it only when a gRPC port is set, so the HTTP service runs without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc  # type: ignore[import-untyped]
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc  # type: ignore[import-untyped]

from seg3d.points import PointFormat
from serve import protocol
from serve.dependencies import check_token, ready_model
from serve.errors import ServiceError
from serve.inference import admission, segment
from serve.model import ModelState, ModelStatus

__all__ = ["STATUS_CODES", "GrpcInferenceService", "grpc_address", "start_grpc_server"]

log = logging.getLogger("serve")

#: The gRPC status of each HTTP status a `ServiceError` carries; any other status is INTERNAL.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
#: Protobuf framing, the request's other fields and parameters around the point bytes.
_MESSAGE_SLACK = 1 << 20
#: gRPC's size options are C ints.
_INT32_MAX = 2**31 - 1
#: Seconds in-flight RPCs get to finish when the service stops.
STOP_GRACE_S = 5.0
_SERVICE = "GRPCInferenceService"
_IMPLEMENTED = frozenset(
    {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}
)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information


def max_message_bytes(max_points: int) -> int:
    """The largest request to receive: ``max_points`` rows of the widest point format as FP32."""
    widest = max(f.columns for f in PointFormat)
    return min(max_points * widest * 4 + _MESSAGE_SLACK, _INT32_MAX)


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC parses it (an IPv6 literal in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


async def _abort(context: Context, error: ServiceError) -> NoReturn:
    """End the RPC with ``error``'s gRPC status; its headers (``Retry-After``, ``WWW-Authenticate``)
    and its code ride in the trailing metadata."""
    trailing = [("error-code", error.code)]
    trailing += [(key.lower(), value) for key, value in (error.headers or {}).items()]
    await context.abort(
        STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL), error.message, tuple(trailing)
    )
    raise AssertionError("context.abort returned")  # it raises, to end the RPC


async def _answer(method: str, context: Context, work: Callable[[], Awaitable[Any]]) -> Any:
    """``work()``'s response, or the RPC aborted with the status of its `ServiceError`; anything
    else is logged and answered INTERNAL (gRPC would answer UNKNOWN with the exception's text)."""
    try:
        return await work()
    except ServiceError as exc:
        # Drop the traceback: it holds this frame (and the request's bytes through the frames
        # below), and this frame holds the error, a cycle only the garbage collector frees. Under
        # load that kept hundreds of refused 700 kB requests alive (RSS +90 MiB in 640 requests).
        error = exc.with_traceback(None)
    except Exception:
        log.exception("gRPC %s failed", method)
        error = ServiceError(500, "internal", f"{method} failed; see the server log")
    await _abort(context, error)  # outside the handlers above: abort raises to end the RPC


def _authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


def _parameter(parameters: Any, name: str) -> str | None:
    """The string ``parameters[name]`` (an ``InferParameter`` map), None when absent."""
    if name not in parameters:
        return None
    parameter = parameters[name]
    kind = parameter.WhichOneof("parameter_choice")
    if kind != "string_param":
        raise protocol.bad_request(f"parameter {name!r} must be a string_param, got {kind}", "bad_parameter")
    return str(parameter.string_param)


def _fp32_bytes(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


async def _infer_call(request: Any, max_points: int) -> protocol.InferCall:
    """The request as an `protocol.InferCall`, through `protocol.points_call`'s checks (those of the
    HTTP side) after the gRPC-only ones: one input, its bytes in one place.

    Raises:
        ServiceError: as `protocol.points_call`, and 400 for the wrong inputs or contents.
    """
    if len(request.inputs) != 1 or request.inputs[0].name != protocol.INPUT:
        names = [tensor.name for tensor in request.inputs]
        raise protocol.bad_request(
            f"the request needs exactly one input, {protocol.INPUT!r}; got {names}", "bad_inputs"
        )
    tensor = request.inputs[0]
    fp32 = tensor.contents.fp32_contents
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise protocol.bad_request(
                f"{len(request.raw_input_contents)} raw_input_contents for 1 input", "bad_inputs"
            )
        if tensor.HasField("contents"):
            raise protocol.bad_request(
                f"input {protocol.INPUT!r} has both raw_input_contents and contents", "bad_inputs"
            )
        data = request.raw_input_contents[0]
    elif fp32 and tensor.datatype == "FP32":
        # up to millions of Python floats: off the event loop, which also serves HTTP
        data = await asyncio.to_thread(_fp32_bytes, fp32)
    else:
        data = b""  # points_call names what is wrong: the datatype, or the byte count for the shape
    outputs: dict[str, bool] = {}
    for output in request.outputs:
        if "classification" in output.parameters:
            raise protocol.bad_request("the classification extension is not supported", "unsupported")
        outputs[output.name] = True  # gRPC outputs are always raw bytes
    fmt = _parameter(tensor.parameters, "format")
    return protocol.points_call(
        datatype=tensor.datatype,
        shape=list(tensor.shape),
        data=data,
        fmt=fmt if fmt is not None else _parameter(request.parameters, "format"),
        outputs=outputs,
        max_points=max_points,
        request_id=request.id or None,
    )


class GrpcInferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The RPCs of the protocol this service speaks, on the shared `ModelState`."""

    def __init__(self, state: ModelState) -> None:
        self.state = state

    def _authorize(self, context: Context) -> None:
        check_token(self.state, _authorization(context))

    async def ServerLive(self, request: Any, context: Context) -> Any:  # noqa: N802 (the RPC's name)
        # as GET /v2/health/live: live while loading, not once loading has failed
        return service_pb2.ServerLiveResponse(live=self.state.status is not ModelStatus.FAILED)

    async def ServerReady(self, request: Any, context: Context) -> Any:  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=self.state.status is ModelStatus.READY)

    async def ModelReady(self, request: Any, context: Context) -> Any:  # noqa: N802
        async def work() -> Any:
            self._authorize(context)
            model = self.state.model
            # Not ready: a model still loading or failed, and (as in Triton) a name or version not
            # served. HTTP answers those 503 or 404, which tritonclient's is_model_ready reads as
            # False too, so a client sees the same over both transports.
            if self.state.status is not ModelStatus.READY or model is None:
                return service_pb2.ModelReadyResponse(ready=False)
            try:
                protocol.check_model(request.name, request.version, model.name)
            except ServiceError:
                return service_pb2.ModelReadyResponse(ready=False)
            return service_pb2.ModelReadyResponse(ready=True)

        return await _answer("ModelReady", context, work)

    async def ServerMetadata(self, request: Any, context: Context) -> Any:  # noqa: N802
        # open, as GET /v2 is: the server's name, version and extensions, nothing about the model
        return service_pb2.ServerMetadataResponse(**protocol.server_metadata())

    async def ModelMetadata(self, request: Any, context: Context) -> Any:  # noqa: N802
        async def work() -> Any:
            self._authorize(context)
            model = ready_model(self.state)
            protocol.check_model(request.name, request.version, model.name)
            metadata = protocol.model_metadata(
                model.name, model.segmenter.backend.name, model.manifest.classes.names
            )
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            # the proto's TensorMetadata has no parameters (the input's formats): name, datatype, shape
            inputs, outputs = (
                [tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata[key]]
                for key in ("inputs", "outputs")
            )
            return service_pb2.ModelMetadataResponse(
                name=metadata["name"],
                versions=metadata["versions"],
                platform=metadata["platform"],
                inputs=inputs,
                outputs=outputs,
            )

        return await _answer("ModelMetadata", context, work)

    async def ModelInfer(self, request: Any, context: Context) -> Any:  # noqa: N802
        return await _answer("ModelInfer", context, lambda: self._infer(request, context))

    async def _infer(self, request: Any, context: Context) -> Any:
        """Refuse in the order of the HTTP route (401, 503, 404, the request, 503 queue_full), run
        the model, and record the request in the service's metrics either way."""
        state, metrics = self.state, self.state.metrics
        started = time.perf_counter()
        try:
            self._authorize(context)
            model = ready_model(state)
            protocol.check_model(request.model_name, request.model_version, model.name)
            call = await _infer_call(request, state.settings.max_points)
            async with admission(state):
                result = await segment(state, model, call.body, call.fmt, call.logits)
        except ServiceError as exc:
            metrics.refused(exc.status, exc.code)
            raise
        except Exception:
            metrics.refused(500, "internal")
            raise
        metrics.served(result, time.perf_counter() - started)
        response = service_pb2.ModelInferResponse(
            model_name=model.name, model_version=protocol.MODEL_VERSION, id=request.id
        )
        for name, datatype, shape, array in protocol.output_tensors(call, result.labels, result.logits):
            response.outputs.add(name=name, datatype=datatype, shape=shape)
            response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
        response.parameters["format"].string_param = call.fmt.value
        response.parameters["points_in_crop"].int64_param = result.points_in_crop
        response.parameters["backend"].string_param = model.segmenter.backend.name
        return response


def _unimplemented(name: str) -> Callable[..., Awaitable[None]]:
    async def rpc(self: GrpcInferenceService, request: Any, context: Context) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not served here")

    rpc.__name__ = name
    return rpc


# The generated base class answers these UNIMPLEMENTED by raising NotImplementedError on a worker
# thread, which grpc.aio logs as an error with a traceback on every call: answer them plainly instead.
for _name in service_pb2.DESCRIPTOR.services_by_name[_SERVICE].methods_by_name:
    if _name not in _IMPLEMENTED:
        setattr(GrpcInferenceService, _name, _unimplemented(_name))


async def start_grpc_server(state: ModelState, host: str, port: int) -> Any:
    """Serve `GrpcInferenceService` on ``host:port`` from the running event loop; the started
    ``grpc.aio.Server`` (stop it with ``await server.stop(STOP_GRACE_S)``).

    Raises:
        OSError: the address cannot be bound (taken, or not an address of this host).
    """
    size = max_message_bytes(state.settings.max_points)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", -1),  # logits of a large cloud: unbounded, as gRPC's default
            # gRPC sets SO_REUSEPORT by default, which lets a second server bind a port that is
            # taken and then share its traffic: a taken port must fail here instead
            ("grpc.so_reuseport", 0),
        ]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(GrpcInferenceService(state), server)
    address = grpc_address(host, port)
    try:
        server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind to address ..." (its C core logs the cause above)
        message = f"gRPC cannot listen on {address} (--grpc-port): the port is taken or the host is not local"
        log.error(message)
        raise OSError(message) from None
    await server.start()
    log.info("gRPC inference service (KServe v2) listening on %s", address)
    return server
