"""Inputs for the labelling job's tests: point files copied from the session's synthetic sweeps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def copy_sweeps(synthetic_nuscenes: Path, folder: Path, count: int) -> list[Path]:
    """``count`` synthetic LIDAR_TOP sweeps copied into ``folder`` as ``sweep-NN.pcd.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    sweeps = sorted((synthetic_nuscenes / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    copies = []
    for i in range(count):
        copy = folder / f"sweep-{i:02d}.pcd.bin"
        shutil.copyfile(sweeps[i % len(sweeps)], copy)
        copies.append(copy)
    return copies


@pytest.fixture
def sweep_files(synthetic_nuscenes: Path, tmp_path: Path) -> list[Path]:
    return copy_sweeps(synthetic_nuscenes, tmp_path / "scans", 4)
