"""Shared fixtures: configs, the real scans in ``../shared/data/real``, the real nuScenes tables
completed so nuscenes-devkit loads them, and the one generated nuScenes-format data set of the session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from seg3d.config import ModelConfig, load_config
from seg3d.scans import RealScan, real_data_dir, real_scans

if TYPE_CHECKING:  # training is imported only by the tests that generate data
    from training.data.synthetic import GenerationReport

#: The session's generated data set: v1.0-mini, 10 scenes (8 mini_train + 2 mini_val) × 5 keyframes.
SYNTHETIC_SEED = 0
SYNTHETIC_VERSION = "v1.0-mini"
SYNTHETIC_SCENES = 10
SYNTHETIC_KEYFRAMES = 5

#: The real extract's tables come from v1.0-trainval (scenes 0523 and 0916, both in the val split),
#: so `devkit_root` names its table folder after that version: the devkit's splits then apply.
REAL_VERSION = "v1.0-trainval"


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


@pytest.fixture(scope="session")
def devkit_root(tmp_path_factory) -> Path:
    """The real nuScenes tables plus the four the extract lacks (attribute, visibility, log, map), and
    the real LIDAR_TOP / CAM_FRONT files where the tables say they are."""
    real = real_data_dir()
    if real is None:
        pytest.skip("real scans not found")
    root = tmp_path_factory.mktemp("nuscenes")
    source = real / "nuscenes"
    tables = root / REAL_VERSION
    shutil.copytree(source / "v1.0-mini-extract", tables)
    annotations = json.loads((tables / "sample_annotation.json").read_text())
    attributes = sorted({t for a in annotations for t in a["attribute_tokens"]})
    (tables / "attribute.json").write_text(
        json.dumps(
            [{"token": t, "name": f"attribute-{i}", "description": ""} for i, t in enumerate(attributes)]
        )
    )
    levels = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}
    (tables / "visibility.json").write_text(
        json.dumps([{"token": t, "level": level, "description": ""} for t, level in levels.items()])
    )
    logs = sorted({s["log_token"] for s in json.loads((tables / "scene.json").read_text())})
    (tables / "log.json").write_text(
        json.dumps(
            [{"token": t, "logfile": t, "vehicle": "", "date_captured": "", "location": ""} for t in logs]
        )
    )
    (tables / "map.json").write_text(
        json.dumps([{"token": "map", "log_tokens": logs, "category": "semantic_prior", "filename": ""}])
    )
    for folder in ("LIDAR_TOP", "CAM_FRONT"):
        (root / "samples" / folder).mkdir(parents=True)
        for file in (source / "samples" / folder).iterdir():
            (root / "samples" / folder / file.name).symlink_to(file)
    return root


@pytest.fixture(scope="session")
def nusc(devkit_root: Path):
    """nuscenes-devkit's ``NuScenes`` of `devkit_root`."""
    nuscenes = pytest.importorskip("nuscenes.nuscenes", reason="nuscenes-devkit is not installed")
    return nuscenes.NuScenes(version=REAL_VERSION, dataroot=str(devkit_root), verbose=False)
