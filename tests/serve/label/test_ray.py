"""--engine ray on a real local Ray cluster (two actors of one CPU) writes the same bytes as the
local engine's two worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.label.cli import main

pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -e '.[ray]')")
pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")


def test_ray_and_local_engines_write_identical_predictions(
    synthetic_nuscenes: Path, tiny_export: Path, tmp_path: Path
) -> None:
    common = ["--model", str(tiny_export), "--nuscenes", str(synthetic_nuscenes), "--split", "mini_val"]
    common += ["--workers", "2", "--threads", "1", "--no-progress"]
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert main([*common, "--out", str(local)]) == 0
    assert main([*common, "--out", str(ray), "--engine", "ray", "--cpus-per-worker", "1"]) == 0
    files = sorted(p.relative_to(local) for p in (local / "lidarseg").rglob("*_lidarseg.bin"))
    assert len(files) == 10
    assert files == sorted(p.relative_to(ray) for p in (ray / "lidarseg").rglob("*_lidarseg.bin"))
    for name in [*files, Path("v1.0-mini/lidarseg.json"), Path("v1.0-mini/category.json")]:
        assert (local / name).read_bytes() == (ray / name).read_bytes(), name
    summary = json.loads((ray / "label-summary.json").read_text())
    assert summary["engine"] == "ray" and summary["workers"] == 2 and summary["written"] == 10
