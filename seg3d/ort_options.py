"""How to open an exported graph in ONNX Runtime: the one place every session (export's parity
and calibration, the service, the benchmarks) takes its options from.

An int8 graph needs one of ONNX Runtime's rewrites off: ``MatMulAddFusion`` runs before the
quantization fusions and turns a quantized layer's ``MatMul`` + bias ``Add`` into a float ``Gemm``
over dequantized inputs, so the layer would never reach the integer ``MatMulIntegerToFloat``
kernel (measured at nuscenes_full: the linear layers stayed float32 and the int8 graph ran slower
than the float one). Float graphs keep it (``Gemm`` with a fused activation is their fast path).
"""

from __future__ import annotations

from typing import Any

__all__ = ["INT8_DISABLED_OPTIMIZERS", "disabled_optimizers", "session_options"]

INT8_DISABLED_OPTIMIZERS = ("MatMulAddFusion",)


def disabled_optimizers(precision: str) -> list[str]:
    """The ONNX Runtime optimizers to disable for a graph of ``precision`` (the manifest's)."""
    return list(INT8_DISABLED_OPTIMIZERS) if precision == "int8" else []


def session_options(threads: int | None = None) -> Any:  # onnxruntime.SessionOptions
    """Session options with ``threads`` intra-op threads (ONNX Runtime's default when None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return options
