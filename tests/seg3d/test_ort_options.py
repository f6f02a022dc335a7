"""seg3d.ort_options: which CPUs run ONNX Runtime's int8 kernels exactly, and the session that
computes an int8 layer exactly on any CPU."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from seg3d.ort_options import disabled_optimizers, int8_kernels_exact, session_options

ZEN3_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq"
ZEN4_FLAGS = f"{ZEN3_FLAGS} avx512f avx512bw avx512_bf16 avx512_vnni avx512_bitalg"


def _cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\nbogomips\t: 4890.81\n"


def test_vnni_decides_on_x86_only() -> None:
    assert int8_kernels_exact(_cpuinfo(ZEN4_FLAGS), "x86_64")
    assert int8_kernels_exact(_cpuinfo(f"{ZEN3_FLAGS} avx_vnni"), "x86_64")  # Alder Lake's AVX-VNNI
    assert not int8_kernels_exact(_cpuinfo(ZEN3_FLAGS), "x86_64")
    assert not int8_kernels_exact(_cpuinfo(f"{ZEN3_FLAGS} avx512_vnnix"), "AMD64")  # whole flags only
    assert not int8_kernels_exact("processor\t: 0\n", "x86_64")  # no flags: assume the saturating kernel
    assert int8_kernels_exact(_cpuinfo(ZEN3_FLAGS), "aarch64")  # not an x86 kernel


def _int8_layer(scale_in: float, weight: np.ndarray, scale_w: np.ndarray) -> onnx.ModelProto:
    """One layer as export/onnx_graph.py writes it: x → QuantizeLinear → DequantizeLinear (per
    tensor, zero point 0) → MatMul with an int8 weight dequantized per output column."""
    k, n = weight.shape
    initializers = [
        numpy_helper.from_array(np.array(scale_in, np.float32), "sa"),
        numpy_helper.from_array(np.array(0, np.int8), "za"),
        numpy_helper.from_array(weight, "wq"),
        numpy_helper.from_array(scale_w, "sw"),
        numpy_helper.from_array(np.zeros(n, np.int8), "zw"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sa", "za"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=1),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "int8-layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_emulated_int8_is_exact_where_the_integer_kernels_saturate() -> None:
    """Activations and weights at ±127: every pair of products is ±32,258, so two of one sign
    overflow a 16-bit lane. The emulated session gives the exact int8 result on any CPU; the integer
    kernels give it only with VNNI (on this machine's CPU without it, they clip)."""
    rng = np.random.default_rng(0)
    scale_in, weight = 0.01, rng.choice([-127, 127], size=(64, 16)).astype(np.int8)
    scale_w = np.full(16, 0.02, np.float32)
    x = rng.choice([-1.27, 1.27], size=(64, 64)).astype(np.float32)
    exact = (np.clip(np.rint(x / scale_in), -127, 127) * scale_in) @ (weight.astype(np.float64) * scale_w)
    model = _int8_layer(scale_in, weight, scale_w).SerializeToString()

    def run(emulate: bool) -> np.ndarray:
        options = session_options(emulate_int8=emulate)
        session = ort.InferenceSession(
            model,
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled_optimizers("int8"),
        )
        return np.asarray(session.run(["y"], {"x": x})[0])

    scale = float(np.abs(exact).max())
    assert float(np.abs(run(emulate=True) - exact).max()) < 1e-6 * scale
    integer_error = float(np.abs(run(emulate=False) - exact).max())
    if int8_kernels_exact():
        assert integer_error < 1e-6 * scale
    else:
        assert integer_error > 0.1 * scale  # the saturation the emulation exists for


def test_emulation_leaves_the_quantization_unfused(tmp_path) -> None:
    """The switch acts on the graph: no integer MatMul; the activation's Q/DQ pair kept (the
    constant weight's DequantizeLinear folds into a float weight: the same values)."""
    weight = np.ones((8, 4), np.int8)
    model = _int8_layer(0.1, weight, np.full(4, 0.1, np.float32)).SerializeToString()

    def optimized_ops(emulate: bool) -> list[str]:
        options = session_options(emulate_int8=emulate)
        options.optimized_model_filepath = str(tmp_path / f"emulate-{emulate}.onnx")
        ort.InferenceSession(model, options, disabled_optimizers=disabled_optimizers("int8"))
        return sorted(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)

    assert "MatMulIntegerToFloat" in optimized_ops(emulate=False)
    emulated = optimized_ops(emulate=True)
    assert emulated == ["DequantizeLinear", "MatMul", "QuantizeLinear"]
