"""bench/run.py measures what it claims: every backend on every real scan, HTTP through a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg3d.scans import real_scans
from tests.bench.conftest import load_bench_script


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real scans not found")
def test_quick_run_reports_every_backend_scan_and_stage(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    bench = load_bench_script("run")
    args = [
        "--configs",
        "tiny",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--http-clients",
        "2",
        "--http-requests",
        "1",
    ]
    assert bench.main([*args, "--machine", "test", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "test.json").read_text())
    section = report["configs"]["tiny"]
    scans = {s.name for s in real_scans(("nuscenes", "kitti"))}
    for name in ("spconv", "torch", "onnxruntime"):
        result = section["in_process"][name]
        assert result["available"] and set(result["scans"]) == scans
        for stages in result["scans"].values():
            assert set(stages) == {"parse", "preprocess", "inference", "postprocess", "total"}
            assert stages["total"]["p50"] >= stages["inference"]["p50"] > 0
    assert section["in_process"]["spconv"]["torch_threads"] == 1  # the reference as a user must run it
    http = section["http"]
    assert http[0]["backend"] == "spconv" and http[0]["threads"] == 1
    for run in http:
        assert run["statuses"] == {"200": 2}
        assert 0 < run["single_request_inference_ms"] < run["single_request_p50_ms"]
        assert run["server_peak_rss_gib"] >= run["server_idle_rss_gib"] > 0
    markdown = (tmp_path / "test.md").read_text()
    assert "| spconv |" in markdown and "ratio vs spconv" in markdown and "## Targets" in markdown
