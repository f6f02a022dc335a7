"""Where a labelling job runs: worker processes on this machine, or the actors of a Ray cluster.

Both engines run the same `Labeller` on the same tasks with the same per-worker thread count, so
they write the same bytes. Each yields one `TaskResult` per task as it completes (not in task order).

- `run_local`: ``workers`` processes (spawned, so that no torch or ONNX Runtime state is forked),
  each loading the model once; one worker runs in this process.
- `run_ray`: Ray Data: the task list → ``map_batches`` with a callable class, so that each actor
  loads the model once; ``concurrency`` actors of ``cpus`` CPUs (and ``gpus`` GPUs) each, on the
  cluster at ``address`` or on a local one started for the job.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from serve.label.tasks import Task, TaskResult
from serve.label.worker import Labeller, WorkerOptions
from serve.model import ModelLoadError

__all__ = ["EngineError", "RayOptions", "run_local", "run_ray"]


class EngineError(RuntimeError):
    """The engine could not run the job (Ray missing, the cluster unreachable, a worker that died)."""


_worker: Labeller | ModelLoadError | None = None


def _start_worker(options: WorkerOptions) -> None:
    # A pool whose initializer raises restarts its workers for ever: keep the error, and raise it
    # from the first task instead, which carries it to the caller.
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    try:
        _worker = Labeller(options)
    except ModelLoadError as exc:
        _worker = exc


def _label(task: Task) -> TaskResult:
    if isinstance(_worker, ModelLoadError):
        raise _worker
    assert _worker is not None, "the pool's initializer loads the model"
    return _worker.label(task)


def run_local(tasks: Sequence[Task], options: WorkerOptions, workers: int) -> Iterator[TaskResult]:
    """Label ``tasks`` with ``workers`` processes. The model loads in each before the first result
    (`serve.model.ModelLoadError` from this process with one worker; `EngineError` when a worker
    process cannot start)."""
    if workers <= 1 or len(tasks) <= 1:
        labeller = Labeller(options)
        for task in tasks:
            yield labeller.label(task)
        return
    context = multiprocessing.get_context("spawn")
    try:
        pool = context.Pool(min(workers, len(tasks)), initializer=_start_worker, initargs=(options,))
    except OSError as exc:
        raise EngineError(f"cannot start {workers} worker processes: {exc}") from exc
    try:
        # chunksize 1: files are large units of work, and a small chunk keeps the progress honest
        yield from pool.imap_unordered(_label, tasks, chunksize=1)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise EngineError(f"a worker process failed: {type(exc).__name__}: {exc}") from exc
    finally:
        pool.terminate()
        pool.join()


@dataclass(frozen=True)
class RayOptions:
    """``address``: a running cluster (``ray://host:10001`` or ``auto``); None starts a local one
    with ``local_cpus`` CPUs for this job. ``concurrency`` actors, each with ``cpus`` CPUs and
    ``gpus`` GPUs (fractions share a GPU)."""

    address: str | None = None
    concurrency: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    local_cpus: int | None = None


class _RayLabeller:
    """The callable class Ray Data builds once per actor: `Labeller` over rows of tasks."""

    def __init__(self, options: WorkerOptions) -> None:
        self.labeller = Labeller(options)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        results = [self.labeller.label(Task.from_row(row)).as_row() for row in rows]
        return {name: np.asarray([r[name] for r in results]) for name in results[0]}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the Data library ships with the ray[data] extra
    except ImportError as exc:
        raise EngineError(
            "--engine ray needs Ray Data: pip install -e '.[ray]' (or pip install 'ray[data]')"
        ) from exc
    return ray


def run_ray(tasks: Sequence[Task], options: WorkerOptions, ray_options: RayOptions) -> Iterator[TaskResult]:
    """Label ``tasks`` on a Ray cluster (module docstring). Ray is shut down afterwards when this
    call started it."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if ray_options.address:
                ray.init(address=ray_options.address, log_to_driver=False)
            else:
                ray.init(num_cpus=ray_options.local_cpus, log_to_driver=False, include_dashboard=False)
        except Exception as exc:
            where = ray_options.address or "a local cluster"
            raise EngineError(f"cannot connect to Ray ({where}): {type(exc).__name__}: {exc}") from exc
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job draws its own bar over the files
        context.execution_options.preserve_order = False
        dataset = ray.data.from_items([t.as_row() for t in tasks], override_num_blocks=max(1, len(tasks)))
        labelled = dataset.map_batches(
            _RayLabeller,
            fn_constructor_kwargs={"options": options},
            batch_size=1,
            concurrency=ray_options.concurrency,
            num_cpus=ray_options.cpus,
            num_gpus=ray_options.gpus or None,
        )
        try:
            for row in labelled.iter_rows():
                yield TaskResult.from_row(row)
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(exc, ModelLoadError) or isinstance(cause, ModelLoadError):
                raise ModelLoadError(str(cause or exc)) from exc
            raise EngineError(f"the Ray job failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if started:
            ray.shutdown()
