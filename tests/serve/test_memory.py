"""`serve.memory`: the idle release gives a burst's freed heap back, once, and only when quiet."""

from __future__ import annotations

import asyncio
import ctypes.util

import psutil
import pytest

from serve.memory import IdleRelease, release_free_memory


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to trim")
def test_release_hands_freed_small_blocks_back() -> None:
    process = psutil.Process()
    release_free_memory()
    before = process.memory_info().rss
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(200_000)]  # ~200 MiB of heap, not mmap
    survivors = blocks[::1000]  # a few live blocks scattered through the heap, as a server has
    del blocks
    retained = process.memory_info().rss
    release_free_memory()
    after = process.memory_info().rss
    assert retained - before > 100 * 2**20, "the allocator gave the pages back by itself"
    assert after - before < 20 * 2**20, f"{before >> 20} -> {retained >> 20} -> {after >> 20} MiB"
    assert len(survivors) == 200


def test_release_waits_for_quiet_and_runs_once_per_quiet_moment() -> None:
    async def scenario() -> list[int]:
        busy = True
        release = IdleRelease(busy=lambda: busy, delay_s=0.05)
        seen = []
        release.poke()
        await asyncio.sleep(0.1)
        seen.append(release.releases)  # busy when it fired: nothing
        busy = False
        for _ in range(5):  # a burst of request ends re-arms one timer
            release.poke()
            await asyncio.sleep(0.01)
        seen.append(release.releases)  # still inside the quiet delay
        await asyncio.sleep(0.1)
        seen.append(release.releases)  # one release for the burst
        release.poke()
        release.cancel()  # the service closing cancels a pending one
        await asyncio.sleep(0.1)
        seen.append(release.releases)
        return seen

    assert asyncio.run(scenario()) == [0, 0, 1, 1]
