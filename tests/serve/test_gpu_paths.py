"""The GPU paths of the serving backends, on CPU, with fake TensorRT and ONNX Runtime objects.

No GPU has run this code: these fakes pin down what the backends must do with each runtime's
return values (a refused input shape, a missing execution context, an output dtype, a session that
fell back to CPU), so that the behaviour is right before it first meets a real device.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seg3d.config import load_config
from seg3d.preprocess import prepare_inputs
from seg3d.scans import synthetic_sweep
from serve.backends import (
    BackendUnavailable,
    EngineProfileError,
    OnnxRuntimeBackend,
    TensorRTBackend,
)
from serve.errors import ServiceError
from serve.segmenter import Segmenter


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 5


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


def fake_tensorrt(engine: Any = None) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.8.0-fake"  # type: ignore[attr-defined]
    trt.DataType = DataType  # type: ignore[attr-defined]
    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            return engine

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    return trt


class FakeStream:
    """Stands for a `torch.cuda.Stream`: a non-zero handle, and a record of synchronisations."""

    cuda_stream = 0xBEEF

    def __init__(self) -> None:
        self.synchronized = 0

    def synchronize(self) -> None:
        self.synchronized += 1


class FakeContext:
    """An execution context on host memory: checks shapes against the profile like TensorRT does
    (returns False outside it) and writes ``label`` into the labels output through its address."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.streams: list[int] = []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self.shapes["features"][0]
        return (n, self.engine.classes) if name == "logits" else (n,)

    def execute_async_v3(self, stream: int) -> bool:
        self.streams.append(stream)
        n = self.shapes["features"][0]
        dtype = {DataType.INT32: np.int32, DataType.INT64: np.int64}[self.engine.dtypes["labels"]]
        labels = np.full(n, self.engine.label, dtype=dtype)
        ctypes.memmove(self.addresses["labels"], labels.ctypes.data, labels.nbytes)
        logits = np.zeros((n, self.engine.classes), dtype=np.float32)
        logits[:, self.engine.label] = 1.0
        ctypes.memmove(self.addresses["logits"], logits.ctypes.data, logits.nbytes)
        return True


class FakeEngine:
    def __init__(
        self,
        inputs: dict[str, tuple[int, ...]],
        classes: int,
        min_points: int = 1,
        max_points: int = 5_000,
        labels_dtype: DataType = DataType.INT32,
        context: bool = True,
    ) -> None:
        self.inputs = inputs
        self.classes = classes
        self.min_points, self.max_points = min_points, max_points
        self.dtypes = {"logits": DataType.FLOAT, "labels": labels_dtype}
        self.label = 3
        self.context_ok = context
        self.names = [*inputs, "logits", "labels"]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtypes.get(name, DataType.FLOAT)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        first = self.min_points if name == "features" else 1
        if name == "features" or name.startswith("neighbours"):  # [N, 10] and [V, 27]: static width
            rest_low = rest_high = self.inputs[name][1:]
        else:  # the tables' widths are dynamic too
            rest_low, rest_high = (
                (1,) * (len(self.inputs[name]) - 1),
                (self.max_points,) * (len(self.inputs[name]) - 1),
            )
        return [(first, *rest_low), (first, *rest_low), (self.max_points, *rest_high)]

    def create_execution_context(self) -> FakeContext | None:
        return FakeContext(self) if self.context_ok else None


@pytest.fixture(scope="module")
def tiny():
    return load_config("tiny")


@pytest.fixture(scope="module")
def sweep(tiny):
    from seg3d.preprocess import crop_mask

    points = synthetic_sweep(3_000, intensity_max=tiny.input.intensity_max)
    return points[crop_mask(points[:, :3], tiny.grid)]


def _engine(config, sweep, graph: str = "dense", **kwargs: Any) -> FakeEngine:
    from seg3d.graph_inputs import graph_inputs

    named = graph_inputs(prepare_inputs(sweep, config), config, graph)
    return FakeEngine({k: tuple(v.shape) for k, v in named.items()}, config.num_classes, **kwargs)


def _backend(config, engine: FakeEngine, monkeypatch) -> TensorRTBackend:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine))
    return TensorRTBackend.from_engine(engine, config, stream=FakeStream(), device="cpu")


def test_tensorrt_load_checks_the_execution_context(tmp_path: Path, tiny, sweep, monkeypatch) -> None:
    engine = _engine(tiny, sweep, context=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (tmp_path / "model.engine").write_bytes(b"plan")
    with pytest.raises(BackendUnavailable, match="execution context"):
        TensorRTBackend.load(tmp_path, tiny)


def test_tensorrt_reads_its_point_range_from_the_profile(tiny, sweep, monkeypatch) -> None:
    backend = _backend(tiny, _engine(tiny, sweep, min_points=1, max_points=4_321), monkeypatch)
    assert (backend.min_points, backend.max_points) == (1, 4_321)


def test_tensorrt_runs_on_its_own_stream_with_the_engines_output_dtype(tiny, sweep, monkeypatch) -> None:
    engine = _engine(tiny, sweep, labels_dtype=DataType.INT32)
    backend = _backend(tiny, engine, monkeypatch)
    labels = backend.predict(prepare_inputs(sweep, tiny))
    assert labels.dtype == np.int64 and labels.shape == (sweep.shape[0],)
    assert (labels == engine.label).all()  # read as int32, as the engine wrote them
    context = backend.context
    assert context.streams == [FakeStream.cuda_stream]  # never 0, the legacy default stream
    assert backend.stream.synchronized == 1


def test_tensorrt_feeds_the_form_its_engine_was_built_from(tiny, sweep, monkeypatch) -> None:
    """An engine built from the sparse graph reads tap inputs, not neighbour tables."""
    engine = _engine(tiny, sweep, graph="sparse")
    backend = _backend(tiny, engine, monkeypatch)
    assert backend.graph == "sparse"
    labels = backend.predict(prepare_inputs(sweep, tiny))  # a dense feed would miss the tap inputs
    assert (labels == engine.label).all()
    assert any(name.startswith("tap_source_") for name in backend.context.shapes)
    assert not any(name.startswith("neighbours_") for name in backend.context.shapes)


def test_tensorrt_refuses_an_unexpected_output_dtype(tiny, sweep, monkeypatch) -> None:
    backend = _backend(tiny, _engine(tiny, sweep, labels_dtype=DataType.INT32), monkeypatch)
    backend.engine.dtypes["labels"] = DataType.HALF
    with pytest.raises(RuntimeError, match=r"labels.*HALF"):
        backend.predict(prepare_inputs(sweep, tiny))


def test_tensorrt_refuses_shapes_outside_the_profile(tiny, sweep, monkeypatch) -> None:
    # the cloud fits by point count, but one table exceeds its profile: set_input_shape returns False
    engine = _engine(tiny, sweep, max_points=sweep.shape[0])
    backend = _backend(tiny, engine, monkeypatch)
    engine.get_tensor_profile_shape = lambda name, profile: (  # type: ignore[method-assign]
        [(1, 27), (1, 27), (2, 27)]
        if name.startswith("neighbours")
        else FakeEngine.get_tensor_profile_shape(engine, name, profile)
    )
    with pytest.raises(EngineProfileError, match=r"neighbours_s\d+.*outside the engine's profile"):
        backend.predict(prepare_inputs(sweep, tiny))
    assert backend.context.streams == []  # nothing ran with stale shapes


def test_tensorrt_clouds_above_the_engine_maximum_get_413(tiny, sweep, monkeypatch) -> None:
    backend = _backend(tiny, _engine(tiny, sweep, max_points=500), monkeypatch)
    segmenter = Segmenter(tiny, backend, max_points=2_000_000)
    with pytest.raises(ServiceError) as caught:
        segmenter.segment(sweep.numpy())
    assert caught.value.status == 413 and caught.value.code == "too_many_points"
    assert "500" in caught.value.message
    assert backend.context.streams == []
    # at the maximum it runs
    assert (segmenter.segment(sweep[:500].numpy()).labels == 3).all()


def test_tensorrt_runs_a_one_point_cloud(tiny, sweep, monkeypatch) -> None:
    backend = _backend(tiny, _engine(tiny, sweep, min_points=1), monkeypatch)
    result = Segmenter(tiny, backend, max_points=2_000_000).segment(sweep[:1].numpy())
    assert result.labels.tolist() == [3]


def test_an_engine_built_with_a_larger_minimum_refuses_small_clouds_clearly(tiny, sweep, monkeypatch) -> None:
    backend = _backend(tiny, _engine(tiny, sweep, min_points=1_000), monkeypatch)
    with pytest.raises(ServiceError) as caught:
        Segmenter(tiny, backend, max_points=2_000_000).segment(sweep[:10].numpy())
    assert caught.value.status == 422 and caught.value.code == "too_few_points"
    assert "--min-points 1" in caught.value.message


# -- ONNX Runtime ----------------------------------------------------------------------------------


def fake_onnxruntime(active: list[str]) -> tuple[types.ModuleType, dict[str, Any]]:
    ort = types.ModuleType("onnxruntime")
    seen: dict[str, Any] = {}

    class SessionOptions:
        intra_op_num_threads = 0

    class InferenceSession:
        def __init__(
            self, path: str, options: SessionOptions, providers: list[Any], disabled_optimizers: list[str]
        ) -> None:
            seen["providers"] = providers
            seen["disabled_optimizers"] = disabled_optimizers

        def get_providers(self) -> list[str]:
            return active

        def get_inputs(self) -> list[Any]:  # a dense graph's first inputs
            return [types.SimpleNamespace(name=n) for n in ("features", "neighbours_s1")]

    ort.SessionOptions = SessionOptions  # type: ignore[attr-defined]
    ort.InferenceSession = InferenceSession  # type: ignore[attr-defined]
    ort.get_available_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]  # type: ignore[attr-defined]
    return ort, seen


def test_onnxruntime_reports_a_silent_cpu_fallback(tmp_path: Path, tiny, monkeypatch, caplog) -> None:
    ort, _ = fake_onnxruntime(["CPUExecutionProvider"])  # CUDA asked for, the session runs on CPU
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (tmp_path / "model.onnx").write_bytes(b"graph")
    with caplog.at_level(logging.WARNING, logger="serve.backends"):
        backend = OnnxRuntimeBackend.load(tmp_path, tiny, None)
    assert backend.device == "cpu"
    assert any(
        "fell back" in r.getMessage() and "CPUExecutionProvider" in r.getMessage() for r in caplog.records
    )


def test_onnxruntime_on_cuda_without_tf32(tmp_path: Path, tiny, monkeypatch) -> None:
    ort, seen = fake_onnxruntime(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (tmp_path / "model.onnx").write_bytes(b"graph")
    backend = OnnxRuntimeBackend.load(tmp_path, tiny, None)
    assert backend.device == "cuda"
    assert seen["providers"][0] == ("CUDAExecutionProvider", {"use_tf32": "0"})
    assert seen["disabled_optimizers"] == []  # a float graph keeps every ONNX Runtime fusion
