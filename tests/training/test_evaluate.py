"""training.evaluate on a checkpoint trained for a few steps: IoU tables, JSON, TTA, the submission
layout; resuming with another config is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from seg3d.checkpoint import load_checkpoint
from tests.helpers import mini_3d_config
from training.config import TrainConfig
from training.evaluate import main as evaluate
from training.loop import train

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")

CONFIG = mini_3d_config(
    "eval_test",
    optim={"lr": 0.05},
    schedule={"unit": "step", "t_max": 4},
    # 40 mini_train samples (8 scenes × 5 keyframes): batch 6 gives 6 steps, the last 4 samples dropped
    loop={"epochs": 1, "batch_size": 6, "checkpoint_every": 100, "max_val_samples": 6},
)


@pytest.fixture(scope="module")
def run(synthetic_nuscenes: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig.model_validate(CONFIG), synthetic_nuscenes, out, progress=False)
    return out


def test_one_epoch_validates_and_writes_best(run: Path) -> None:
    best = load_checkpoint(run / "best.pt")
    state = best.training["state"]
    assert state["epoch"] == 1 and state["step"] == 6  # 40 mini_train samples // batch 6
    assert len(state["history"]) == 1 and 0 <= state["history"][0]["miou"] <= 1


def test_evaluate_prints_tables_and_writes_json_and_submission(
    run: Path, synthetic_nuscenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures, submission = tmp_path / "m.json", tmp_path / "submission"
    code = evaluate([
        "--checkpoint", str(run / "best.pt"), "--data-root", str(synthetic_nuscenes), "--split", "mini_val",
        "--json", str(figures), "--submission", str(submission), "--tta", "2", "--max-samples", "6",
    ])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "### Crop" in text and "### Full scan" in text and "| mIoU interest |" in text
    data = json.loads(figures.read_text())
    assert set(data["crop"]["iou"]) == set(CONFIG_CLASSES) and data["votes"] == 2
    assert 0 <= data["full_scan"]["miou"] <= 1 and "miou_interest" in data["crop"]
    meta = json.loads((submission / "mini_val" / "submission.json").read_text())["meta"]
    assert meta["use_lidar"] and not meta["use_camera"]
    files = sorted((submission / "lidarseg" / "mini_val").glob("*_lidarseg.bin"))
    assert len(files) == 6  # the first 6 of 2 val scenes × 5 keyframes (--max-samples 6)
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=str(synthetic_nuscenes), verbose=False)
    for file in files:
        token = file.name.removesuffix("_lidarseg.bin")
        points = np.fromfile(synthetic_nuscenes / nusc.get("sample_data", token)["filename"], dtype="<f4")
        labels = np.fromfile(file, dtype=np.uint8)
        assert labels.shape[0] == points.shape[0] // 5  # one label per file point, crop or not
        assert labels.min() >= 1 and labels.max() <= 16


CONFIG_CLASSES = [
    "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian", "traffic_cone",
    "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade", "vegetation",
]  # fmt: skip


def test_resume_with_another_config_is_refused(run: Path, synthetic_nuscenes: Path, tmp_path: Path) -> None:
    other = dict(CONFIG, model="semantickitti_small")
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    with pytest.raises(ValueError, match="trained with another model or mode"):
        train(TrainConfig.model_validate(dict(CONFIG, branch={"mode": "2ddata"}, data={
            **CONFIG["data"], "nuscenes": {**CONFIG["data"]["nuscenes"], "cameras": "random"}})),
            synthetic_nuscenes, run, resume=True, progress=False)  # fmt: skip


def test_bad_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert evaluate(["--checkpoint", str(bad), "--data-root", str(tmp_path)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_the_default_split_is_the_checkpoints_validation_split(
    run: Path, synthetic_nuscenes: Path, tmp_path: Path
) -> None:
    """The checkpoint was trained on v1.0-mini (val_split mini_val): without --split, evaluate reads
    mini_val, not nuScenes' val (which v1.0-mini does not have)."""
    figures = tmp_path / "m.json"
    code = evaluate([
        "--checkpoint", str(run / "best.pt"), "--data-root", str(synthetic_nuscenes),
        "--max-samples", "2", "--json", str(figures),
    ])  # fmt: skip
    assert code == 0
    assert json.loads(figures.read_text())["split"] == "mini_val"


def test_a_root_of_another_version_says_which_the_checkpoint_needs(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    (root / "v1.0-trainval").mkdir(parents=True)
    assert evaluate(["--checkpoint", str(run / "best.pt"), "--data-root", str(root)]) == 2
    error = capsys.readouterr().err
    assert f"Version folder(s) found in {root}: v1.0-trainval" in error
    assert f"python -m training.data.synthetic --out {root} --version v1.0-mini --overwrite" in error
    assert "was trained on nuScenes v1.0-mini" in error and "(mini_train, mini_val)" in error
