"""bench/int8.py: each graph form and precision exported through the gate and timed, an export the
gate refuses reported as refused, and with --miou-synthetic each graph's mIoU on held-out synthetic
sweeps (the helpers themselves are tested by tests/export/test_int8_demo_miou.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg3d.ort_options import int8_kernels_exact
from seg3d.scans import real_data_dir, real_scans
from tests.bench.conftest import load_bench_script

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "encoder3d.pt"


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real scans not found")
def test_bench_times_the_graphs_that_pass_and_reports_the_refused(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed (the synthetic generator)")
    bench = load_bench_script("int8")
    # every layer in int8, calibrated on the SemanticKITTI scans (HDL-64): the demo model then
    # changes a few per cent of the labels on the nuScenes sweeps, and the gate refuses the export
    real = real_data_dir()
    assert real is not None
    args = ["--checkpoint", str(DEMO), "--calibrate", str(real / "semantickitti"), "--int8-target", "0.01"]
    args += ["--miou-synthetic", "3", "--miou-seed", "7"]
    assert bench.main([*args, "--iterations", "1", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    results = {(r["form"], r["precision"]): r for r in report["results"]}
    assert set(results) == {("dense", "fp32"), ("sparse", "fp32"), ("sparse", "int8")}
    assert results["sparse", "int8"]["refused"] == "export exit code 3"
    assert report["miou_synthetic"] == {"sweeps": 3, "seed": 7, "version": "v1.0-trainval"}
    assert "miou" not in results["sparse", "int8"]
    sweeps = {s.name for s in real_scans(("nuscenes",))}
    for key in (("dense", "fp32"), ("sparse", "fp32")):
        row = results[key]
        assert row["int8_layers"] == 0 and row["min_agreement"] >= 0.999
        assert {s["scan"] for s in row["scans"]} == sweeps
        assert all(s["inference_ms"] > 0 and s["preprocess_ms"] > 0 for s in row["scans"])
        # 3 sweeps: a rough figure (the model card's is 50.4 %), and every class has an entry
        assert 0.2 < row["miou"] <= 1 and len(row["iou"]) == 16 and "car" in row["iou"]
    # the dense and sparse fp32 graphs compute the same labels (the gate: 100 % on the real scans)
    assert abs(results["dense", "fp32"]["miou"] - results["sparse", "fp32"]["miou"]) < 1e-3
    table = (tmp_path / "r.md").read_text()
    assert report["int8_kernels_exact"] == int8_kernels_exact()  # the report says how int8 ran here
    assert ("integer kernels (this CPU has VNNI)" in table) == int8_kernels_exact()
    assert "| sparse int8 | | refused by the gate (export exit code 3) | | | | | |" in table
    assert "| sparse fp32 | 0 of 52 | 100.0000% |" in table and "1.00×" in table
    assert "synthetic mIoU % | mIoU Δ vs sparse fp32 |" in table and "3 held-out synthetic sweeps" in table
    assert f"| {100 * results['sparse', 'fp32']['miou']:.2f} | +0.00 |" in table
