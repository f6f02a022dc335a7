"""Shared fixtures: configs and the real scans in ``../shared/data/real``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seg3d.config import ModelConfig, load_config
from seg3d.testing import RealScan, real_scans


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture(scope="session")
def full_config() -> ModelConfig:
    return load_config("nuscenes_full")


@pytest.fixture(scope="session")
def nuscenes_scans() -> list[RealScan]:
    scans = real_scans(("nuscenes",))
    if not scans:
        pytest.skip("real nuScenes scans not found (set SEG3D_REAL_DATA or place ../shared/data/real)")
    return scans


@pytest.fixture(scope="session")
def semantickitti_scan() -> RealScan:
    scans = real_scans(("semantickitti",))
    if not scans:
        pytest.skip("real SemanticKITTI scans not found")
    return scans[0]


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synthetic_nuscenes(tmp_path_factory) -> Path:
    """A generated nuScenes-format dataset (v1.0-mini: 10 scenes, 8 mini_train + 2 mini_val, 3
    keyframes each), shared by every test that needs nuScenes-layout data."""
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    from training.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic") / "nuscenes"
    generate(root, scenes=10, samples_per_scene=3, seed=0, version="v1.0-mini")
    return root
