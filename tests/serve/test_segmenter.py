"""Where a request's preprocessing runs (`serve.segmenter.preprocess_device`): on the backend's GPU
when that backend takes torch tensors there, on the CPU otherwise. The GPU side ran in
bench/gpu.py (bench/results/nvidia-h200.md: same labels, 50 → 22-28 ms at nuscenes_full)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seg3d.manifest import load_manifest
from serve.backends import TorchBackend, load_backend
from serve.segmenter import Segmenter, preprocess_device


@dataclass
class HostArrayBackend:
    """A backend that reads host arrays (as ONNX Runtime does), whatever device it computes on."""

    device: str = "cuda"


def test_preprocessing_follows_a_tensor_backend_onto_its_gpu(tiny_export: Path) -> None:
    config = load_manifest(tiny_export).config
    loaded = load_backend("torch", tiny_export, config)
    assert isinstance(loaded, TorchBackend)
    # The rule, not a CUDA run: the same model labelled with each device (a GPU host loads on CUDA).
    on_gpu = TorchBackend(loaded.model, config, "cuda", "torch")
    on_cpu = TorchBackend(loaded.model, config, "cpu", "torch")
    assert preprocess_device(on_gpu) == "cuda"
    assert preprocess_device(on_cpu) == "cpu"
    assert preprocess_device(HostArrayBackend()) == "cpu"  # type: ignore[arg-type]
    assert Segmenter(config, on_gpu, 100).preprocess_on == "cuda"
    assert Segmenter(config, on_gpu, 100, preprocess_on="cpu").preprocess_on == "cpu"
