"""Micro-batching: decoded requests waiting for the inference thread run as one backend call.

Every request's model work runs on the state's single inference thread (`serve.model.ModelState`),
one after the other. With ``--max-batch N`` (N > 1) the requests that queue up behind it are
segmented together instead: `MicroBatcher` collects them, up to ``max_batch`` clouds and
``max_batch_points`` points, waiting at most ``batch_window_ms`` after the first arrived for more,
and runs them through `serve.segmenter.Segmenter.segment_batch` (one preprocessing, one backend
call; each cloud's labels as if alone). A GPU fills better and pays its kernel launches once per
batch; on a CPU the model's work grows with the points whatever the batching. Measured on a 2-core
CPU (bench/results/batching-cpu2-amd-epyc.md): 0.91-1.05x the throughput of unbatched serving at 1,
8 and 32 clients, and at nuscenes_full 6x the server's peak memory, so it is off by default.

Each request is decoded on its own before it joins (`serve.inference.segment`), so a body that does
not decode fails alone. If a batch's call fails, its clouds are segmented again one by one, so each
waiter gets its own result or its own error.

Collection runs on the inference thread itself (a drain job per submission, which finds the queue
empty when an earlier drain took its request): the thread is the one resource that batching
shares out, and nothing else runs on it while a batch is being gathered. Submission is thread-safe
and answers a `concurrent.futures.Future`, so any event loop (HTTP, gRPC) can await it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from serve.model import ModelState
from serve.segmenter import Segmentation, Segmenter

__all__ = ["MicroBatcher", "batcher_for"]

log = logging.getLogger("serve")


@dataclass
class _Waiting:
    """One decoded request in the queue."""

    points: npt.NDArray[np.float32]
    logits: bool
    arrived: float  # time.monotonic() at submission
    future: Future[Segmentation]


class MicroBatcher:
    """Runs the decoded clouds submitted while the inference thread is busy as batches on it.

    Args:
        segmenter: the model's segmenter (`Segmenter.segment_batch`).
        executor: the single inference thread; batches and their collection run there.
        max_batch: clouds per backend call (at least 1).
        max_batch_points: points (decoded, in and outside the crop) per call: a cloud that would
            take a batch past it waits for the next one; a larger cloud runs alone.
        window_ms: how long after the first cloud of a batch arrived more may join it.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        executor: Executor,
        max_batch: int,
        max_batch_points: int,
        window_ms: float,
    ) -> None:
        if max_batch < 1 or max_batch_points < 1 or window_ms < 0:
            raise ValueError(
                f"max_batch {max_batch} and max_batch_points {max_batch_points} must be at least 1 "
                f"and window_ms {window_ms} not negative"
            )
        if max_batch > 1 and not segmenter.batches:
            log.warning(
                "micro-batching is off: the %s backend segments one cloud per call (max_batch %d ignored)",
                segmenter.backend.name,
                max_batch,
            )
            max_batch = 1  # every request alone and at once: no window to wait
        self.segmenter = segmenter
        self.executor = executor
        self.max_batch = max_batch
        self.max_batch_points = max_batch_points
        self.window_s = window_ms / 1e3
        self._queue: deque[_Waiting] = deque()
        self._arrival = threading.Condition()

    def submit(self, points: npt.NDArray[np.float32], logits: bool = False) -> Future[Segmentation]:
        """Queue ``(N, 4)`` model-scale points; the future answers `Segmenter.segment`'s result (its
        ``batch_size`` says how many clouds shared the call) or its error.

        Raises:
            RuntimeError: the inference thread is shut down.
        """
        future: Future[Segmentation] = Future()
        with self._arrival:
            self._queue.append(_Waiting(points, logits, time.monotonic(), future))
            self._arrival.notify()
        # One drain per submission: the drains run in order, each takes at least the oldest waiting
        # request if there is one, so every request is taken by its own drain or an earlier one.
        self.executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        """On the inference thread: gather a batch and run it (nothing when earlier drains took
        every waiting request)."""
        batch = self._collect()
        if batch:
            self._run(batch)

    def _fits(self, count: int, points: int, cloud: _Waiting) -> bool:
        """Whether ``cloud`` may join a batch of ``count`` clouds and ``points`` points."""
        if count == 0:
            return True  # a cloud above max_batch_points runs alone rather than never
        return count < self.max_batch and points + cloud.points.shape[0] <= self.max_batch_points

    def _collect(self) -> list[_Waiting]:
        with self._arrival:
            if not self._queue:
                return []
            deadline = self._queue[0].arrived + self.window_s
            while True:
                count, points = 0, 0
                for cloud in self._queue:
                    if not self._fits(count, points, cloud):
                        break
                    count, points = count + 1, points + cloud.points.shape[0]
                full = count < len(self._queue)  # the next one does not fit: no point waiting
                left = deadline - time.monotonic()
                if full or count >= self.max_batch or left <= 0:
                    break
                self._arrival.wait(left)
            taken = [self._queue.popleft() for _ in range(count)]
        # A waiter that gave up (a client that went away) is dropped here, not segmented.
        return [w for w in taken if w.future.set_running_or_notify_cancel()]

    def _run(self, batch: list[_Waiting]) -> None:
        try:
            results = self.segmenter.segment_batch([w.points for w in batch], [w.logits for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            # One cloud's failure must not be every waiter's: each gets its own result or error.
            log.debug("a batch of %d clouds failed (%r); segmenting them one by one", len(batch), exc)
            for waiting in batch:
                try:
                    waiting.future.set_result(self.segmenter.segment(waiting.points, waiting.logits))
                except Exception as own:
                    waiting.future.set_exception(own)
            return
        if len(batch) > 1:
            log.debug("segmented %d clouds in one call", len(batch))
        for waiting, result in zip(batch, results, strict=True):
            waiting.future.set_result(result)


_CREATE = threading.Lock()
_ATTRIBUTE = "_micro_batcher"


def batcher_for(state: ModelState, segmenter: Segmenter) -> MicroBatcher | None:
    """The state's batcher for ``segmenter`` (made on first use), or None when batching is off
    (``max_batch`` 1). Kept on the state, which outlives every request of its app."""
    settings = state.settings
    if settings.max_batch <= 1:
        return None
    with _CREATE:  # HTTP and gRPC requests may ask first at the same time
        batcher: MicroBatcher | None = getattr(state, _ATTRIBUTE, None)
        if batcher is None or batcher.segmenter is not segmenter:
            batcher = MicroBatcher(
                segmenter,
                state.executor,
                settings.max_batch,
                settings.max_batch_points,
                settings.batch_window_ms,
            )
            setattr(state, _ATTRIBUTE, batcher)
    return batcher
