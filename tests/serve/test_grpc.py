"""The Open Inference Protocol over gRPC (`serve.grpc_service`).

Against a real ``python -m serve --grpc-port`` process, with Triton's own gRPC client
(`tritonclient.grpc`): every real scan gets the labels of ``POST /segment`` byte for byte, logits
only when asked for, health and metadata through the client's calls, each bad request its gRPC
status and a clear message (and the server answers afterwards), auth on the RPCs that need it, a
taken port fails the start. In process, on a `ModelState` held in each state: warming up, failed,
queue full (the admission bound HTTP holds), an unexpected error, with their trailing metadata.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from seg3d.points import PointFormat
from seg3d.scans import real_scans
from serve.local import LocalServer, free_port, start_local_server
from serve.settings import ServeSettings

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (the grpc extra)")
tritongrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from serve import grpc_service  # noqa: E402
from serve.inference import admission  # noqa: E402
from serve.model import ModelState, ModelStatus  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCANS = real_scans()  # nuScenes, KITTI and SemanticKITTI
FORMAT = {"nuscenes": PointFormat.NUSCENES, "kitti": PointFormat.KITTI, "semantickitti": PointFormat.KITTI}
OCTET = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
#: Above gRPC's default 4 MiB receive limit at 5 columns, so the server's own limit is exercised.
MAX_POINTS = 250_000
TOKEN = "s3cret"
Status = grpc.StatusCode


class GrpcServer:
    def __init__(self, local: LocalServer, port: int) -> None:
        self.local, self.url, self.address = local, local.url, f"127.0.0.1:{port}"

    def client(self) -> Any:
        return tritongrpc.InferenceServerClient(self.address)


def _start(model_dir: Path, *args: str, env: dict[str, str] | None = None) -> GrpcServer:
    port = free_port()
    local = start_local_server(
        model_dir,
        "--backend",
        "onnxruntime",
        "--grpc-port",
        str(port),
        "--log-level",
        "warning",
        *args,
        env=env,
    )
    return GrpcServer(local, port)


@pytest.fixture(scope="module")
def served(tiny_export: Path) -> Iterator[GrpcServer]:
    server = _start(tiny_export, "--max-points", str(MAX_POINTS))
    yield server
    server.local.stop()


@pytest.fixture(scope="module")
def client(served: GrpcServer) -> Iterator[Any]:
    triton = served.client()
    yield triton
    triton.close()


def _segment(url: str, body: bytes, fmt: PointFormat) -> bytes:
    response = httpx.post(
        f"{url}/segment", params={"format": fmt.value}, content=body, headers=OCTET, timeout=120
    )
    assert response.status_code == 200, response.text[:300]
    return response.content


def _points(records: np.ndarray, datatype: str = "FP32") -> Any:
    tensor = tritongrpc.InferInput("points", list(records.shape), datatype)
    tensor.set_data_from_numpy(records)
    return tensor


def _cloud(n: int, columns: int = 5, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    records = np.c_[rng.uniform(-60, 60, (n, 2)), rng.uniform(-3, 3, n), rng.uniform(0, 255, n), np.zeros(n)]
    return np.ascontiguousarray(records[:, :columns], dtype=np.float32)


# --- a real server process, tritonclient.grpc ---------------------------------------------------------


@pytest.mark.skipif(not SCANS, reason="real scans not found")
@pytest.mark.parametrize("scan", SCANS, ids=lambda s: s.name)
def test_every_real_scan_gets_the_labels_of_segment(scan, served: GrpcServer, client: Any) -> None:
    fmt = FORMAT[scan.kind]
    body = scan.path.read_bytes()
    expected = _segment(served.url, body, fmt)
    records = np.frombuffer(body, dtype="<f4").reshape(-1, fmt.columns)
    result = client.infer(
        "tiny",
        [_points(records)],
        outputs=[tritongrpc.InferRequestedOutput("labels")],
        request_id="r7",
        parameters={"format": fmt.value},
    )
    labels = result.as_numpy("labels")
    assert labels.dtype == np.uint8 and labels.shape == (records.shape[0],)
    assert labels.tobytes() == expected
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("tiny", "1", "r7")
    assert response.parameters["format"].string_param == fmt.value
    assert response.parameters["points_in_crop"].int64_param <= records.shape[0]
    # no format named: taken from the columns (5 nuscenes, 4 kitti); no output named: labels only
    unnamed = client.infer("tiny", [_points(records)], model_version="1")
    assert unnamed.as_numpy("labels").tobytes() == expected
    assert unnamed.as_numpy("logits") is None
    assert [o.name for o in unnamed.get_response().outputs] == ["labels"]


def test_logits_only_when_asked_and_argmax_consistent(served: GrpcServer, client: Any) -> None:
    records = _cloud(3000)
    records[:50, :2] = 500.0  # outside the crop: they take a nearest in-crop point's row of both
    both = client.infer(
        "tiny",
        [_points(records)],
        outputs=[tritongrpc.InferRequestedOutput("labels"), tritongrpc.InferRequestedOutput("logits")],
    )
    labels, logits = both.as_numpy("labels"), both.as_numpy("logits")
    classes = len(httpx.get(f"{served.url}/v2/models/tiny", timeout=30).json()["classes"])
    assert logits.dtype == np.float32 and logits.shape == (3000, classes)
    shapes = {o.name: list(o.shape) for o in both.get_response().outputs}
    assert shapes == {"labels": [3000], "logits": [3000, classes]}
    masked = logits.copy()
    masked[:, 0] = -np.inf  # the ignore class is never a label
    np.testing.assert_array_equal(masked.argmax(1), labels)
    assert labels.tobytes() == _segment(served.url, records.tobytes(), PointFormat.NUSCENES)
    only = client.infer("tiny", [_points(records)], outputs=[tritongrpc.InferRequestedOutput("logits")])
    assert only.as_numpy("labels") is None
    np.testing.assert_array_equal(only.as_numpy("logits"), logits)


def test_health_and_metadata_through_the_client(served: GrpcServer, client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    # as tritonclient.http reads HTTP's 404: an unknown model or version is not ready
    assert not client.is_model_ready("other") and not client.is_model_ready("tiny", "2")
    http_server = httpx.get(f"{served.url}/v2", timeout=30).json()
    server_metadata = client.get_server_metadata()
    assert server_metadata.name == http_server["name"] == "ddata-lidarseg"
    assert server_metadata.version == http_server["version"]
    assert list(server_metadata.extensions) == http_server["extensions"]
    http_model = httpx.get(f"{served.url}/v2/models/tiny/versions/1", timeout=30).json()
    metadata = client.get_model_metadata("tiny", "1")
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        "tiny",
        ["1"],
        http_model["platform"],
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("points", "FP32", [-1, -1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        (o["name"], o["datatype"], o["shape"]) for o in http_model["outputs"]
    ]
    assert list(metadata.outputs[1].shape) == [-1, len(http_model["classes"])]
    for name, version, phrase in (("tiny", "2", "no version '2'"), ("other", "", "not served")):
        with pytest.raises(InferenceServerException) as unknown:
            client.get_model_metadata(name, version)
        assert unknown.value.status() == str(Status.NOT_FOUND) and phrase in unknown.value.message()
    with pytest.raises(InferenceServerException) as unimplemented:
        client.get_model_config("tiny")  # not part of this service: UNIMPLEMENTED, not UNKNOWN
    assert unimplemented.value.status() == str(Status.UNIMPLEMENTED)


def _refused(client: Any, status: Any, phrase: str, *inputs: Any, **kwargs: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(kwargs.pop("model", "tiny"), list(inputs), **kwargs)
    assert caught.value.status() == str(status), caught.value
    assert phrase in caught.value.message(), caught.value


def test_bad_requests_get_their_status_and_a_clear_message(served: GrpcServer, client: Any) -> None:
    good = _cloud(10)
    _refused(client, Status.INVALID_ARGUMENT, "must be FP32", _points(good.astype(np.float64), "FP64"))
    _refused(client, Status.INVALID_ARGUMENT, "shape [N, C]", _points(good.reshape(-1)))
    _refused(client, Status.INVALID_ARGUMENT, "3, 4 or 5", _points(np.zeros((10, 7), np.float32)))
    nan = good.copy()
    nan[4, 2] = np.nan
    _refused(client, Status.INVALID_ARGUMENT, "NaN", _points(nan))
    _refused(client, Status.RESOURCE_EXHAUSTED, "exceed the limit", _points(_cloud(MAX_POINTS + 1, 4)))
    _refused(client, Status.NOT_FOUND, "not served", _points(good), model="other")
    _refused(client, Status.NOT_FOUND, "no version '2'", _points(good), model_version="2")
    short = _points(good)
    short.set_shape([11, 5])  # 10 rows of bytes under a shape of 11
    _refused(client, Status.INVALID_ARGUMENT, "needs 220 bytes of FP32, got 200", short)
    _refused(
        client, Status.INVALID_ARGUMENT, "unknown point format", _points(good), parameters={"format": "las"}
    )
    _refused(
        client, Status.INVALID_ARGUMENT, "must be a string_param", _points(good), parameters={"format": 5}
    )
    _refused(
        client,
        Status.INVALID_ARGUMENT,
        "unknown output",
        _points(good),
        outputs=[tritongrpc.InferRequestedOutput("boxes")],
    )
    cloud = tritongrpc.InferInput("cloud", [10, 5], "FP32")
    cloud.set_data_from_numpy(good)
    _refused(client, Status.INVALID_ARGUMENT, "exactly one input", cloud)
    # above the receive limit (max_points rows of 5 FP32 plus slack): gRPC's own RESOURCE_EXHAUSTED
    _refused(client, Status.RESOURCE_EXHAUSTED, "larger than max", _points(_cloud(MAX_POINTS + 70_000)))
    assert served.local.process.poll() is None and client.is_server_live()
    assert client.infer("tiny", [_points(good)]).as_numpy("labels").shape == (10,)


def test_a_cloud_above_grpcs_default_message_limit_is_received(served: GrpcServer, client: Any) -> None:
    records = _cloud(220_000)  # 4.4 MB: over gRPC's 4 MiB default, within --max-points
    assert records.nbytes > 4 * 1024 * 1024
    assert client.infer("tiny", [_points(records)]).as_numpy("labels").shape == (220_000,)


def test_the_limit_fits_the_default_max_points() -> None:
    default = ServeSettings().max_points
    assert grpc_service.max_message_bytes(default) >= default * 5 * 4 + 1024  # 2,000,000 × 5 FP32
    assert grpc_service.max_message_bytes(10**9) == 2**31 - 1  # a C int for gRPC


def _stub(served: GrpcServer) -> tuple[Any, Any]:
    channel = grpc.insecure_channel(served.address)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _raw_request(records: np.ndarray, **parameters: str) -> Any:
    request = service_pb2.ModelInferRequest(model_name="tiny", id="c1")
    tensor = request.inputs.add(name="points", datatype="FP32", shape=list(records.shape))
    for key, value in parameters.items():
        tensor.parameters[key].string_param = value
    return request


def test_fp32_contents_and_the_inputs_format_parameter(served: GrpcServer) -> None:
    records = _cloud(2000, 4, seed=8)
    expected = _segment(served.url, records.tobytes(), PointFormat.KITTI)
    channel, stub = _stub(served)
    with channel:
        request = _raw_request(records, format="kitti")
        request.inputs[0].contents.fp32_contents.extend(records.reshape(-1).tolist())
        request.parameters["format"].string_param = "nuscenes"  # the input's parameter wins
        response = stub.ModelInfer(request, timeout=60)
        assert response.raw_output_contents[0] == expected and response.id == "c1"
        assert response.parameters["format"].string_param == "kitti"
        request.raw_input_contents.append(records.tobytes())  # and also raw: ambiguous
        with pytest.raises(grpc.RpcError) as both:
            stub.ModelInfer(request, timeout=60)
        assert both.value.code() == Status.INVALID_ARGUMENT and "both" in both.value.details()
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="x"), timeout=60)
        assert unknown.value.code() == Status.NOT_FOUND
        assert ("error-code", "unknown_model") in unknown.value.trailing_metadata()


def _samples(served: GrpcServer) -> dict[str, float]:
    text = httpx.get(f"{served.url}/metrics", timeout=30).text
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in lines}


def test_every_model_infer_is_in_the_metrics(served: GrpcServer, client: Any) -> None:
    served_200 = 'seg_requests_total{status="200"}'
    unknown = 'seg_errors_total{code="unknown_model",status="404"}'
    before = _samples(served)
    client.infer("tiny", [_points(_cloud(100))])
    with pytest.raises(InferenceServerException):
        client.infer("other", [_points(_cloud(100))])
    after = _samples(served)
    assert after[served_200] == before.get(served_200, 0) + 1
    assert after[unknown] == before.get(unknown, 0) + 1


def test_auth_on_every_rpc_but_the_probes_and_server_metadata(tiny_export: Path) -> None:
    server = _start(tiny_export, env={"SEG_AUTH_TOKEN": TOKEN})
    triton = server.client()
    try:
        records = _cloud(5)
        assert triton.is_server_live() and triton.is_server_ready()  # probes stay open
        assert triton.get_server_metadata().name == "ddata-lidarseg"  # as GET /v2
        calls: list[Callable[[dict[str, str] | None], object]] = [
            lambda h: triton.infer("tiny", [_points(records)], headers=h),
            lambda h: triton.get_model_metadata("tiny", headers=h),
            lambda h: triton.is_model_ready("tiny", headers=h),
        ]
        for call in calls:
            for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
                with pytest.raises(InferenceServerException) as refused:
                    call(headers)
                assert refused.value.status() == str(Status.UNAUTHENTICATED), refused.value
                assert "bearer token" in refused.value.message()
        right = {"authorization": f"Bearer {TOKEN}"}
        assert triton.infer("tiny", [_points(records)], headers=right).as_numpy("labels").shape == (5,)
        assert triton.get_model_metadata("tiny", headers=right).name == "tiny"
        assert triton.is_model_ready("tiny", headers=right)
    finally:
        triton.close()
        server.local.stop()


def test_a_taken_grpc_port_fails_the_start(tiny_export: Path) -> None:
    # held by another gRPC server with gRPC's default options (SO_REUSEPORT on, as a Triton on the
    # same host): a second server with them too would bind it and share its traffic
    other = grpc.server(futures.ThreadPoolExecutor(1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        command = [sys.executable, "-m", "serve", "--model", str(tiny_export), "--backend", "onnxruntime"]
        command += ["--port", str(free_port()), "--grpc-port", str(port)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        other.stop(None)
    assert done.returncode == 1, done.stderr[-2000:]  # as uvicorn's own taken port
    assert f"gRPC cannot listen on 127.0.0.1:{port}" in done.stderr


def test_grpc_port_settings(tiny_export: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert ServeSettings(grpc_port=8001).grpc_port == 8001 and ServeSettings().grpc_port is None
    for bad in (0, 65536, 8000):  # 8000: the HTTP port
        with pytest.raises(ValidationError, match="grpc_port"):
            ServeSettings(grpc_port=bad)
    monkeypatch.setenv("SEG_GRPC_PORT", "9001")
    assert ServeSettings().grpc_port == 9001
    # without the grpc extra, --grpc-port is a setup error (exit 2), said before anything starts
    from serve.__main__ import main

    monkeypatch.setitem(sys.modules, "serve.grpc_service", None)  # `import` raises ImportError
    assert main(["--model", str(tiny_export), "--grpc-port", "9002"]) == 2
    assert "grpc extra" in capsys.readouterr().err


# --- in process: the states a real server passes through too briefly to catch ----------------------


def _run(state: ModelState, check: Callable[[Any], Awaitable[None]]) -> None:
    """``check(stub)`` against the gRPC service on ``state``, on one event loop (as under uvicorn)."""
    port = free_port()

    async def main() -> None:
        server = await grpc_service.start_grpc_server(state, "127.0.0.1", port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await check(service_pb2_grpc.GRPCInferenceServiceStub(channel))
        finally:
            await server.stop(None)

    asyncio.run(main())


async def _error(call: Awaitable[Any]) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def _trailing(error: Any) -> dict[str, str]:
    return {key: value for key, value in error.trailing_metadata()}


def _infer_request(n: int = 10) -> Any:
    records = _cloud(n)
    request = _raw_request(records)
    request.raw_input_contents.append(records.tobytes())
    return request


def _count(state: ModelState, name: str, **labels: str) -> float:
    return state.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def ready_state(tiny_export: Path) -> Iterator[ModelState]:
    state = ModelState(
        ServeSettings(model=tiny_export, backend="onnxruntime", max_queue=2, warmup_points=2000)
    )
    state.load()
    assert state.status is ModelStatus.READY, state.failure
    yield state
    state.close()


def test_warming_up_then_failed(tiny_export: Path) -> None:
    state = ModelState(ServeSettings(model=tiny_export, backend="onnxruntime"))  # never loads

    async def check(stub: Any) -> None:
        assert (await stub.ServerLive(service_pb2.ServerLiveRequest())).live
        assert not (await stub.ServerReady(service_pb2.ServerReadyRequest())).ready
        assert not (await stub.ModelReady(service_pb2.ModelReadyRequest(name="tiny"))).ready
        for call in (
            stub.ModelInfer(_infer_request()),
            stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="tiny")),
        ):
            error = await _error(call)
            assert error.code() == Status.UNAVAILABLE and "warming up" in error.details()
            assert _trailing(error) == {"error-code": "warming_up", "retry-after": "1"}
        state.fail(f"{tiny_export}: model.onnx is truncated")
        assert not (await stub.ServerLive(service_pb2.ServerLiveRequest())).live
        error = await _error(stub.ModelInfer(_infer_request()))
        assert error.code() == Status.UNAVAILABLE and "model.onnx is truncated" in error.details()
        assert _trailing(error) == {"error-code": "model_unavailable"}  # no point retrying

    try:
        _run(state, check)
    finally:
        state.close()
    assert _count(state, "seg_errors_total", status="503", code="warming_up") == 1  # ModelInfer only
    assert _count(state, "seg_errors_total", status="503", code="model_unavailable") == 1


def test_the_admission_bound_is_shared_with_http(ready_state: ModelState) -> None:
    state = ready_state
    refused = _count(state, "seg_errors_total", status="503", code="queue_full")
    ok = _count(state, "seg_requests_total", status="200")

    async def check(stub: Any) -> None:
        async with admission(state), admission(state):  # max_queue requests in flight, e.g. over HTTP
            error = await _error(stub.ModelInfer(_infer_request()))
        assert error.code() == Status.UNAVAILABLE and "try again" in error.details()
        assert _trailing(error) == {"error-code": "queue_full", "retry-after": "1"}
        response = await stub.ModelInfer(_infer_request())
        assert len(response.raw_output_contents[0]) == 10
        assert state.admitted == 0  # the gRPC request gave its place back

    _run(state, check)
    assert _count(state, "seg_errors_total", status="503", code="queue_full") == refused + 1
    assert _count(state, "seg_requests_total", status="200") == ok + 1


def test_an_unexpected_error_is_internal_not_unknown(
    ready_state: ModelState, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(grpc_service, "segment", broken)
    before = _count(ready_state, "seg_errors_total", status="500", code="internal")

    async def check(stub: Any) -> None:
        error = await _error(stub.ModelInfer(_infer_request()))
        assert error.code() == Status.INTERNAL and "see the server log" in error.details()
        assert "a bug" not in error.details()  # the log has it, the client does not
        assert _trailing(error) == {"error-code": "internal"}

    _run(ready_state, check)
    assert _count(ready_state, "seg_errors_total", status="500", code="internal") == before + 1
