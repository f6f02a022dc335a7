"""Shared fixtures: configs and the real scans in ``../shared/data/real``."""

from __future__ import annotations

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
