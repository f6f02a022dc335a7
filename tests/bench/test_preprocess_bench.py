"""The preprocessing benchmark measures what it claims: real scans, the right grid, all tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg3d.config import load_config
from seg3d.preprocess import crop_mask, prepare_inputs
from tests.bench.conftest import load_bench_script


def test_bench_writes_consistent_report(tmp_path: Path, nuscenes_scans) -> None:
    bench = load_bench_script("preprocess")
    assert (
        bench.main(["--iterations", "2", "--warmup", "1", "--machine", "test", "--out", str(tmp_path)]) == 0
    )
    report = json.loads((tmp_path / "preprocess-test.json").read_text())
    assert report["machine"]["logical_cores"] >= 1
    results = {r["scan"]: r for r in report["results"]}
    assert any(name.startswith("nuscenes/") for name in results)
    assert any(not name.startswith("nuscenes/") for name in results)
    # The voxel counts it reports are those of the shared preprocessing on the cropped scan.
    scan = nuscenes_scans[0]
    config = load_config("nuscenes_full")
    inputs = prepare_inputs(scan.points[crop_mask(scan.points[:, :3], config.grid)], config)
    reported = results[scan.name]
    assert reported["voxels_per_scale"] == {str(s): v.num_voxels for s, v in inputs.voxels.items()}
    assert set(reported["stage_p50_ms"]) == {"check", "voxelize", "features", "tables"}
    assert 0 < reported["min_ms"] <= reported["p50_ms"] <= reported["p95_ms"]
    markdown = (tmp_path / "preprocess-test.md").read_text()
    assert scan.name in markdown and "Target" in markdown
    assert not list(tmp_path.glob("*.tmp"))


def test_bench_without_data_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    bench = load_bench_script("preprocess")
    monkeypatch.setattr(bench, "real_scans", lambda kinds: [])
    assert bench.main(["--out", str(tmp_path)]) == 2
    assert "no real scans" in capsys.readouterr().err
