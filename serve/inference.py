"""Running a request's segmentation, the same way for every protocol (``/segment``, KServe v2 over
HTTP and gRPC): admission under one bound, the work on the inference thread, one error policy.

`admission` admits a request or refuses it with 503 ``queue_full`` (and ``Retry-After``) when
``max_queue`` requests are already running or waiting; `segment` runs the decode and the model on
the state's single inference thread (the model is not shared between threads) and turns anything but
a `ServiceError` into a logged 500 ``internal``. With ``max_batch`` > 1 the requests waiting for
that thread are segmented together (`serve.batching.MicroBatcher`), each decoded alone first.
Every request that ends or is refused pokes the state's `serve.memory.IdleRelease`, which gives
the freed heap back to the OS once the service is quiet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from seg3d.points import PointFormat
from serve.batching import batcher_for
from serve.errors import ServiceError
from serve.model import LoadedModel, ModelState
from serve.segmenter import Segmentation

__all__ = ["admission", "segment"]

log = logging.getLogger("serve")


@asynccontextmanager
async def admission(state: ModelState) -> AsyncIterator[None]:
    """Hold one of the ``max_queue`` places while the block runs, or raise 503 ``queue_full``.

    Runs on the event loop, so the count needs no lock: HTTP and gRPC requests share it."""
    if state.admitted >= state.settings.max_queue:
        state.idle_release.poke()  # a refused request's buffers are garbage too
        raise ServiceError(
            503,
            "queue_full",
            f"{state.admitted} requests in flight; try again",
            {"Retry-After": str(state.settings.retry_after_s)},
        )
    state.admitted += 1
    state.metrics.inflight.inc()
    try:
        yield
    finally:
        state.admitted -= 1
        state.metrics.inflight.dec()
        state.idle_release.poke()


async def segment(
    state: ModelState, model: LoadedModel, body: bytes, fmt: PointFormat, logits: bool = False
) -> Segmentation:
    """Decode ``body`` in ``fmt`` and segment it on the inference thread; with micro-batching on
    (``max_batch`` > 1, `serve.batching`) decode it on a worker thread, then segment it there together
    with the other clouds waiting for the thread.

    Raises:
        ServiceError: the segmenter's refusals (413, 422), or 500 ``internal`` for anything else
            (logged with its traceback).
    """
    loop = asyncio.get_running_loop()
    batcher = batcher_for(state, model.segmenter)
    try:
        if batcher is None:
            return await loop.run_in_executor(state.executor, model.segmenter.handle, body, fmt, logits)
        # Decoded off the inference thread and alone, so that a body that does not decode fails
        # by itself and the thread only ever sees clouds that can join a batch.
        start = time.perf_counter()
        points = await loop.run_in_executor(None, model.segmenter.decode, body, fmt)
        parse_ms = (time.perf_counter() - start) * 1e3
        result = await asyncio.wrap_future(batcher.submit(points, logits))
        result.timing_ms = {"parse": parse_ms, **result.timing_ms}
        return result
    except ServiceError:
        raise
    except Exception as exc:
        log.exception("segmentation failed")
        raise ServiceError(500, "internal", "segmentation failed; see the server log") from exc
