"""Bounded load: 64 concurrent clients × 10 requests of a real sweep against the real server."""

from __future__ import annotations

import asyncio
import collections

import httpx
import psutil
import pytest

from seg3d.scans import real_scans
from tests.serve.conftest import Server


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real nuScenes scans not found")
def test_64_clients_no_5xx_but_503_and_memory_returns(server: Server) -> None:
    body = real_scans(("nuscenes",))[0].path.read_bytes()
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    process = psutil.Process(server.process.pid)
    with server.client() as client:  # settle the allocator before the baseline
        for _ in range(10):
            assert client.post("/segment", content=body, headers=headers).status_code == 200
    before = process.memory_info().rss

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
    after = process.memory_info().rss
    assert sum(statuses.values()) == 640
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert after <= before * 1.10, f"RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB ({statuses})"
    with server.client() as client:  # and it still answers
        assert client.post("/segment", content=body, headers=headers).status_code == 200
