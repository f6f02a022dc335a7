"""The GPU paths of the export, on CPU: a fake TensorRT builder, the memory estimate, and the
engine parity gate with a stand-in engine session. No GPU has run this code."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import export.to_trt as to_trt
from export.parity import ort_session
from export.profiles import (
    MAX_TENSOR_ELEMENTS,
    check_max_points,
    default_workspace_bytes,
    max_points_limit,
    memory_estimate,
)
from export.tensorrt_build import build_engine, layer_types
from seg3d.config import load_config
from seg3d.manifest import EngineInfo, load_manifest
from seg3d.scans import synthetic_sweep

# -- the builder ------------------------------------------------------------------------------------


def fake_builder(names_only: bool = False, plugin: bool = False) -> tuple[types.ModuleType, dict[str, Any]]:
    """A `tensorrt` module whose inspector behaves like TensorRT's: layer names only unless the
    builder config asked for ``ProfilingVerbosity.DETAILED``."""
    seen: dict[str, Any] = {"cleared": []}
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.8.0-fake"  # type: ignore[attr-defined]
    trt.ProfilingVerbosity = types.SimpleNamespace(LAYER_NAMES_ONLY=0, DETAILED=2)  # type: ignore[attr-defined]
    trt.BuilderFlag = types.SimpleNamespace(TF32=7)  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)  # type: ignore[attr-defined]
    trt.LayerInformationFormat = types.SimpleNamespace(JSON=1)  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    class Config:
        profiling_verbosity = 0

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            seen["workspace"] = size

        def clear_flag(self, flag: int) -> None:
            seen["cleared"].append(flag)

        def add_optimization_profile(self, profile: Any) -> None:
            pass

        def create_timing_cache(self, data: bytes) -> Any:
            return types.SimpleNamespace(serialize=lambda: b"cache")

        def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> None:
            pass

    class Network:
        num_inputs = 1

        def get_input(self, i: int) -> Any:
            return types.SimpleNamespace(name="features")

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> Config:
            seen["config"] = Config()
            return seen["config"]

        def create_optimization_profile(self) -> Any:
            return types.SimpleNamespace(set_shape=lambda name, *shapes: None)

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return b"plan"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return True

    class Inspector:
        def get_engine_information(self, fmt: int) -> str:
            detailed = seen["config"].profiling_verbosity == trt.ProfilingVerbosity.DETAILED  # type: ignore[attr-defined]
            names = ["gather_0", "matmul_1"]
            if names_only or not detailed:
                return json.dumps({"Layers": names})
            kinds = ["Gather", "PluginV3" if plugin else "MatrixMultiply"]
            return json.dumps(
                {"Layers": [{"Name": n, "LayerType": t} for n, t in zip(names, kinds, strict=True)]}
            )

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Any:
            return types.SimpleNamespace(create_engine_inspector=Inspector)

    for name, value in {
        "Logger": Logger,
        "Builder": Builder,
        "OnnxParser": OnnxParser,
        "Runtime": Runtime,
    }.items():
        setattr(trt, name, value)
    return trt, seen


def _build(tmp_path: Path, monkeypatch, trt: types.ModuleType, precision: str = "fp32") -> EngineInfo:
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    shapes = {"features": ((1, 10), (35_000, 10), (300_000, 10))}
    return build_engine(
        tmp_path / "model.onnx",
        tmp_path / "model.engine",
        shapes,
        tmp_path / "timing.cache",
        {"min": 1, "opt": 35_000, "max": 300_000},
        1 << 30,
        precision,  # type: ignore[arg-type]
    )


def test_engine_is_built_with_detailed_profiling_and_lists_layer_types(tmp_path: Path, monkeypatch) -> None:
    trt, seen = fake_builder()
    info = _build(tmp_path, monkeypatch, trt)
    assert seen["config"].profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    assert info.layer_types == ["Gather", "MatrixMultiply"] and info.layers == 2


def test_an_inspection_without_layer_types_fails_the_build(tmp_path: Path, monkeypatch) -> None:
    trt, _ = fake_builder(names_only=True)
    with pytest.raises(RuntimeError, match="no layer types"):
        _build(tmp_path, monkeypatch, trt)
    with pytest.raises(RuntimeError, match="no layer types"):
        layer_types(json.dumps({"Layers": []}))


def test_a_plugin_layer_fails_the_build(tmp_path: Path, monkeypatch) -> None:
    trt, _ = fake_builder(plugin=True)
    with pytest.raises(RuntimeError, match=r"plugin layers \['PluginV3'\]"):
        _build(tmp_path, monkeypatch, trt)


def test_fp32_builds_clear_tf32_and_fp16_builds_keep_it(tmp_path: Path, monkeypatch) -> None:
    trt, seen = fake_builder()
    _build(tmp_path, monkeypatch, trt, "fp32")
    assert seen["cleared"] == [trt.BuilderFlag.TF32]
    trt, seen = fake_builder()
    _build(tmp_path, monkeypatch, trt, "fp16")
    assert seen["cleared"] == []


# -- memory -----------------------------------------------------------------------------------------


def test_memory_estimate_of_the_full_config() -> None:
    full = load_config("nuscenes_full")
    estimate = memory_estimate(full, 300_000, "fp32")
    assert estimate.largest_elements == 300_000 * 27 * 256 == 2_073_600_000 < MAX_TENSOR_ELEMENTS
    assert round(estimate.largest_bytes / 1e9, 2) == 8.29
    assert estimate.activation_bytes > estimate.largest_bytes
    assert max_points_limit(full) == 310_689
    assert memory_estimate(load_config("tiny"), 300_000).largest_elements == 259_200_000


def test_workspace_is_sized_to_the_card() -> None:
    estimate = memory_estimate(load_config("nuscenes_full"), 300_000, "fp32")
    on_16 = default_workspace_bytes(estimate, 16 << 30)
    assert (1 << 30) <= on_16 < (8 << 30)  # the old fixed 8 GiB left no room on a 16 GB card
    assert default_workspace_bytes(estimate, 141 << 30) == 8 << 30
    assert default_workspace_bytes(estimate, 8 << 30) == 1 << 30


def test_max_points_over_2_31_elements_are_refused() -> None:
    full = load_config("nuscenes_full")
    check_max_points(full, 310_689)
    with pytest.raises(ValueError, match=r"--max-points 400,000 is too large.*use --max-points 310,689"):
        check_max_points(full, 400_000)


def test_export_refuses_such_max_points_before_building(tmp_path: Path, capsys) -> None:
    args = ["--config", "nuscenes_full", "--random-init", "--skip-parity", "--max-points", "400000"]
    assert to_trt.main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "2^31" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_the_default_profile_starts_at_one_point() -> None:
    args = to_trt._parser().parse_args(["--onnx", "x.onnx"])
    assert args.min_points == 1 and args.workspace_gib is None


# -- the engine parity gate ---------------------------------------------------------------------------


class OrtAsEngine:
    """Stands for the built engine: the ONNX graph in ONNX Runtime, logits optionally scrambled."""

    def __init__(self, folder: Path, scramble: bool) -> None:
        self.session = ort_session((folder / "model.onnx").read_bytes())
        self.scramble = scramble
        self.description = "fake TensorRT engine"
        self.calls = 0

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        outputs = dict(zip(["logits", "labels"], self.session.run(["logits", "labels"], feeds), strict=True))
        if self.scramble:
            rng = np.random.default_rng(0)
            outputs["logits"] = rng.normal(size=outputs["logits"].shape).astype(np.float32)
        return [outputs[n] for n in names]


def _fake_gpu_export(tmp_path: Path, monkeypatch, scramble: bool) -> tuple[int, list[OrtAsEngine]]:
    pytest.importorskip("spconv.pytorch")
    sessions: list[OrtAsEngine] = []

    def fake_engine(onnx_path: Path, engine_path: Path, model: Any, config: Any, args: Any, precision: str):
        engine_path.write_bytes(b"plan")
        return EngineInfo(
            file="model.engine",
            tensorrt="10.8.0-fake",
            gpu="Fake GPU",
            strongly_typed=True,
            layers=2,
            layer_types=["Gather", "MatrixMultiply"],
            profile={},
            profile_points={"min": 1, "opt": 35_000, "max": 300_000},
        )

    def fake_session(folder: Path, config: Any) -> OrtAsEngine:
        sessions.append(OrtAsEngine(folder, scramble))
        return sessions[-1]

    monkeypatch.setattr(to_trt, "tensorrt_status", lambda: (True, "TensorRT 10.8.0-fake"))
    monkeypatch.setattr(to_trt, "_engine", fake_engine)
    monkeypatch.setattr(to_trt, "engine_session", fake_session)
    cloud = synthetic_sweep(4_000, seed=3).numpy()
    scan = tmp_path / "scan.pcd.bin"
    np.concatenate([cloud, np.zeros((cloud.shape[0], 1), np.float32)], axis=1).astype(np.float32).tofile(scan)
    out = tmp_path / "out"
    code = to_trt.main(["--config", "tiny", "--random-init", "--out", str(out), "--parity-scans", str(scan)])
    return code, sessions


def test_the_engine_passes_the_parity_gate(tmp_path: Path, monkeypatch) -> None:
    code, sessions = _fake_gpu_export(tmp_path, monkeypatch, scramble=False)
    assert code == 0 and len(sessions) == 1 and sessions[0].calls == 1
    manifest = load_manifest(tmp_path / "out")
    assert manifest.engine is not None and "model.engine" in manifest.files
    parity = manifest.engine.parity
    assert parity is not None and parity.status == "passed"
    assert parity.runtime is not None and parity.runtime.startswith("fake TensorRT engine")
    assert parity.scans and parity.min_argmax_agreement is not None
    assert parity.min_argmax_agreement >= parity.threshold_argmax_agreement


def test_an_engine_below_the_parity_threshold_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    code, sessions = _fake_gpu_export(tmp_path, monkeypatch, scramble=True)
    assert code == 3 and len(sessions) == 1
    assert "engine parity" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.engine").exists()
    assert not (tmp_path / "out" / "manifest.json").exists()
