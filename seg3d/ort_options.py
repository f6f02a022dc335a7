"""How to open an exported graph in ONNX Runtime: the one place every session (export's parity
and calibration, the service, the benchmarks) takes its options from.

An int8 graph needs one of ONNX Runtime's rewrites off: ``MatMulAddFusion`` runs before the
quantization fusions and turns a quantized layer's ``MatMul`` + bias ``Add`` into a float ``Gemm``
over dequantized inputs, so the layer would never reach the integer ``MatMulIntegerToFloat``
kernel (measured at nuscenes_full: the linear layers stayed float32 and the int8 graph ran slower
than the float one). Float graphs keep it (``Gemm`` with a fused activation is their fast path).

Those integer kernels are exact only where the CPU accumulates int8 products in 32 bits: x86 CPUs
with VNNI (AVX512-VNNI, AVX-VNNI, AMX). Without it (AVX2: Zen 3 and older, Intel before Cascade
Lake) ONNX Runtime's u8×s8 kernel adds pairs of products in saturating 16-bit lanes
(``vpmaddubsw``), so large activations against large weights clip (onnxruntime issues #6004,
#16105). Measured on a Zen 3 EPYC with the bundled model calibrated on the real SemanticKITTI scans:
label agreement with the float graph fell from 98.2 % (exact int8 arithmetic) to 91.8 %. A session
that must be exact (`session_options` with ``emulate_int8``) leaves the graph's Q/DQ pairs unfused,
so each layer runs QuantizeLinear → DequantizeLinear → float MatMul: the int8 rounding and clipping
of the graph, exactly, on any CPU, at float speed. Export measures every int8 graph that way (its
layer choice and parity gate are then the graph's, not the export host's); the service does so on a
CPU without VNNI (`int8_kernels_exact`).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

__all__ = [
    "INT8_DISABLED_OPTIMIZERS",
    "VNNI_FLAGS",
    "disabled_optimizers",
    "int8_kernels_exact",
    "session_options",
]

INT8_DISABLED_OPTIMIZERS = ("MatMulAddFusion",)
#: Linux ``/proc/cpuinfo`` flags of x86 instructions that add int8 products in 32 bits.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def disabled_optimizers(precision: str) -> list[str]:
    """The ONNX Runtime optimizers to disable for a graph of ``precision`` (the manifest's)."""
    return list(INT8_DISABLED_OPTIMIZERS) if precision == "int8" else []


def int8_kernels_exact(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether ONNX Runtime's integer kernels compute an int8 layer exactly on this CPU (or on the
    one described by ``cpuinfo``, the text of ``/proc/cpuinfo``, and ``machine``, as
    `platform.machine` names it): True off x86 and on x86 with VNNI; False on x86 without it, and
    on an x86 CPU whose flags cannot be read (the safe answer: exact arithmetic, float speed)."""
    if (machine or platform.machine()).lower() not in _X86:
        return True  # the saturating 16-bit pair sums are an x86 (pmaddubsw) kernel's
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return any(flag in value.split() for flag in VNNI_FLAGS)
    return False


def session_options(threads: int | None = None, emulate_int8: bool = False) -> Any:
    """Session options with ``threads`` intra-op threads (ONNX Runtime's default when None); with
    ``emulate_int8``, Q/DQ pairs stay unfused so int8 layers are computed exactly (module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if emulate_int8:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options
