"""Predictions written by python -m serve.label score the same with nuscenes-devkit's LidarSegEval as
with training.evaluate, for the same model and split; and the lidarseg-layout predictions root is a
data set this project's own loader reads, with the model's labels as its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import export.to_trt as to_trt
from seg3d.classes import nuscenes_train_id
from serve.label.cli import main as label
from tests.helpers import mini_3d_config
from training.config import TrainConfig
from training.datasets import build_dataset
from training.evaluate import main as evaluate
from training.loop import train

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")

CONFIG = mini_3d_config(
    "label_eval_test",
    optim={"lr": 0.05},
    schedule={"unit": "step", "t_max": 6},
    loop={"epochs": 1, "batch_size": 6, "checkpoint_every": 100, "max_val_samples": 2},
)


@pytest.fixture(scope="module")
def exported(synthetic_nuscenes: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint trained for a few steps (so that it predicts several classes) and its export."""
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig.model_validate(CONFIG), synthetic_nuscenes, run, progress=False)
    out = tmp_path_factory.mktemp("export") / "model"
    assert to_trt.main(["--checkpoint", str(run / "best.pt"), "--out", str(out), "--skip-parity"]) == 0
    return run / "best.pt", out


def test_lidarsegeval_on_the_jobs_submission_equals_training_evaluate(
    exported: tuple[Path, Path], synthetic_nuscenes: Path, tmp_path: Path
) -> None:
    from nuscenes.eval.lidarseg.evaluate import LidarSegEval
    from nuscenes.nuscenes import NuScenes

    checkpoint, model = exported
    figures = tmp_path / "figures.json"
    data = ["--split", "mini_val"]
    assert (
        evaluate(
            [
                "--checkpoint",
                str(checkpoint),
                "--data-root",
                str(synthetic_nuscenes),
                *data,
                "--json",
                str(figures),
            ]
        )
        == 0
    )
    full_scan = json.loads(figures.read_text())["full_scan"]
    out = tmp_path / "submission"
    args = ["--model", str(model), "--out", str(out), "--nuscenes", str(synthetic_nuscenes), *data]
    assert label([*args, "--layout", "submission", "--backend", "torch", "--no-progress"]) == 0
    assert json.loads((out / "mini_val" / "submission.json").read_text())["meta"]["use_lidar"]
    nusc = NuScenes("v1.0-mini", str(synthetic_nuscenes), verbose=False)
    devkit = LidarSegEval(nusc, str(out), "mini_val").evaluate()
    assert len({round(v, 6) for v in full_scan["iou"].values() if v == v}) > 2, (
        "the model predicts a few classes"
    )
    assert devkit["miou"] == pytest.approx(full_scan["miou"], abs=1e-6)
    for name, iou in full_scan["iou"].items():
        if iou == iou:  # NaN: a class neither in the truth nor predicted, left out of both means
            assert devkit["iou_per_class"][name] == pytest.approx(iou, abs=1e-6), name


def test_the_predictions_root_is_a_data_set_the_training_loader_reads(
    exported: tuple[Path, Path], synthetic_nuscenes: Path, tmp_path: Path
) -> None:
    _, model = exported
    out = tmp_path / "preds"
    args = [
        "--model",
        str(model),
        "--out",
        str(out),
        "--nuscenes",
        str(synthetic_nuscenes),
        "--split",
        "mini_val",
    ]
    assert label([*args, "--no-progress"]) == 0
    config = TrainConfig.model_validate(CONFIG)
    predicted = build_dataset(config, out, "mini_val", training=False)
    truth = build_dataset(config, synthetic_nuscenes, "mini_val", training=False)
    assert len(predicted) == len(truth) == 10
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(out), verbose=False)
    to_train = np.asarray([nuscenes_train_id(nusc.lidarseg_idx2name_mapping[i]) for i in range(32)])
    for index in (0, len(predicted) - 1):
        sample, reference = predicted[index], truth[index]
        np.testing.assert_array_equal(sample.points.numpy(), reference.points.numpy())  # the same sweep
        token = nusc.get("sample", sample.name)["data"]["LIDAR_TOP"]
        written = np.fromfile(out / nusc.get("lidarseg", token)["filename"], dtype=np.uint8)
        # the loader's labels are the job's labels, read back in training classes
        np.testing.assert_array_equal(sample.labels.numpy(), to_train[written][sample.indices.numpy()])
        assert not np.array_equal(sample.labels.numpy(), reference.labels.numpy()), (
            "the model's, not the truth"
        )
