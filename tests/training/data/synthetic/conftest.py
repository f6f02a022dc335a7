"""One default synthetic dataset (10 scenes × 5 keyframes, seed 0), generated once for all the tests here."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.synthetic import GenerationReport, generate

SEED = 0
VERSION = "v1.0-mini"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> tuple[Path, GenerationReport]:
    """The default dataset, made with two workers (the command's default on the 2-core CI machine)."""
    root = tmp_path_factory.mktemp("synthetic") / "nuscenes"
    report = generate(root, scenes=10, samples_per_scene=5, seed=SEED, version=VERSION, workers=2)
    return root, report


@pytest.fixture(scope="session")
def synthetic_nusc(synthetic):
    from nuscenes.nuscenes import NuScenes

    root, _ = synthetic
    return NuScenes(version=VERSION, dataroot=str(root), verbose=False)
