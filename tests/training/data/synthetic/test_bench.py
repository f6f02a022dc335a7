"""bench/synthetic.py reports what it measured: the run's own counts, coverage and box purity."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.conftest import load_bench_script


def test_bench_writes_a_consistent_report(tmp_path: Path) -> None:
    bench = load_bench_script("synthetic")
    arguments = ["--scenes", "1", "--samples-per-scene", "2", "--workers", "1", "--machine", "test"]
    assert bench.main([*arguments, "--out", str(tmp_path / "results"), "--keep", str(tmp_path / "data")]) == 0
    report = json.loads((tmp_path / "results" / "synthetic-test.json").read_text())
    assert report["run"] == {
        "scenes": 1,
        "samples_per_scene": 2,
        "seed": 0,
        "version": "v1.0-mini",
        "workers": 1,
    }
    assert 0 < report["keyframe_seconds_mean"] * 2 <= report["seconds"]
    sizes = [p.stat().st_size // 20 for p in (tmp_path / "data" / "samples" / "LIDAR_TOP").iterdir()]
    assert report["points_per_sweep"]["min"] == min(sizes) and report["points_per_sweep"]["max"] == max(sizes)
    assert sum(report["raw_class_points"].values()) == sum(sizes)
    assert report["classes_present"] == sum(n > 0 for n in report["train_class_points"].values())
    assert report["dataset"]["samples"] == 2 and report["dataset"]["purity"]["vehicle.car"]["boxes"] > 0
    markdown = (tmp_path / "results" / "synthetic-test.md").read_text()
    assert (
        "generation time" in markdown and "vehicle.car" in markdown and "Target" not in markdown.split("|")[0]
    )
    assert not list((tmp_path / "results").glob("*.tmp"))
