"""Inference backends behind one interface: prepared cloud in, one label per point out.

- ``tensorrt``: the exported engine on a CUDA device (only where TensorRT and a GPU exist);
- ``onnxruntime``: the exported graph, CUDA provider when present, else CPU;
- ``torch``: the `table` encoder in PyTorch, BatchNorm folded;
- ``spconv``: the eager `spconv` reference (slow on CPU: one thread for its convolutions).

``auto`` takes the first that can run here, in that order, and says why.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
import torch

from seg3d.checkpoint import load_encoder
from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_form_of, graph_inputs
from seg3d.manifest import MANIFEST_NAME, GraphForm, ManifestError, ServableGraph, load_manifest
from seg3d.model import Encoder3D, TorchPrecision, labels_from_logits, spconv_available
from seg3d.model.precision import CUDA_ONLY, HALF_DTYPES, native_bf16_cpu
from seg3d.ort_options import VNNI_FLAGS, disabled_optimizers, int8_kernels_exact, session_options
from seg3d.preprocess import EncoderInputs

__all__ = [
    "DESCRIPTIONS",
    "ORDER",
    "Backend",
    "BackendLoadError",
    "BackendName",
    "BackendUnavailable",
    "EngineProfileError",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
    "choose_backend",
    "graph_form_served",
    "label",
    "load_backend",
    "onnx_graph_names",
    "precision_of",
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


class EngineProfileError(ValueError):
    """A cloud outside the TensorRT engine's optimization profile: ``too_many`` when above its
    maximum (the service answers 413 ``too_many_points``), else below its minimum (422)."""

    def __init__(self, message: str, too_many: bool) -> None:
        super().__init__(message)
        self.too_many = too_many


def _load_error(path: Path, what: str, exc: Exception) -> BackendLoadError:
    cause = " ".join(str(exc).split()) or "no detail"
    if str(path) in cause:
        return BackendLoadError(f"{what}: {cause}")
    return BackendLoadError(f"{path}: {what} ({type(exc).__name__}: {cause})")


class Backend(Protocol):
    name: str
    device: str

    def check_points(self, points: int) -> None:
        """Raise `EngineProfileError` for a cloud of ``points`` (inside the crop) this backend cannot
        run: only a TensorRT engine has a fixed range (its optimization profile)."""
        ...

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        """``(N,)`` int64 labels, never the ignore class."""
        ...

    def predict_logits(self, inputs: EncoderInputs) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The labels of `predict` and the ``(N, classes)`` float32 logits they were taken from,
        from one run."""
        ...


def _recorded_graph(model_dir: Path, name: str | None) -> ServableGraph | None:
    """The graph ``name`` of the export folder's manifest (None: its primary graph); None when the
    folder has no manifest (a bare ``model.onnx``: the dense fp32 graph is assumed).

    Raises:
        BackendUnavailable: the manifest has no graph of that name (naming those it has), or a
            name was asked of a folder without a manifest.
    """
    if not (model_dir / MANIFEST_NAME).is_file():
        if name is not None:
            raise BackendUnavailable(f"{model_dir} has no {MANIFEST_NAME} to find graph {name!r} in")
        return None
    manifest = load_manifest(model_dir, verify=False)  # the service verified it on load
    try:
        return manifest.servable_graph(name)
    except ManifestError as exc:
        raise BackendUnavailable(str(exc)) from exc


def onnx_graph_names(model_dir: Path) -> list[str]:
    """The names of the graphs an export folder holds, its primary first ([] without a manifest)."""
    if not (model_dir / MANIFEST_NAME).is_file():
        return []
    return [g.name for g in load_manifest(model_dir, verify=False).graphs()]


@dataclass
class OnnxRuntimeBackend:
    """One exported graph in ONNX Runtime (``graph_name``: the primary or an ``--also`` variant), fed
    in the form its manifest records (``graph``)."""

    session: Any
    config: ModelConfig
    device: str
    name: str = "onnxruntime"
    graph: GraphForm = "dense"
    graph_name: str = "dense-fp32"
    precision: str = "fp32"
    int8_layers: int = 0
    #: How an int8 graph's layers run: ONNX Runtime's ``integer`` kernels, or ``emulated`` in float
    #: (exact, no int8 speed-up) on a CPU whose integer kernels saturate; None for a float graph or a
    #: session on CUDA (the CPU's kernels do not run it).
    int8_arithmetic: Literal["integer", "emulated"] | None = None

    @classmethod
    def load(
        cls, model_dir: Path, config: ModelConfig, threads: int | None, graph: str | None = None
    ) -> OnnxRuntimeBackend:
        """The graph called ``graph`` in the folder's manifest (None: the primary)."""
        import onnxruntime as ort

        servable = _recorded_graph(model_dir, graph)
        path = model_dir / (servable.graph.file if servable is not None else "model.onnx")
        if not path.is_file():
            raise BackendUnavailable(f"{path} not found")
        recorded = servable.graph.form if servable is not None else None
        precision = servable.precision if servable is not None else "fp32"
        # Without VNNI, ONNX Runtime's int8 kernels saturate (seg3d.ort_options): run the graph's
        # quantization exactly in float rather than serve labels its export never measured.
        emulate = precision == "int8" and not int8_kernels_exact()
        options = session_options(threads, emulate_int8=emulate)
        cuda = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
        # TF32 off: fp32 parity is measured in true fp32 (ONNX Runtime on CPU); TF32 matmuls are not.
        cuda_provider = ("CUDAExecutionProvider", {"use_tf32": "0"})
        providers: list[Any] = [cuda_provider, "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(
                str(path), options, providers=providers, disabled_optimizers=disabled_optimizers(precision)
            )
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise _load_error(path, "ONNX Runtime cannot load the graph", exc) from exc
        # The CUDA provider can fail to load (a missing cuDNN or CUDA library, another CUDA major)
        # and ONNX Runtime then runs on CPU without an error: report the providers the session has.
        active = list(session.get_providers())
        on_cuda = bool(active) and active[0] == "CUDAExecutionProvider"
        if cuda and not on_cuda:
            log.warning(
                "onnxruntime: CUDAExecutionProvider was requested but the session fell back to %s "
                "(check the CUDA 12 and cuDNN 9 libraries onnxruntime-gpu needs); serving on CPU",
                ", ".join(active) or "no provider",
            )
        int8_on_cpu = precision == "int8" and not on_cuda
        if int8_on_cpu and emulate:
            log.warning(
                "onnxruntime: this CPU has no VNNI (%s), where ONNX Runtime's int8 kernels saturate; "
                "the int8 graph runs with its quantization emulated in float32: the exported labels, "
                "no int8 speed-up (serve the fp32 graph on this CPU for speed)",
                "/".join(VNNI_FLAGS),
            )
        # Feed the form of the graph's own inputs; the manifest must record the same.
        form = graph_form_of([i.name for i in session.get_inputs()])
        if recorded is not None and recorded != form:
            raise BackendLoadError(
                f"{path}: the manifest records a {recorded} graph but the graph's inputs are those of "
                f"the {form} form (re-export the model)"
            )
        layers = servable.graph.layers if servable is not None else {}
        return cls(
            session,
            config,
            "cuda" if on_cuda else "cpu",
            graph=form,
            graph_name=servable.name if servable is not None else f"{form}-fp32",
            precision=precision,
            int8_layers=sum(p == "int8" for p in layers.values()),
            int8_arithmetic=("emulated" if emulate else "integer") if int8_on_cpu else None,
        )

    def check_points(self, points: int) -> None:
        """Any number of points runs (no fixed shape range)."""

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        feeds = {k: v.cpu().numpy() for k, v in graph_inputs(inputs, self.config, self.graph).items()}
        (labels,) = self.session.run(["labels"], feeds)
        return np.asarray(labels, dtype=np.int64)

    def predict_logits(self, inputs: EncoderInputs) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        feeds = {k: v.cpu().numpy() for k, v in graph_inputs(inputs, self.config, self.graph).items()}
        labels, logits = self.session.run(["labels", "logits"], feeds)
        return np.asarray(labels, dtype=np.int64), np.asarray(logits, dtype=np.float32)


@dataclass
class TorchBackend:
    """The encoder in PyTorch. ``precision`` (``torch`` only): ``fp32``, or ``bf16``/``fp16`` (CUDA
    only) with the weights stored in that dtype once at load (`seg3d.model.precision`); the
    ``spconv`` reference is fp32."""

    model: Encoder3D
    config: ModelConfig
    device: str
    name: str
    precision: TorchPrecision = "fp32"

    @classmethod
    def load(
        cls,
        model_dir: Path,
        config: ModelConfig,
        kind: Literal["torch", "spconv"],
        precision: TorchPrecision = "fp32",
    ) -> TorchBackend:
        path = model_dir / "encoder3d.pt"
        if not path.is_file():
            raise BackendUnavailable(f"{path} not found (re-export the model with export/to_trt.py)")
        if kind == "spconv" and not spconv_available():
            raise BackendUnavailable("spconv is not installed")
        precision = precision if kind == "torch" else "fp32"
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision in CUDA_ONLY and device != "cuda":
            raise BackendUnavailable(
                f"torch precision {precision} runs on a CUDA device only and none is visible; "
                "use fp32, or bf16 (the CPU's half precision)"
            )
        try:
            # torch: the `table` encoder, BatchNorm folded (CPU fast path set), weights in
            # ``precision``; spconv: the reference, float32
            model = load_encoder(
                path,
                "spconv" if kind == "spconv" else "table",
                device=device,
                fold=kind == "torch",
                precision=precision,
            )
        except Exception as exc:  # CheckpointError, or what torch raises for a file it cannot read
            raise _load_error(path, "the encoder checkpoint does not load", exc) from exc
        if precision != "fp32":
            log.info("torch: %s", _half_summary(model, precision, device))
        return cls(model, config, device, kind, precision)

    def check_points(self, points: int) -> None:
        """Any number of points runs (no fixed shape range)."""

    @torch.inference_mode()
    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        labels = labels_from_logits(self.model(inputs.to(self.device)), self.config.ignore_index)
        return np.asarray(labels.cpu().numpy(), dtype=np.int64)

    @torch.inference_mode()
    def predict_logits(self, inputs: EncoderInputs) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        logits = self.model(inputs.to(self.device))
        labels = labels_from_logits(logits, self.config.ignore_index)
        return (
            np.asarray(labels.cpu().numpy(), dtype=np.int64),
            np.asarray(logits.float().cpu().numpy(), dtype=np.float32),
        )


def graph_form_served(backend: Backend) -> GraphForm | None:
    """The form of the exported graph ``backend`` runs (ONNX Runtime, TensorRT); None for the
    PyTorch backends, which run the encoder itself."""
    return backend.graph if isinstance(backend, OnnxRuntimeBackend | TensorRTBackend) else None


def precision_of(backend: Backend, exported: str) -> str:
    """The arithmetic precision ``backend`` runs in: a `TorchBackend`'s own (``fp32``/``bf16``/
    ``fp16``), the graph's an `OnnxRuntimeBackend` runs, else the primary graph's (``exported``, the
    manifest's ``model.precision``: the TensorRT engine is built from it)."""
    if isinstance(backend, TorchBackend | OnnxRuntimeBackend):
        return backend.precision
    return exported


def label(backend: Backend) -> str:
    """A backend as logs and timings name it: ``onnxruntime[sparse-int8]``, ``torch[bf16]``."""
    if isinstance(backend, OnnxRuntimeBackend):
        return f"{backend.name}[{backend.graph_name}]"
    if isinstance(backend, TorchBackend) and backend.name == "torch":
        return f"torch[{backend.precision}]"
    return backend.name


def _half_summary(model: Encoder3D, precision: TorchPrecision, device: str) -> str:
    """One log line: how many weights are in the half dtype, and whether this CPU has native bf16
    MatMuls."""
    params = list(model.parameters())
    half = sum(p.numel() for p in params if p.dtype == HALF_DTYPES[precision])
    total = sum(p.numel() for p in params)
    line = (
        f"weights in {precision} ({half:,} of {total:,} parameters; embedding input, pool sums, "
        "logits float32)"
    )
    if device == "cpu" and not native_bf16_cpu():
        line += "; this CPU has no native bf16 MatMul (oneDNN), expect it to be slower than fp32"
    return line


#: TensorRT output dtype (by ``DataType`` name) -> torch dtype; and what each output may be.
_TRT_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}
_OUTPUT_DTYPES = {"labels": (torch.int32, torch.int64), "logits": (torch.float32,)}


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


@dataclass
class TensorRTBackend:
    """Runs ``model.engine`` with torch tensors as I/O (TensorRT 10/11 tensor-name API).

    Every call of the runtime is checked: an input shape outside the optimization profile
    (`EngineProfileError`), a refused address, a failed launch. It runs on its own CUDA stream
    (not the legacy default stream), and allocates each output in the dtype the engine declares.
    ``min_points``/``max_points``: the points the engine's profile takes (``features`` dim 0);
    the segmenter refuses larger clouds with 413 before preprocessing them.
    """

    engine: Any
    context: Any
    config: ModelConfig
    stream: Any  # torch.cuda.Stream (a stand-in with ``cuda_stream`` and ``synchronize`` in tests)
    device: str = "cuda"
    name: str = "tensorrt"
    min_points: int = 1
    max_points: int | None = None
    graph: GraphForm = "dense"  # the form the engine was built from, read from its input names

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
        try:
            backend = cls.from_engine(engine, config)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"{path}: {exc}") from exc
        if backend.min_points > 1:
            log.warning(
                "%s: the engine's profile starts at %d points; smaller clouds are refused "
                "(rebuild it with export/to_trt.py --onnx ... --min-points 1)",
                path,
                backend.min_points,
            )
        return backend

    @classmethod
    def from_engine(
        cls, engine: Any, config: ModelConfig, stream: Any = None, device: str = "cuda"
    ) -> TensorRTBackend:
        """Wrap a deserialized engine: one execution context, its own stream, its point range."""
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailable(
                "TensorRT could not create an execution context (too little free GPU memory for "
                "the engine's activations at its profile maximum?)"
            )
        low, _, high = engine.get_tensor_profile_shape("features", 0)
        graph = graph_form_of([engine.get_tensor_name(i) for i in range(engine.num_io_tensors)])
        if stream is None:
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        return cls(
            engine,
            context,
            config,
            stream,
            device,
            min_points=int(low[0]),
            max_points=int(high[0]),
            graph=graph,
        )

    def check_points(self, points: int) -> None:
        """`EngineProfileError` unless ``points`` (in the crop) is inside the engine's profile."""
        if self.max_points is not None and points > self.max_points:
            raise EngineProfileError(
                f"{points} points inside the crop exceed the TensorRT engine's maximum of "
                f"{self.max_points} (its optimization profile; rebuild it with export/to_trt.py "
                "--max-points for larger clouds)",
                too_many=True,
            )
        if points < self.min_points:
            raise EngineProfileError(
                f"{points} points inside the crop are below the TensorRT engine's minimum of "
                f"{self.min_points} (rebuild it with export/to_trt.py --onnx ... --min-points 1)",
                too_many=False,
            )

    def _stream(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(self.stream) if self.device == "cuda" else contextlib.nullcontext()

    @torch.inference_mode()
    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every output of the engine for the named inputs (on ``self.device``, synchronised)."""
        import tensorrt as trt

        self.check_points(int(feeds["features"].shape[0]))
        with self._stream():
            named = {k: v.to(self.device).contiguous() for k, v in feeds.items()}
            outputs: dict[str, torch.Tensor] = {}
            for name, tensor in self._io(named, outputs, trt):
                if not self.context.set_tensor_address(name, tensor.data_ptr()):
                    raise RuntimeError(f"TensorRT refused the address of {name}")
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (execute_async_v3 returned False)")
            self.stream.synchronize()
        return outputs

    def _io(
        self, named: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], trt: Any
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """Set every input shape (checked), then allocate every output in the engine's dtype."""
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        missing = set(inputs) - set(named)
        if missing:
            raise RuntimeError(f"the engine's inputs {sorted(missing)} are not fed")
        for name in inputs:
            shape = tuple(named[name].shape)
            if not self.context.set_input_shape(name, shape):
                low, _, high = (tuple(d) for d in self.engine.get_tensor_profile_shape(name, 0))
                raise EngineProfileError(
                    f"input {name} of shape {shape} is outside the engine's profile {low}..{high}",
                    too_many=any(s > h for s, h in zip(shape, high, strict=False)),
                )
        for name in inputs:
            yield name, named[name]
        for name in names:
            if name in inputs:
                continue
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"TensorRT could not infer the shape of output {name}: {shape}")
            kind = _dtype_name(self.engine.get_tensor_dtype(name))
            dtype = _TRT_DTYPES.get(kind)
            allowed = _OUTPUT_DTYPES.get(name)
            if dtype is None or (allowed is not None and dtype not in allowed):
                raise RuntimeError(f"engine output {name} is {kind}; expected one of {allowed}")
            outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            yield name, outputs[name]

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        labels = self.run(graph_inputs(inputs, self.config, self.graph))["labels"]
        return np.asarray(labels.cpu().numpy(), dtype=np.int64)

    def predict_logits(self, inputs: EncoderInputs) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        outputs = self.run(graph_inputs(inputs, self.config, self.graph))
        return (
            np.asarray(outputs["labels"].cpu().numpy(), dtype=np.int64),
            np.asarray(outputs["logits"].float().cpu().numpy(), dtype=np.float32),
        )


def load_backend(
    name: str,
    model_dir: Path,
    config: ModelConfig,
    threads: int | None = None,
    torch_precision: TorchPrecision = "fp32",
    onnx_graph: str | None = None,
) -> Backend:
    """Load backend ``name`` (``torch_precision``: the ``torch`` backend's, see `TorchBackend`;
    ``onnx_graph``: the graph ``onnxruntime`` runs, default the export's primary).

    Raises:
        BackendUnavailable: it cannot run with this install or device, or its file is absent.
        BackendLoadError: its file is there but its runtime refuses it (naming the file and why).
    """
    if name == "tensorrt":
        return TensorRTBackend.load(model_dir, config)
    if name == "onnxruntime":
        return OnnxRuntimeBackend.load(model_dir, config, threads, onnx_graph)
    if name == "torch":
        return TorchBackend.load(model_dir, config, "torch", torch_precision)
    if name == "spconv":
        return TorchBackend.load(model_dir, config, "spconv")
    raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(ORDER)}")


def choose_backend(
    requested: str,
    model_dir: Path,
    config: ModelConfig,
    threads: int | None = None,
    probe: EncoderInputs | None = None,
    torch_precision: TorchPrecision = "fp32",
    onnx_graph: str | None = None,
) -> Backend:
    """The requested backend; for ``auto`` the fastest that runs here (the ``torch`` candidate in
    ``torch_precision``; the ``onnxruntime`` candidates every graph of the export, each of which
    passed its parity gate at export, unless ``onnx_graph`` names one).

    ``auto`` loads every backend of `ORDER` that can run with this install, model folder and
    device, times each on ``probe`` (a prepared warm-up cloud; two runs, the second counts) and
    keeps the fastest. It logs the timings and why the others were skipped. Without a probe it
    takes the first that loads.
    """
    if onnx_graph is not None:
        _recorded_graph(model_dir, onnx_graph)  # a graph name the export lacks is an error, not a skip
    if requested != "auto":
        return load_backend(requested, model_dir, config, threads, torch_precision, onnx_graph)
    reasons: list[str] = []
    loaded: list[Backend] = []
    for name in ORDER:
        graphs: list[str | None] = [onnx_graph]
        if name == "onnxruntime" and onnx_graph is None and probe is not None:
            graphs = [*onnx_graph_names(model_dir)] or [None]
        for graph in graphs:
            try:
                loaded.append(load_backend(name, model_dir, config, threads, torch_precision, graph))
            except BackendUnavailable as exc:
                reasons.append(
                    f"{name}[{graph}]: {exc}" if name == "onnxruntime" and graph else f"{name}: {exc}"
                )
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
            timings[label(backend)] = (time.perf_counter() - start) * 1e3
    best = min(loaded, key=lambda b: timings.get(label(b), 0.0))
    measured = ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items()) or "not measured"
    log.info(
        "backend auto -> %s on %s (warm-up timings: %s; unavailable: %s)",
        label(best),
        best.device,
        measured,
        "; ".join(reasons) or "none",
    )
    return best
