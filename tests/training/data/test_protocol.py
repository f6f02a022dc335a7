"""Both data sets implement `training.data.protocol.TrainingDataset`: file points and labels agree
with the files and with the samples, submission names follow each data set's layout, and bad point
files surface through the data sets as errors that name the file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seg3d.config import ModelConfig, load_config
from seg3d.model import Encoder3D
from seg3d.points import PointsError
from training.data.nuscenes import NuScenesDataset, NuScenesOptions
from training.data.protocol import EvaluationDataset, TrainingDataset
from training.data.semantickitti import SemanticKittiDataset, SemanticKittiLabelMap
from training.evaluation import evaluate_dataset

MINI = NuScenesOptions(version="v1.0-mini", split="mini_val", cameras="none")


def _kitti(root: Path, config: ModelConfig | None = None) -> SemanticKittiDataset:
    label_map = SemanticKittiLabelMap.from_yaml(root / "semantic-kitti.yaml")
    config = config or load_config("semantickitti_small")
    return SemanticKittiDataset(root, label_map, config, split=None, sequences=(0,))


def _check_protocol(dataset: EvaluationDataset, index: int) -> None:
    """file_points and read_labels agree with the sample: its points are the file's rows it names."""
    assert isinstance(dataset, TrainingDataset) and isinstance(dataset, EvaluationDataset)
    sample = dataset[index]
    xyz = dataset.file_points(index)
    assert xyz.shape == (sample.num_file_points, 3) and xyz.dtype == np.float32
    np.testing.assert_array_equal(xyz[sample.indices.numpy()], sample.points[:, :3].numpy())
    labels = dataset.read_labels(index, sample.num_file_points)
    assert labels.shape == (sample.num_file_points,) and labels.dtype == torch.int64
    assert sample.labels is not None and torch.equal(labels[sample.indices], sample.labels)


def test_nuscenes_protocol_on_the_synthetic_set(synthetic_nuscenes: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=str(synthetic_nuscenes), verbose=False)
    dataset = NuScenesDataset(synthetic_nuscenes, load_config("tiny"), MINI, nusc=nusc)
    _check_protocol(dataset, 0)
    raw = np.fromfile(dataset.samples[0].lidar_path, dtype="<f4").reshape(-1, 5)
    np.testing.assert_array_equal(dataset.file_points(0), raw[:, :3])
    names = [dataset.submission_name(i) for i in range(len(dataset))]
    assert len(set(names)) == len(dataset)
    for name in names:  # <LIDAR_TOP sample_data token>_lidarseg.bin, as the lidarseg table names it
        token = name.removesuffix("_lidarseg.bin")
        assert name.endswith("_lidarseg.bin") and nusc.get("sample_data", token)["channel"] == "LIDAR_TOP"
        assert nusc.get("lidarseg", token)["filename"].endswith(name)
    unlabelled = NuScenesDataset(synthetic_nuscenes, load_config("tiny"), MINI, labelled=False, nusc=nusc)
    assert unlabelled[0].labels is None
    with pytest.raises(FileNotFoundError, match="opened unlabelled"):
        unlabelled.read_labels(0, raw.shape[0])


def test_semantickitti_protocol_on_the_real_scans(semantickitti_root: Path) -> None:
    dataset = _kitti(semantickitti_root)
    _check_protocol(dataset, 1)
    raw = np.fromfile(semantickitti_root / "sequences/00/velodyne/000001.bin", dtype="<f4").reshape(-1, 4)
    np.testing.assert_array_equal(dataset.file_points(1), raw[:, :3])
    raw_labels = np.fromfile(semantickitti_root / "sequences/00/labels/000001.label", dtype="<u4")
    expected = dataset.label_map.to_train(raw_labels).astype(np.int64)
    np.testing.assert_array_equal(dataset.read_labels(1, raw.shape[0]).numpy(), expected)
    assert [dataset.submission_name(i) for i in range(2)] == [
        "sequences/00/predictions/000000.label",
        "sequences/00/predictions/000001.label",
    ]
    with pytest.raises(ValueError, match=rf"000001\.label has {raw.shape[0]} labels for 5 points"):
        dataset.read_labels(1, 5)


def test_semantickitti_full_scan_evaluation(semantickitti_root: Path) -> None:
    """Full-scan evaluation needs only the protocol, so it works on SemanticKITTI too."""
    config = load_config("semantickitti_small")
    encoder = Encoder3D(config, backend="table")
    encoder.present_taps = True
    evaluation = evaluate_dataset(encoder, _kitti(semantickitti_root), config, max_samples=1, full_scan=True)
    assert evaluation.full_scan is not None and 0 <= evaluation.full_scan.miou <= 1
    assert 0 <= evaluation.crop.miou <= 1


def test_nan_point_file_is_named_by_the_nuscenes_set(synthetic_nuscenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_nuscenes, root, symlinks=True)
    dataset = NuScenesDataset(root, load_config("tiny"), MINI)
    path = dataset.samples[0].lidar_path
    values = np.fromfile(path, dtype="<f4").reshape(-1, 5)
    values[3, 1] = np.nan
    values.tofile(path)
    for read in (dataset.__getitem__, dataset.file_points):
        with pytest.raises(PointsError, match=rf"{re.escape(path.name)}.*NaN or Inf") as error:
            read(0)
        assert error.value.code == "non_finite"


def test_bad_point_files_are_named_by_the_semantickitti_set(semantickitti_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    shutil.copytree(semantickitti_root, root)
    path = root / "sequences/00/velodyne/000000.bin"
    values = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    values[7, 3] = 1e38  # finite remission that overflows float32 once scaled by 255
    values.tofile(path)
    small = load_config("semantickitti_small")
    scaled = small.model_copy(update={"input": small.input.model_copy(update={"intensity_max": 255.0})})
    with pytest.raises(PointsError, match=rf"{re.escape(path.name)}.*overflows float32") as error:
        _kitti(root, scaled)[0]
    assert error.value.code == "intensity_overflow"
    values[7, 3] = np.inf
    values.tofile(path)
    with pytest.raises(PointsError, match=rf"{re.escape(path.name)}.*NaN or Inf") as error:
        _kitti(root).file_points(0)
    assert error.value.code == "non_finite"
    dataset = _kitti(root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(path.name)):
        dataset[0]
