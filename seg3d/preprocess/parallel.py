"""Run independent per-scale preprocessing steps on all CPU cores.

The steps of one scale (a sort, a binary search, table fills) are single-threaded torch ops that
release the GIL, and scales do not depend on each other, so a small thread pool keeps both cores of
a 2-core host busy. On CUDA, or with one torch thread, the steps run in order on the caller's thread.
Results never depend on the schedule: each step writes only its own outputs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seg3d-prep")
            _pool_size = workers
        return _pool


def parallel_map(fn: Callable[[T], R], items: Sequence[T], device: torch.device) -> list[R]:
    """``[fn(x) for x in items]``, spread over ``torch.get_num_threads()`` threads on CPU."""
    workers = min(torch.get_num_threads(), len(items))
    on_worker = threading.current_thread().name.startswith("seg3d-prep")
    if device.type != "cpu" or workers <= 1 or on_worker:
        return [fn(item) for item in items]
    return list(_executor(workers).map(fn, items))
