"""The served model's life: load and warm up on a background thread; loading → ready | failed.

`load_model` does the whole start-up — the manifest with every artifact verified
(`seg3d.manifest.load_manifest`), the backend, one warm-up inference — and turns any failure into a
`ModelLoadError` whose one-line message names the file and the cause. `ModelState` runs it on a
thread (so ``/v2/health/live`` answers during a slow load), holds the result, and on failure logs
that line once and calls ``on_failure`` (``python -m serve`` stops the server with it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import torch

from seg3d.manifest import ExportManifest, ServableGraph, load_manifest
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import synthetic_sweep
from serve.backends import OnnxRuntimeBackend, choose_backend, graph_form_served, precision_of
from serve.memory import IdleRelease
from serve.metrics import Metrics
from serve.segmenter import Segmenter
from serve.settings import ServeSettings

__all__ = ["LoadedModel", "ModelLoadError", "ModelState", "ModelStatus", "load_model"]

log = logging.getLogger("serve")


class ModelStatus(str, Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ModelLoadError(RuntimeError):
    """The model could not be loaded or warmed up; the message names the file and the cause."""


@dataclass(frozen=True)
class LoadedModel:
    """The model being served; ``name`` is the one the service reports and answers to: the
    ``model_name`` setting (``--name``, ``SEG_MODEL_NAME``), else the manifest's ``model.name``."""

    manifest: ExportManifest
    segmenter: Segmenter
    warmup_ms: float
    name: str

    @property
    def precision(self) -> str:
        """The arithmetic precision the backend runs in (`serve.backends.precision_of`)."""
        return precision_of(self.segmenter.backend, self.manifest.model.precision)

    @property
    def graph_form(self) -> str | None:
        """The form of the exported graph served (``dense``/``sparse``); None on a torch backend."""
        return graph_form_served(self.segmenter.backend)

    @property
    def graph_served(self) -> ServableGraph | None:
        """The exported graph served: the one an ONNX Runtime backend runs, the primary for a
        TensorRT engine (built from it); None on a torch backend."""
        backend = self.segmenter.backend
        if isinstance(backend, OnnxRuntimeBackend):
            return self.manifest.servable_graph(backend.graph_name)
        return self.manifest.graphs()[0] if self.graph_form is not None else None

    @property
    def int8_layers(self) -> int:
        """Layers of the served graph that run in int8 (0 on a torch backend)."""
        graph = self.graph_served
        return 0 if graph is None else sum(p == "int8" for p in graph.graph.layers.values())

    @property
    def int8_arithmetic(self) -> str | None:
        """How ONNX Runtime runs the int8 layers: ``integer`` kernels or ``emulated`` in float on a
        CPU without VNNI (`seg3d.ort_options`); None for a float graph, a CUDA session or another
        backend."""
        backend = self.segmenter.backend
        return backend.int8_arithmetic if isinstance(backend, OnnxRuntimeBackend) else None


def _describe(exc: BaseException, folder: object) -> str:
    """One line: the message of our own errors (they name their file), else the type and message,
    prefixed with the model folder when the message does not name it."""
    message = " ".join(str(exc).split()) or "no detail"
    if not isinstance(exc, OSError | ValueError | RuntimeError) or type(exc) is RuntimeError:
        message = f"{type(exc).__name__}: {message}"
    return message if str(folder) in message else f"{folder}: {message}"


def load_model(settings: ServeSettings) -> LoadedModel:
    """Manifest (verified), backend, one warm-up inference.

    Raises:
        ModelLoadError: whatever went wrong, in one line naming the folder or file and the cause.
    """
    folder = settings.model
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        manifest = load_manifest(folder)
        config = manifest.config
        warm = synthetic_sweep(settings.warmup_points, intensity_max=config.input.intensity_max)
        # `auto` times every backend on this cloud; a named backend needs no probe.
        probe = (
            prepare_inputs(warm[crop_mask(warm[:, :3], config.grid)], config)
            if settings.backend == "auto"
            else None
        )
        backend = choose_backend(
            settings.backend,
            folder,
            config,
            settings.threads,
            probe,
            settings.torch_precision,
            settings.onnx_graph,
        )
    except Exception as exc:
        raise ModelLoadError(_describe(exc, folder)) from exc
    segmenter = Segmenter(config, backend, settings.max_points)
    start = time.perf_counter()
    try:
        segmenter.segment(warm.numpy())
    except Exception as exc:
        where = f"{folder}: the warm-up inference on {backend.name}/{backend.device} failed"
        raise ModelLoadError(f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    name = settings.model_name or manifest.model.name
    return LoadedModel(manifest, segmenter, (time.perf_counter() - start) * 1e3, name)


@dataclass
class ModelState:
    """What the routes see: the status, the model once ready, the cause once failed, and the
    admission count and inference thread of `POST /segment`."""

    settings: ServeSettings
    metrics: Metrics = field(default_factory=Metrics)
    on_failure: Callable[[str], None] | None = None
    status: ModelStatus = ModelStatus.LOADING
    model: LoadedModel | None = None
    failure: str | None = None
    admitted: int = 0
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="seg-infer")
    )
    # Hands the heap back to the OS once a burst is over (see `serve.memory`); poked by `admission`.
    idle_release: IdleRelease = field(init=False)

    def __post_init__(self) -> None:
        self.idle_release = IdleRelease(busy=lambda: self.admitted > 0)

    def start_loading(self) -> threading.Thread:
        loader = threading.Thread(target=self.load, name="seg-load", daemon=True)
        loader.start()
        return loader

    def load(self) -> None:
        """Load and warm up (on the loader thread); then ready, or failed with the cause."""
        try:
            model = load_model(self.settings)
        except Exception as exc:  # ModelLoadError, or a bug: either way the model is not served
            self.fail(str(exc) if isinstance(exc, ModelLoadError) else _describe(exc, self.settings.model))
            return
        backend = model.segmenter.backend
        exported_as = model.manifest.model.name
        log.info(
            "model %s%s ready on %s/%s (%s) after a %.0f ms warm-up%s",
            model.name,
            f" (exported as {exported_as})" if exported_as != model.name else "",
            backend.name,
            backend.device,
            model.precision,
            model.warmup_ms,
            " (UNTRAINED: random-init export)" if model.manifest.model.random_init else "",
        )
        self.metrics.info.labels(model.name, backend.name, backend.device, model.precision).set(1)
        self.model = model
        self.status = ModelStatus.READY

    def fail(self, cause: str) -> None:
        """Failed for good: log the one line, then tell the owner (which may stop the server)."""
        self.failure = cause
        self.status = ModelStatus.FAILED
        log.error("model could not be loaded: %s", cause)
        if self.on_failure is not None:
            self.on_failure(cause)

    def close(self) -> None:
        self.idle_release.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
