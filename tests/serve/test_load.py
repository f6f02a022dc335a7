"""Bounded load: 64 concurrent clients × 10 requests of a real sweep against the real server, on
``/segment`` alone and mixed over ``/segment``, the protocol's HTTP infer and gRPC."""

from __future__ import annotations

import asyncio
import collections
import json
import time

import httpx
import psutil
import pytest

from seg3d.scans import real_scans
from serve.memory import IDLE_DELAY_S
from tests.serve.conftest import Server


def quiet_rss(process: psutil.Process) -> int:
    """RSS once the service has been quiet long enough to give its freed heap back
    (`serve.memory.IdleRelease`), so that the figure is not taken mid-release."""
    time.sleep(3 * IDLE_DELAY_S)
    return process.memory_info().rss


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real nuScenes scans not found")
def test_64_clients_no_5xx_but_503_and_memory_returns(server: Server) -> None:
    body = real_scans(("nuscenes",))[0].path.read_bytes()
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    process = psutil.Process(server.process.pid)
    with server.client() as client:  # settle the allocator before the baseline
        for _ in range(10):
            assert client.post("/segment", content=body, headers=headers).status_code == 200
    before = quiet_rss(process)

    async def one_client(client: httpx.AsyncClient, statuses: collections.Counter) -> None:
        for _ in range(10):
            response = await client.post("/segment", content=body, headers=headers)
            statuses[response.status_code] += 1
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1
            elif response.status_code == 200:
                assert len(response.content) == len(body) // 20

    async def run() -> collections.Counter:
        statuses: collections.Counter = collections.Counter()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            await asyncio.gather(*(one_client(client, statuses) for _ in range(64)))
        return statuses

    statuses = asyncio.run(run())
    after = quiet_rss(process)
    assert sum(statuses.values()) == 640
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert after <= before * 1.10, f"RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB ({statuses})"
    with server.client() as client:  # and it still answers
        assert client.post("/segment", content=body, headers=headers).status_code == 200


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real nuScenes scans not found")
def test_64_clients_mixed_over_http_and_grpc(tiny_export) -> None:
    """The same bound over both protocols of one process: 64 clients × 10 requests, a third on
    ``/segment``, a third on the protocol's HTTP infer (binary tensors), a third on gRPC ModelInfer.
    Nothing but 200/OK and 503/UNAVAILABLE with a retry-after comes back, every answer has one label
    per point, and the server's memory returns within 10 %."""
    grpc = pytest.importorskip("grpc", reason="grpcio is not installed")
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from serve.local import free_port, start_local_server

    scan = real_scans(("nuscenes",))[0]
    body = scan.path.read_bytes()
    n = len(body) // 20
    octet = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "points",
                    "datatype": "FP32",
                    "shape": [n, 5],
                    "parameters": {"binary_data_size": len(body)},
                }
            ],
            "outputs": [{"name": "labels", "parameters": {"binary_data": True}}],
        }
    ).encode()
    infer_headers = {"Inference-Header-Content-Length": str(len(header))}
    grpc_port = free_port()
    local = start_local_server(
        tiny_export, "--backend", "onnxruntime", "--grpc-port", str(grpc_port), "--log-level", "warning"
    )
    try:
        process = psutil.Process(local.process.pid)
        with httpx.Client(base_url=local.url, timeout=120) as client:  # settle the allocator first
            for _ in range(10):
                assert client.post("/segment", content=body, headers=octet).status_code == 200
        before = quiet_rss(process)
        request = service_pb2.ModelInferRequest(
            model_name="tiny",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(name="points", datatype="FP32", shape=[n, 5])
            ],
            raw_input_contents=[body],
        )

        async def http_client(client: httpx.AsyncClient, statuses: collections.Counter, v2: bool) -> None:
            for _ in range(10):
                if v2:
                    response = await client.post(
                        "/v2/models/tiny/infer", content=header + body, headers=infer_headers
                    )
                else:
                    response = await client.post("/segment", content=body, headers=octet)
                statuses[("v2" if v2 else "segment", response.status_code)] += 1
                if response.status_code == 503:
                    assert int(response.headers["retry-after"]) >= 1
                elif response.status_code == 200:
                    labels = (
                        response.content[int(response.headers["inference-header-content-length"]) :]
                        if v2
                        else response.content
                    )
                    assert len(labels) == n

        async def grpc_client(stub, statuses: collections.Counter) -> None:
            for _ in range(10):
                try:
                    reply = await stub.ModelInfer(request, timeout=120)
                except grpc.aio.AioRpcError as error:
                    statuses[("grpc", error.code().name)] += 1
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                    trailing = dict(error.trailing_metadata() or ())
                    assert int(trailing["retry-after"]) >= 1, trailing
                else:
                    statuses[("grpc", "OK")] += 1
                    assert len(reply.raw_output_contents[0]) == n

        async def run() -> collections.Counter:
            statuses: collections.Counter = collections.Counter()
            limits = httpx.Limits(max_connections=64)
            async with (
                httpx.AsyncClient(base_url=local.url, timeout=120, limits=limits) as client,
                grpc.aio.insecure_channel(
                    f"127.0.0.1:{grpc_port}", options=[("grpc.max_receive_message_length", 64 * 2**20)]
                ) as channel,
            ):
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                clients = [
                    http_client(client, statuses, v2=i % 3 == 1)
                    if i % 3 != 2
                    else grpc_client(stub, statuses)
                    for i in range(64)
                ]
                await asyncio.gather(*clients)
            return statuses

        statuses = asyncio.run(run())
        after = quiet_rss(process)
        assert sum(statuses.values()) == 640
        assert {status for _, status in statuses} <= {200, 503, "OK", "UNAVAILABLE"}, statuses
        for route, ok in (("segment", 200), ("v2", 200), ("grpc", "OK")):
            assert statuses[(route, ok)] > 0, statuses  # every protocol got through
        assert after <= before * 1.10, f"RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB ({statuses})"
        with httpx.Client(base_url=local.url, timeout=120) as client:  # and it still answers
            assert client.post("/segment", content=body, headers=octet).status_code == 200
    finally:
        local.stop()
