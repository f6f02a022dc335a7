"""A runtime against the `spconv` PyTorch reference on real scans: the figures of the manifest.

The runtime is an ONNX Runtime session (the graph, on CPU), or the built TensorRT engine through
`EngineSession`, which gives it the same ``run(output_names, feeds)`` call.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_inputs
from seg3d.manifest import GraphForm, ParityScan
from seg3d.model import Encoder3D
from seg3d.ort_options import disabled_optimizers, session_options
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import RealScan

__all__ = ["EngineSession", "engine_session", "ort_runtime", "ort_session", "run_parity"]


def _emulates_int8(precision: str) -> bool:
    """Whether `ort_session` computes the int8 layers exactly (all int8 graphs: export measures the
    graph itself, whatever this CPU's integer kernels do)."""
    return precision == "int8"


def ort_runtime(precision: str) -> str:
    """How `ort_session` runs a graph of ``precision``, in words (the manifest's parity runtime)."""
    emulated = ", int8 layers emulated exactly (Q/DQ unfused)" if _emulates_int8(precision) else ""
    return f"onnxruntime CPUExecutionProvider{emulated}"


def ort_session(
    onnx_bytes: bytes, threads: int | None = None, precision: str = "fp32"
) -> Any:  # onnxruntime.InferenceSession
    """A CPU session of a graph of ``precision`` with the options of `seg3d.ort_options`; an int8
    graph's layers are computed exactly (emulated), so that calibration, layer choice and parity
    measure the graph itself."""
    import onnxruntime as ort

    return ort.InferenceSession(
        onnx_bytes,
        session_options(threads, emulate_int8=_emulates_int8(precision)),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled_optimizers(precision),
    )


class EngineSession:
    """A TensorRT engine behind ONNX Runtime's ``run(output_names, feeds)`` (numpy in and out)."""

    def __init__(self, backend: Any) -> None:  # serve.backends.TensorRTBackend
        self.backend = backend
        self.description = "TensorRT engine on CUDA"

    def run(self, names: list[str], feeds: dict[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        outputs = self.backend.run({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
        return [outputs[name].cpu().numpy() for name in names]


def engine_session(model_dir: Path, config: ModelConfig) -> EngineSession:
    """The engine ``model_dir/model.engine`` on this GPU, for `run_parity`."""
    import tensorrt as trt

    from serve.backends import TensorRTBackend

    session = EngineSession(TensorRTBackend.load(model_dir, config))
    session.description = f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(0)}"
    return session


def run_parity(
    session: Any,  # onnxruntime.InferenceSession
    reference: Encoder3D,
    config: ModelConfig,
    scans: Iterable[RealScan],
    progress: bool = True,
    graph: GraphForm = "dense",
    reference_logits: dict[str, npt.NDArray[np.float32]] | None = None,
) -> list[ParityScan]:
    """Run the graph (of form ``graph``) and the reference on each scan (cropped to the grid) and
    compare. ``reference_logits``, when given, keeps the reference's logits by scan name, so that
    the gates of one export (its primary graph, its ``--also`` variants, its engine) run the slow
    spconv reference once per scan."""
    results = []
    for scan in tqdm(list(scans), desc="parity vs spconv", unit="scan", disable=not progress):
        points = scan.points[crop_mask(scan.points[:, :3], config.grid)]
        inputs = prepare_inputs(points, config)
        feeds = {name: t.cpu().numpy() for name, t in graph_inputs(inputs, config, graph).items()}
        logits, labels = session.run(["logits", "labels"], feeds)
        expected = None if reference_logits is None else reference_logits.get(scan.name)
        if expected is None:
            with torch.no_grad():
                expected = reference(inputs).numpy()
            if reference_logits is not None:
                reference_logits[scan.name] = expected
        masked = expected.copy()
        masked[:, config.ignore_index] = -np.inf
        results.append(
            ParityScan(
                scan=scan.name,
                points=int(points.shape[0]),
                argmax_agreement=float((logits.argmax(1) == expected.argmax(1)).mean()),
                label_agreement=float((labels == masked.argmax(1)).mean()),
                max_abs_diff=float(np.abs(logits - expected).max()),
                max_abs_logit=float(np.abs(expected).max()),
            )
        )
    return results
