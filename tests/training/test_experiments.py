"""``python -m training.experiments`` on a generated dataset: three modes, one budget, one report;
a second call reuses the finished runs instead of retraining."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from training.config import TRAINING_CONFIG_DIR
from training.experiments import MODES, main

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")


def test_three_modes_one_report(synthetic_nuscenes: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((TRAINING_CONFIG_DIR / "demo.yaml").read_text())
    config["data"]["nuscenes"].update(version="v1.0-mini", split="mini_train")
    config["data"].update(val_split="mini_val", num_workers=0)
    config["schedule"]["t_max"] = 2
    config["loop"].update(val_every=1000, max_val_samples=2)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    work, report = tmp_path / "work", tmp_path / "docs" / "experiments.md"
    args = ["--config", str(path), "--data-root", str(synthetic_nuscenes), "--work", str(work)]
    assert main([*args, "--max-steps", "2", "--out", str(report)]) == 0

    text = report.read_text()
    for name in ("car", "pedestrian", "vegetation", "mIoU, interest classes"):
        row = next(line for line in text.splitlines() if line.lstrip("| *").startswith(name))
        assert len(re.findall(r"\d+\.\d|—", row)) == len(MODES), row
    assert "| car * |" in text and "| vegetation |" in text  # interest classes are marked
    params = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if re.match(r"\| (3d|2dpass|2ddata) \|", line)
    }
    assert params["3d"][1] == "0" and params["2ddata"][1] != "0" and params["2dpass"][2] != "0"
    assert params["3d"][0] == params["2dpass"][0] == params["2ddata"][0]  # one 3D encoder
    assert all(p[3] == "2" for p in params.values())  # same budget

    stamps = {m: (work / m / "best.pt").stat().st_mtime_ns for m in MODES}
    assert main([*args, "--max-steps", "2", "--out", str(report)]) == 0
    assert {m: (work / m / "best.pt").stat().st_mtime_ns for m in MODES} == stamps
