"""Shared fixtures: configs, the real scans in ``../shared/data/real``, and the one generated
nuScenes-format data set of the session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from seg3d.config import ModelConfig, load_config
from seg3d.scans import RealScan, real_scans

if TYPE_CHECKING:  # training is imported only by the tests that generate data
    from training.data.synthetic import GenerationReport

#: The session's generated data set: v1.0-mini, 10 scenes (8 mini_train + 2 mini_val) × 5 keyframes.
SYNTHETIC_SEED = 0
SYNTHETIC_VERSION = "v1.0-mini"
SYNTHETIC_SCENES = 10
SYNTHETIC_KEYFRAMES = 5


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
def synthetic_dataset(tmp_path_factory) -> tuple[Path, GenerationReport]:
    """The generated nuScenes-format data set and its `GenerationReport`, made once per session with
    two workers (the command's default on the 2-core CI machine): 10 scenes × 5 keyframes, seed 0,
    v1.0-mini. Every test that needs nuScenes-layout data uses it (`synthetic_nuscenes` is its root)."""
    from training.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic") / "nuscenes"
    report = generate(
        root,
        scenes=SYNTHETIC_SCENES,
        samples_per_scene=SYNTHETIC_KEYFRAMES,
        seed=SYNTHETIC_SEED,
        version=SYNTHETIC_VERSION,
        workers=2,
    )
    return root, report


@pytest.fixture(scope="session")
def synthetic_nuscenes(synthetic_dataset: tuple[Path, GenerationReport]) -> Path:
    """Root of the session's generated data set (`synthetic_dataset`), for the devkit-based loaders."""
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    return synthetic_dataset[0]
