"""bench/gpu.py imports and explains itself on CPU, and says it needs CUDA (exit 2) without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
