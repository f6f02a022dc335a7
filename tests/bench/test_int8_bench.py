"""bench/int8.py: each graph form and precision exported through the gate and timed, and an
export the gate refuses reported as refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg3d.scans import real_data_dir, real_scans
from tests.bench.conftest import load_bench_script

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "encoder3d.pt"


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real scans not found")
def test_bench_times_the_graphs_that_pass_and_reports_the_refused(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    bench = load_bench_script("int8")
    # every layer in int8, calibrated on the SemanticKITTI scans (HDL-64): the demo model then
    # changes a few per cent of the labels on the nuScenes sweeps, and the gate refuses the export
    real = real_data_dir()
    assert real is not None
    args = ["--checkpoint", str(DEMO), "--calibrate", str(real / "semantickitti"), "--int8-target", "0.01"]
    assert bench.main([*args, "--iterations", "1", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    results = {(r["form"], r["precision"]): r for r in report["results"]}
    assert set(results) == {("dense", "fp32"), ("sparse", "fp32"), ("sparse", "int8")}
    assert results["sparse", "int8"]["refused"] == "export exit code 3"
    sweeps = {s.name for s in real_scans(("nuscenes",))}
    for key in (("dense", "fp32"), ("sparse", "fp32")):
        row = results[key]
        assert row["int8_layers"] == 0 and row["min_agreement"] >= 0.999
        assert {s["scan"] for s in row["scans"]} == sweeps
        assert all(s["inference_ms"] > 0 and s["preprocess_ms"] > 0 for s in row["scans"])
    table = (tmp_path / "r.md").read_text()
    assert "| sparse int8 | | refused by the gate (export exit code 3) |" in table
    assert "| sparse fp32 | 0 of 52 | 100.0000% |" in table and "1.00×" in table
