"""bench/run.py measures what it claims: every row on every real scan, the multiply-adds and rates
beside the measured peak, HTTP through a real server, and exports the gate refuses as rows."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from seg3d.scans import real_data_dir, real_scans
from tests.bench.conftest import load_bench_script

ROWS = (
    "spconv",
    "torch fp32",
    "torch bf16",
    "onnxruntime dense fp32",
    "onnxruntime sparse fp32",
    "onnxruntime sparse int8",
)
QUICK = ["--models", "demo", "--iterations", "1", "--warmup", "0", "--peak-repeats", "2"]


def _run(tmp_path: Path, *extra: str) -> dict:
    bench = load_bench_script("run")
    assert bench.main([*QUICK, *extra, "--machine", "test", "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "test.json").read_text())


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real scans not found")
def test_quick_run_reports_every_row_scan_stage_and_rate(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    report = _run(tmp_path, "--http-clients", "2", "--http-requests", "1")
    assert list(report["models"]) == ["demo"]
    section = report["models"]["demo"]
    assert section["config"] == "tiny" and section["weights"].endswith("models/demo/encoder3d.pt")
    for kernel in ("torch fp32", "torch fp32, 1 thread", "torch bf16", "onnxruntime fp32"):
        assert report["peak"][kernel]["gflops"] > 0 and report["peak"][kernel]["median_gflops"] > 0
    scans = {s.name for s in real_scans(("nuscenes", "kitti"))}
    assert set(section["macs"]) == scans
    for counts in section["macs"].values():
        assert counts["dense"]["total"] > counts["sparse"]["total"] > 0
        assert counts["dense"]["conv3"] > counts["sparse"]["conv3"] > 0
        rows = counts["rows"]
        assert rows["onnxruntime dense fp32"] > rows["onnxruntime sparse fp32"] > rows["torch fp32"] > 0
    assert list(section["rows"]) == list(ROWS)
    for name in ROWS[:-1]:
        result = section["rows"][name]
        assert result["available"], (name, result)
        assert set(result["scans"]) == scans
        for stages in result["scans"].values():
            assert set(stages) >= {"parse", "preprocess", "inference", "postprocess", "total"}
            assert stages["total"]["p50"] >= stages["inference"]["p50"] > 0
        assert set(result["rates"]) == scans
        for rate in result["rates"].values():
            assert rate["macs"] > 0 and rate["gflops"] > 0 and rate["peak_share"] > 0
        assert result["peak"] in report["peak"]
    assert section["rows"]["spconv"]["torch_threads"] == 1  # the reference as a user must run it
    int8 = section["rows"]["onnxruntime sparse int8"]
    assert not int8["available"] and int8["reason"].startswith("not run: needs --calibrate")
    assert section["exports"]["sparse-int8"]["not_run"] == int8["reason"]
    assert section["exports"]["dense-fp32"]["parity"] == "passed"  # trained weights: the real gate
    http = section["http"]
    assert http[0]["row"] == "spconv" and http[0]["threads"] == 1
    assert len(http) == 2 and http[1]["row"] in ROWS[1:]
    for run in http:
        assert run["statuses"] == {"200": 2}
        assert 0 < run["single_request_inference_ms"] < run["single_request_p50_ms"]
        assert run["server_peak_rss_gib"] >= run["server_idle_rss_gib"] > 0
    markdown = (tmp_path / "test.md").read_text()
    for needle in (
        "## This CPU's MatMul peak",
        "| onnxruntime sparse fp32 |",
        "GFLOP/s",
        "not run: needs --calibrate",
        "Through the HTTP server (2 concurrent clients",
        "## Targets",
        "demo end-to-end through the server",
    ):
        assert needle in markdown, needle


@pytest.mark.skipif(not real_scans(("nuscenes",)), reason="real scans not found")
def test_calibrated_int8_row_is_timed_or_refused_never_a_crash(tmp_path: Path) -> None:
    pytest.importorskip("spconv.pytorch")
    root = real_data_dir()
    assert root is not None
    sweeps = root / "nuscenes" / "samples" / "LIDAR_TOP"
    report = _run(tmp_path, "--no-http", "--calibrate", str(sweeps), "--calibrate-clouds", "4")
    section = report["models"]["demo"]
    export = section["exports"]["sparse-int8"]
    row = section["rows"]["onnxruntime sparse int8"]
    if row["available"]:
        assert export["parity"] == "passed" and export["min_agreement"] >= 0.99
        assert export["int8_layers"] > 0
        assert all(r["gflops"] > 0 for r in row["rates"].values())
    else:
        assert export["exit_code"] == 3 and row["reason"].startswith("refused by the gate (exit 3)")
    assert "onnxruntime sparse int8 |" in (tmp_path / "test.md").read_text()


def test_a_refused_export_becomes_a_row_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """export/to_trt.py exit 3 (the parity gate) for int8: the row says so with the gate's message;
    the float graphs still run."""
    bench = load_bench_script("run")

    def fake_export(argv: list[str]) -> int:
        out = Path(argv[argv.index("--out") + 1])
        if argv[argv.index("--precision") + 1] == "int8":
            print("error: parity 97.5361% below 99.0% for int8", file=sys.stderr)
            return 3
        out.mkdir(parents=True)
        return 0

    monkeypatch.setattr(bench.to_trt, "main", fake_export)
    manifest = SimpleNamespace(
        parity=SimpleNamespace(status="passed", min_argmax_agreement=1.0),
        graph=SimpleNamespace(layers={"embed.fc1": "fp32"}),
    )
    monkeypatch.setattr(bench, "load_manifest", lambda folder: manifest)
    args = argparse.Namespace(calibrate=[tmp_path], calibrate_clouds=4, int8_target=0.995)
    model = bench.ModelSpec("demo", "tiny", tmp_path / "trained.pt")
    exports = bench.export_all(model, tmp_path / "exports", args)
    assert exports["sparse-int8"]["refused"] == (
        "refused by the gate (exit 3): parity 97.5361% below 99.0% for int8"
    )
    rows = {row.name: row for row in bench.ROWS}
    folder, reason = bench.row_folder(rows["onnxruntime sparse int8"], exports)
    assert folder is None and reason == exports["sparse-int8"]["refused"]
    folder, reason = bench.row_folder(rows["torch bf16"], exports)
    assert folder == tmp_path / "exports" / "dense-fp32" and reason == ""
    # random init: int8 is not even tried, whatever --calibrate says
    random_init = bench.ModelSpec("full", "nuscenes_full", None)
    assert bench.int8_not_run(random_init, args) == (
        "not run: needs --full-checkpoint (trained weights: random-init logits are near-tied)"
    )


def test_judge_reads_the_targets() -> None:
    bench = load_bench_script("run")

    def http(row: str, e2e: float, rps: float, clients: int = 8) -> dict:
        return {
            "row": row,
            "clients": clients,
            "single_request_p50_ms": e2e,
            "throughput_rps": rps,
            "overhead_share": 0.05,
            "server_peak_rss_gib": 1.0,
        }

    def timed(backend: str, total: float) -> dict:
        return {"available": True, "backend": backend, "scans": {"nuscenes/a": {"total": {"p50": total}}}}

    report = {
        "machine": {"gpu": None},
        "models": {
            "full": {
                "rows": {
                    "spconv": timed("spconv", 2500),
                    "torch fp32": timed("torch", 900),
                    "onnxruntime sparse fp32": timed("onnxruntime", 600),
                },
                "http": [http("spconv", 2600, 0.4), http("onnxruntime sparse fp32", 240, 4.5)],
            },
            "demo": {
                "rows": {"spconv": timed("spconv", 100), "torch fp32": timed("torch", 60)},
                "http": [http("torch fp32", 30, 20, clients=2)],
            },
        },
    }
    verdicts = "\n".join(bench.judge(report))
    assert (
        "end-to-end through the server: 240 ms with onnxruntime sparse fp32 (target ≤ 250 ms): met"
        in verdicts
    )
    assert "4.50 req/s" in verdicts and "(target ≥ 4 req/s with 8): met" in verdicts
    assert "demo end-to-end through the server: 30.0 ms with torch fp32 (target ≤ 25 ms): NOT met" in verdicts
    assert "full: the exported graph the fastest backend: fastest row onnxruntime sparse fp32" in verdicts
    assert "demo: the exported graph the fastest backend: not measured" in verdicts
    assert "vs the spconv reference: 10.83×" in verdicts


def test_models_and_the_former_configs_option() -> None:
    bench = load_bench_script("run")
    parse = bench._parser().parse_args
    full, demo = bench.model_specs(parse(["--full-checkpoint", "w.pt"]))
    assert full == bench.ModelSpec("full", "nuscenes_full", Path("w.pt"))
    assert demo.name == "demo" and demo.config == "tiny" and demo.checkpoint.name == "encoder3d.pt"
    aliased = bench.model_specs(parse(["--configs", "tiny,nuscenes_c128"]))
    assert [(m.name, m.config) for m in aliased] == [("demo", "tiny"), ("nuscenes_c128", "nuscenes_c128")]
    assert aliased[1].checkpoint is None  # another bundled config: random init
    with pytest.raises(SystemExit):
        bench.model_specs(parse(["--models", "nope"]))
