"""Build a TensorRT engine from the exported ONNX graph (TensorRT 10.x and 11.x).

Written against the documented Python API and its 10 → 11 breaks (`docs/export.md` §3):
strongly typed network (the precision is the ONNX graph's own: TRT 11 removed the weak-typing
``BuilderFlag.FP16``), flags taken from enum *names* (``STRONGLY_TYPED`` is 1 in TRT 10 and 0 in
TRT 11), one optimization profile covering every dynamic input, a persistent timing cache, and
``build_serialized_network`` (``build_engine`` is gone since TRT 10). The engine is built with
``ProfilingVerbosity.DETAILED`` so that its inspection lists each layer's type (at the default
verbosity it lists names only), and that inspection proves no plugin layer was used. For an fp32
graph ``BuilderFlag.TF32`` is cleared: TF32 matmuls would not match the fp32 parity gate.

This module was not executed on this project's CI (no GPU, and PyPI's TensorRT builder wheels are
stubs); `export/to_trt.py` calls it only when `tensorrt` imports and CUDA is available.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seg3d.io import file_sha256, write_atomic
from seg3d.manifest import EngineInfo, Precision

__all__ = ["TRT_API_NAMES", "TensorRTUnavailable", "build_engine", "layer_types", "tensorrt_status"]

#: Every TensorRT Python name `build_engine` touches; `export/check_trt_api.py` looks each one up in
#: a bindings wheel, so an API break between TensorRT versions shows without a GPU.
TRT_API_NAMES = (
    "Logger", "Builder", "NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "create_network",
    "OnnxParser", "parse_from_file", "num_errors", "get_error", "create_builder_config",
    "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE", "create_optimization_profile", "set_shape",
    "add_optimization_profile", "num_inputs", "get_input", "create_timing_cache", "set_timing_cache",
    "serialize", "build_serialized_network", "Runtime", "deserialize_cuda_engine",
    "create_engine_inspector", "get_engine_information", "LayerInformationFormat", "JSON",
    "ProfilingVerbosity", "DETAILED", "profiling_verbosity", "BuilderFlag", "TF32", "clear_flag",
    # serve/backends.py (TensorRTBackend), which runs the engine for serving and engine parity
    "create_execution_context", "get_tensor_profile_shape", "set_input_shape", "set_tensor_address",
    "get_tensor_shape", "get_tensor_dtype", "get_tensor_mode", "TensorIOMode", "num_io_tensors",
    "get_tensor_name", "execute_async_v3",
)  # fmt: skip


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA device is missing."""


def tensorrt_status() -> tuple[bool, str]:
    """Whether an engine can be built here, and why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, f"tensorrt is not importable ({exc})"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device"
    except ImportError:  # pragma: no cover - torch is always there in this project
        return False, "torch is not importable"
    import tensorrt as trt

    return True, f"TensorRT {trt.__version__}"


def layer_types(information: str) -> tuple[int, list[str]]:
    """The layer count and sorted layer types of an engine inspection (JSON).

    Raises:
        RuntimeError: the inspection has no layer types (an engine not built with
            ``ProfilingVerbosity.DETAILED`` lists layer names only), so plugin-freedom is unproven.
    """
    info = json.loads(information)
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    types = {str(layer["LayerType"]) for layer in layers if isinstance(layer, dict) and "LayerType" in layer}
    if not layers or not types or any(not isinstance(layer, dict) for layer in layers):
        raise RuntimeError(
            "the engine inspection lists no layer types (was it built with ProfilingVerbosity.DETAILED?); "
            "cannot prove the engine is plugin-free"
        )
    return len(layers), sorted(types)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    timing_cache_path: Path,
    profile_points: dict[str, int],
    workspace_bytes: int = 8 << 30,
    precision: Precision = "fp32",
) -> EngineInfo:
    """Parse ``onnx_path``, build a strongly typed engine, write it and the timing cache atomically.

    Returns the manifest's record of the engine: TensorRT version, GPU, profile shapes (and the
    point counts ``profile_points`` they were sized for), layer count and the layer types found.
    """
    ok, why = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(why)
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n  {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    # Layer types in the inspection below; the default verbosity (LAYER_NAMES_ONLY) has none.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if precision == "fp32":
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 matmuls would run in TF32
        else:  # the engine parity gate (export/to_trt.py) still measures what the engine does
            print(f"WARNING: TensorRT {trt.__version__} has no BuilderFlag.TF32 to clear", file=sys.stderr)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise KeyError(f"no profile shape for graph input {name!r}")
        profile.set_shape(name, *shapes[name])
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    write_atomic(engine_path, bytes(plan))
    write_atomic(timing_cache_path, bytes(cache.serialize()))

    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(plan))
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the engine it just built")
    inspector = engine.create_engine_inspector()
    count, types = layer_types(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    plugins = [t for t in types if "plugin" in t.lower()]
    if plugins:
        raise RuntimeError(f"the engine uses plugin layers {plugins}; the export must stay plugin-free")
    return EngineInfo(
        file=engine_path.name,
        tensorrt=str(trt.__version__),
        gpu=torch.cuda.get_device_name(0),
        strongly_typed=bool(flags),
        layers=count,
        layer_types=types,
        profile={name: [list(s) for s in triple] for name, triple in shapes.items()},
        profile_points=profile_points,
        timing_cache_sha256=file_sha256(timing_cache_path),
    )
