"""The real SemanticKITTI scans of ../shared/data/real as a training root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seg3d.scans import real_data_dir


@pytest.fixture(scope="session")
def semantickitti_root(tmp_path_factory) -> Path:
    """Sequence 00 with only its labelled frames (000003 has no label upstream), and the label config
    at the root, where `semantickitti_3d.yaml` looks for it."""
    real = real_data_dir()
    if real is None:
        pytest.skip("real scans not found")
    root = tmp_path_factory.mktemp("semantickitti")
    source = real / "semantickitti"
    for sub in ("velodyne", "labels"):
        (root / "sequences" / "00" / sub).mkdir(parents=True)
    for frame in ("000000", "000001"):
        shutil.copy(source / "sequences/00/velodyne" / f"{frame}.bin", root / "sequences/00/velodyne")
        shutil.copy(source / "sequences/00/labels" / f"{frame}.label", root / "sequences/00/labels")
    shutil.copy(source / "semantic-kitti.yaml", root)
    return root
