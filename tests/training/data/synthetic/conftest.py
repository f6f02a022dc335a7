"""The synthetic generator's tests run on the session's one generated data set (`tests/conftest.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SYNTHETIC_SEED as SEED
from tests.conftest import SYNTHETIC_VERSION as VERSION
from training.data.synthetic import GenerationReport

__all__ = ["SEED", "VERSION"]


@pytest.fixture(scope="session")
def synthetic(synthetic_dataset: tuple[Path, GenerationReport]) -> tuple[Path, GenerationReport]:
    """The default data set (10 scenes × 5 keyframes, seed 0, two workers) and its report."""
    return synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_nusc(synthetic):
    from nuscenes.nuscenes import NuScenes

    root, _ = synthetic
    return NuScenes(version=VERSION, dataroot=str(root), verbose=False)
