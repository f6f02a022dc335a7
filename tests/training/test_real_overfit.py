"""Acceptance on real LiDAR: `semantickitti_3d.yaml` at a small width overfits the two labelled real
SemanticKITTI scans of ../shared/data/real to ≥ 90 % point accuracy, through the real CLIs
(``training.train`` then ``training.evaluate``). Only the width, the step budget and the schedule
change from the bundled config; augmentation is off so the network is scored on the points it saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seg3d.config import load_config
from training.config import TRAINING_CONFIG_DIR

WIDTH = 16
STEPS = 100


@pytest.mark.slow
def test_semantickitti_3d_overfits_the_real_scans(semantickitti_root: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((TRAINING_CONFIG_DIR / "semantickitti_3d.yaml").read_text())
    model = load_config(config["model"]).model_dump(mode="json")
    model["encoder"]["hidden"] = WIDTH
    config["model"] = model
    config["data"]["semantickitti"].update(train_sequences=[0], val_sequences=[0])
    config["data"].update(augment=False, num_workers=0)
    config["schedule"] = {"unit": "step", "t_max": STEPS}
    config["loop"].update(batch_size=2, epochs=STEPS, val_every=STEPS, checkpoint_every=STEPS)
    path = tmp_path / "overfit.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(min(2, os.cpu_count() or 1))}
    root = ["--data-root", str(semantickitti_root)]
    train = ["--config", str(path), *root, "--out", str(out), "--max-steps", str(STEPS), "--no-progress"]
    subprocess.run([sys.executable, "-m", "training.train", *train], env=env, check=True, timeout=1200)

    metrics = tmp_path / "metrics.json"
    evaluate = ["--checkpoint", str(out / "last.pt"), *root, "--split", "val", "--json", str(metrics)]
    subprocess.run([sys.executable, "-m", "training.evaluate", *evaluate], env=env, check=True, timeout=600)
    figures = json.loads(metrics.read_text())
    assert figures["crop"]["accuracy"] >= 0.90, figures["crop"]
    # the loss went down on real data, not just the accuracy of the dominant classes
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
