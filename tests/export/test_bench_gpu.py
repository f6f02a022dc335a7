"""bench/gpu.py imports and explains itself on CPU, and says it needs CUDA (exit 2) without one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from seg3d.scans import real_scans

ROOT = Path(__file__).resolve().parents[2]


def test_help_runs_on_cpu() -> None:
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "training step" in result.stdout and "--skip-training" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_exits_2_without_cuda(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "needs CUDA" in result.stderr
    assert not any(tmp_path.iterdir())


def _gpu_script() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu_under_test", ROOT / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_check_without_its_runtime_is_skipped_not_failed() -> None:
    gpu = _gpu_script()
    checks = gpu.Checks()

    def missing() -> dict[str, Any]:
        raise gpu.Skipped("TensorRT is not installed on this host")

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    checks.run("engine", missing)
    checks.run("broken", broken)
    checks.run("fine", lambda: {"value": 1})
    assert checks.skipped == ["engine"] and checks.failed == ["broken"]
    report = {
        "machine_name": "m",
        "date": "d",
        "args": "",
        "total_seconds": 1.0,
        "machine": {"gpu": "g"},
        "checks": checks.results,
    }
    text = gpu.render(report)
    assert "| engine | skipped |" in text and "| broken | **NO** |" in text and "| fine | yes |" in text
    assert "Failed: broken." in text and "Not run (runtime not installed on this host): engine." in text


def test_the_encoder_check_runs_on_the_cpu_with_the_demo_model() -> None:
    """Check 5 on the CPU (the GPU run is bench/results/nvidia-h200.md): the same code compares
    precisions and preprocessing devices, so a wrong comparison shows here before a GPU is lent."""
    if not real_scans(("nuscenes",)):
        pytest.skip("no real nuScenes sweeps")
    gpu = _gpu_script()
    result = gpu.torch_encoder("demo", gpu.DEMO / "encoder3d.pt", iterations=1, device="cpu")
    assert result["ok"] and result["sweeps"]
    for row in result["sweeps"].values():
        assert row["fp32_vs_cpu"]["max_abs_diff"] == 0.0  # the same model on the same device
        assert row["bf16_vs_fp32"]["agreement"] >= gpu.HALF_AGREEMENT_MIN
        assert 0 < row["bf16_vs_fp32"]["relative_error"] < 0.02  # bf16 really ran
        assert "fp16_vs_fp32" not in row  # fp16 is CUDA-only
        assert row["preprocess_on"] == "cpu" and row["labels_device_vs_cpu_preprocessing"] == 1.0
    assert "### demo (tiny)" in gpu.render(
        {
            "machine_name": "m",
            "date": "d",
            "args": "",
            "total_seconds": 1,
            "machine": {},
            "checks": {"c": result},
        }
    )
