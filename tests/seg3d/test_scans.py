"""`seg3d.scans`: where real scans come from, and that a mistyped $SEG3D_REAL_DATA is an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import seg3d.scans as scans
from seg3d.scans import RealDataError, real_data_dir, real_scans, synthetic_sweep


def _real_folder(root: Path) -> Path:
    """A minimal real-scan folder: one nuScenes sweep of 5 float32 columns."""
    lidar = root / "nuscenes" / "samples" / "LIDAR_TOP"
    lidar.mkdir(parents=True)
    cloud = np.zeros((10, 5), np.float32)
    cloud[:, 0] = np.arange(10)
    cloud[:, 3] = 100.0
    cloud.tofile(lidar / "sweep.pcd.bin")
    return root


def test_env_naming_a_missing_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nonexistent"
    monkeypatch.setenv("SEG3D_REAL_DATA", str(missing))
    with pytest.raises(RealDataError, match=f"SEG3D_REAL_DATA={missing} .*does not exist"):
        real_data_dir()
    with pytest.raises(FileNotFoundError, match="SEG3D_REAL_DATA"):  # real_scans does not swallow it
        real_scans()


def test_env_naming_a_folder_without_scans_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEG3D_REAL_DATA", str(tmp_path))
    with pytest.raises(RealDataError, match="has no nuscenes/ folder"):
        real_data_dir()


def test_env_naming_a_real_folder_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _real_folder(tmp_path / "real")
    monkeypatch.setenv("SEG3D_REAL_DATA", str(root))
    assert real_data_dir() == root
    found = real_scans(("nuscenes",), intensity_max=1.0)
    assert [s.name for s in found] == ["nuscenes/sweep.pcd.bin"]
    assert found[0].points.shape == (10, 4)
    assert torch.allclose(found[0].points[:, 3], torch.full((10,), 100 / 255))  # converted to the asked scale


def test_unset_or_empty_env_uses_the_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scans, "_REPO", tmp_path / "repo")
    monkeypatch.delenv("SEG3D_REAL_DATA", raising=False)
    assert real_data_dir() is None and real_scans() == []  # no folder beside the repo: no scans, no error
    _real_folder(tmp_path / "shared" / "data" / "real")
    assert real_data_dir() == tmp_path / "shared" / "data" / "real"
    monkeypatch.setenv("SEG3D_REAL_DATA", "")
    assert real_data_dir() == tmp_path / "shared" / "data" / "real"


def test_synthetic_sweeps_differ_by_seed_and_follow_the_scale() -> None:
    a, b = synthetic_sweep(1000, seed=0, intensity_max=1.0), synthetic_sweep(1000, seed=1, intensity_max=1.0)
    assert a.shape == (1000, 4) and not torch.equal(a, b)
    assert torch.equal(a, synthetic_sweep(1000, seed=0, intensity_max=1.0))
    assert float(a[:, 3].max()) <= 1.0
