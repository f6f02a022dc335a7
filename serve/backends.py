"""Inference backends behind one interface: prepared cloud in, one label per point out.

- ``tensorrt``: the exported engine on a CUDA device (only where TensorRT and a GPU exist);
- ``onnxruntime``: the exported graph, CUDA provider when present, else CPU;
- ``torch``: the `table` encoder in PyTorch, BatchNorm folded;
- ``spconv``: the eager `spconv` reference (slow on CPU: one thread for its convolutions).

``auto`` takes the first that can run here, in that order, and says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
import torch

from seg3d.checkpoint import load_encoder
from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_inputs
from seg3d.model import Encoder3D, labels_from_logits, spconv_available
from seg3d.preprocess import EncoderInputs

__all__ = [
    "DESCRIPTIONS",
    "ORDER",
    "Backend",
    "BackendLoadError",
    "BackendName",
    "BackendUnavailable",
    "choose_backend",
    "load_backend",
]

log = logging.getLogger("serve.backends")

#: Every backend, in the order ``auto`` tries them; the one source of backend names (settings,
#: ``--backend`` choices and `ORDER` derive from it).
BackendName = Literal["tensorrt", "onnxruntime", "torch", "spconv"]
ORDER: tuple[BackendName, ...] = get_args(BackendName)
#: What each backend runs, in one phrase (``python -m serve --help``).
DESCRIPTIONS: dict[BackendName, str] = {
    "tensorrt": "the exported TensorRT engine on a CUDA GPU (needs TensorRT and a GPU)",
    "onnxruntime": "the exported ONNX graph with ONNX Runtime (CUDA when present, else CPU)",
    "torch": "the encoder in PyTorch with BatchNorm folded",
    "spconv": "the eager spconv reference (slow on CPU)",
}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run with this install, model folder or device."""


class BackendLoadError(RuntimeError):
    """A model file that the backend's runtime refuses (a graph that does not parse, a checkpoint
    that does not load); the message names the file and the cause. ``auto`` does not skip it."""


def _load_error(path: Path, what: str, exc: Exception) -> BackendLoadError:
    cause = " ".join(str(exc).split()) or "no detail"
    if str(path) in cause:
        return BackendLoadError(f"{what}: {cause}")
    return BackendLoadError(f"{path}: {what} ({type(exc).__name__}: {cause})")


class Backend(Protocol):
    name: str
    device: str

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        """``(N,)`` int64 labels, never the ignore class."""
        ...


@dataclass
class OnnxRuntimeBackend:
    session: Any
    config: ModelConfig
    device: str
    name: str = "onnxruntime"

    @classmethod
    def load(cls, model_dir: Path, config: ModelConfig, threads: int | None) -> OnnxRuntimeBackend:
        import onnxruntime as ort

        path = model_dir / "model.onnx"
        if not path.is_file():
            raise BackendUnavailable(f"{path} not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        cuda = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise _load_error(path, "ONNX Runtime cannot load the graph", exc) from exc
        return cls(session, config, "cuda" if cuda else "cpu")

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        feeds = {k: v.cpu().numpy() for k, v in graph_inputs(inputs, self.config).items()}
        (labels,) = self.session.run(["labels"], feeds)
        return np.asarray(labels, dtype=np.int64)


@dataclass
class TorchBackend:
    model: Encoder3D
    config: ModelConfig
    device: str
    name: str

    @classmethod
    def load(cls, model_dir: Path, config: ModelConfig, kind: Literal["torch", "spconv"]) -> TorchBackend:
        path = model_dir / "encoder3d.pt"
        if not path.is_file():
            raise BackendUnavailable(f"{path} not found (re-export the model with export/to_trt.py)")
        if kind == "spconv" and not spconv_available():
            raise BackendUnavailable("spconv is not installed")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            # torch: the `table` encoder, BatchNorm folded (CPU fast path set); spconv: the reference
            model = load_encoder(
                path, "spconv" if kind == "spconv" else "table", device=device, fold=kind == "torch"
            )
        except Exception as exc:  # CheckpointError, or what torch raises for a file it cannot read
            raise _load_error(path, "the encoder checkpoint does not load", exc) from exc
        return cls(model, config, device, kind)

    @torch.inference_mode()
    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        labels = labels_from_logits(self.model(inputs.to(self.device)), self.config.ignore_index)
        return np.asarray(labels.cpu().numpy(), dtype=np.int64)


@dataclass
class TensorRTBackend:
    """Runs ``model.engine`` with torch tensors as I/O (TensorRT 10/11 tensor-name API)."""

    engine: Any
    context: Any
    config: ModelConfig
    device: str = "cuda"
    name: str = "tensorrt"

    @classmethod
    def load(cls, model_dir: Path, config: ModelConfig) -> TensorRTBackend:
        path = model_dir / "model.engine"
        if not path.is_file():
            raise BackendUnavailable(f"{path} not found (build it with: python export/to_trt.py --onnx ...)")
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable("tensorrt is not installed") from exc
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        try:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        except Exception as exc:  # an engine of another TensorRT or GPU is skipped by `auto`
            raise BackendUnavailable(f"{path} does not load with TensorRT: {exc}") from exc
        if engine is None:
            raise BackendUnavailable(f"{path} does not load with TensorRT {trt.__version__} on this GPU")
        return cls(engine, engine.create_execution_context(), config)

    @torch.inference_mode()
    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:  # pragma: no cover - needs a GPU
        import tensorrt as trt

        named = {k: v.to("cuda").contiguous() for k, v in graph_inputs(inputs, self.config).items()}
        for name, tensor in named.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = torch.int64 if name == "labels" else torch.float32
                outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
                self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return np.asarray(outputs["labels"].cpu().numpy(), dtype=np.int64)


def load_backend(name: str, model_dir: Path, config: ModelConfig, threads: int | None = None) -> Backend:
    """Load backend ``name``.

    Raises:
        BackendUnavailable: it cannot run with this install or device, or its file is absent.
        BackendLoadError: its file is there but its runtime refuses it (naming the file and why).
    """
    if name == "tensorrt":
        return TensorRTBackend.load(model_dir, config)
    if name == "onnxruntime":
        return OnnxRuntimeBackend.load(model_dir, config, threads)
    if name == "torch":
        return TorchBackend.load(model_dir, config, "torch")
    if name == "spconv":
        return TorchBackend.load(model_dir, config, "spconv")
    raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(ORDER)}")


def choose_backend(
    requested: str,
    model_dir: Path,
    config: ModelConfig,
    threads: int | None = None,
    probe: EncoderInputs | None = None,
) -> Backend:
    """The requested backend; for ``auto`` the fastest that runs here.

    ``auto`` loads every backend of `ORDER` that can run with this install, model folder and
    device, times each on ``probe`` (a prepared warm-up cloud; two runs, the second counts) and
    keeps the fastest. It logs the timings and why the others were skipped. Without a probe it
    takes the first that loads.
    """
    if requested != "auto":
        return load_backend(requested, model_dir, config, threads)
    reasons: list[str] = []
    loaded: list[Backend] = []
    for name in ORDER:
        try:
            loaded.append(load_backend(name, model_dir, config, threads))
        except BackendUnavailable as exc:
            reasons.append(f"{name}: {exc}")
        if loaded and probe is None:
            break
    if not loaded:
        raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))
    timings: dict[str, float] = {}
    if probe is not None and len(loaded) > 1:
        for backend in loaded:
            backend.predict(probe)
            start = time.perf_counter()
            backend.predict(probe)
            timings[backend.name] = (time.perf_counter() - start) * 1e3
    best = min(loaded, key=lambda b: timings.get(b.name, 0.0))
    measured = ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items()) or "not measured"
    log.info(
        "backend auto -> %s on %s (warm-up timings: %s; unavailable: %s)",
        best.name,
        best.device,
        measured,
        "; ".join(reasons) or "none",
    )
    return best
