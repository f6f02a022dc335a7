"""SemanticKITTI loading on the real scans in ../shared/data/real."""

from __future__ import annotations

import math
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from seg3d.config import load_config
from seg3d.model import Encoder3D
from seg3d.scans import real_data_dir
from training.data.augment import Augment3D
from training.data.batch import collate
from training.data.semantickitti import SemanticKittiDataset, SemanticKittiLabelMap

REAL = real_data_dir()
pytestmark = pytest.mark.skipif(REAL is None, reason="real scans not found")


@pytest.fixture(scope="module")
def label_map() -> SemanticKittiLabelMap:
    return SemanticKittiLabelMap.from_yaml(REAL / "semantickitti" / "semantic-kitti.yaml")


def test_label_map_folds_moving_classes_and_unknown_ids(label_map: SemanticKittiLabelMap) -> None:
    assert len(label_map.class_names) == 20 and label_map.class_names[:2] == ("unlabeled", "car")
    assert label_map.class_names == load_config("semantickitti_small").class_names
    raw = np.array(
        [0, 10, 252, 40, 99, 1234, 10 | (7 << 16)], dtype=np.uint32
    )  # 252 moving-car, instance bits
    assert label_map.to_train(raw).tolist() == [0, 1, 1, 9, 0, 0, 1]
    assert label_map.splits["valid"] == (8,)


def test_real_scans_load_cropped_with_labels(semantickitti_root: Path, label_map) -> None:
    config = load_config("semantickitti_small")
    dataset = SemanticKittiDataset(semantickitti_root, label_map, config, split=None, sequences=(0,))
    assert len(dataset) == 2
    sample = dataset[0]
    raw = np.fromfile(semantickitti_root / "sequences/00/velodyne/000000.bin", dtype="<f4").reshape(-1, 4)
    assert sample.num_file_points == raw.shape[0] == 124_668
    assert sample.points.dtype == torch.float32 and sample.points.shape[1] == 4
    assert sample.labels.shape == (sample.points.shape[0],) and sample.labels.dtype == torch.int64
    # crop is strict and keeps the file row of every point
    np.testing.assert_array_equal(sample.points.numpy(), raw[sample.indices.numpy()])
    p = sample.points
    for axis, (lo, hi) in enumerate(config.grid.point_range):
        assert bool(((p[:, axis] > lo) & (p[:, axis] < hi)).all())
    # a real street scene: road, car and building are all there, nothing above class 19
    present = set(torch.unique(sample.labels).tolist())
    assert {1, 9, 13} <= present and max(present) <= 19


def test_augmentation_is_seeded_and_rigid_in_xy(semantickitti_root: Path, label_map) -> None:
    config = load_config("semantickitti_small")
    augment = Augment3D(scale_range=(1.0, 1.0), translate_std=0.0)
    plain = SemanticKittiDataset(semantickitti_root, label_map, config, split=None, sequences=(0,))
    moved = SemanticKittiDataset(
        semantickitti_root, label_map, config, split=None, sequences=(0,), augment=augment, seed=3
    )
    a, b = plain[1].points, moved[1].points
    torch.testing.assert_close(
        b[:, :2].norm(dim=1), a[:, :2].norm(dim=1), atol=1e-4, rtol=0
    )  # rotation/flip only
    torch.testing.assert_close(b[:, 2:], a[:, 2:])
    assert not torch.allclose(a[:, :2], b[:, :2])
    torch.testing.assert_close(moved[1].points, b)  # same seed, same cloud
    moved.set_epoch(1)
    assert not torch.allclose(moved[1].points, b)
    g = torch.Generator().manual_seed(0)
    scaled = Augment3D(rotate=False, flip=False, scale_range=(1.05, 1.05), translate_std=0.0)(a, g)
    torch.testing.assert_close(scaled[:, :2], a[:, :2] * 1.05)
    assert math.isclose(float(scaled[:, 2].sum()), float(a[:, 2].sum()), rel_tol=1e-6)


def test_batches_are_well_formed_and_run_through_the_encoder(semantickitti_root: Path, label_map) -> None:
    config = load_config("semantickitti_small")
    dataset = SemanticKittiDataset(
        semantickitti_root, label_map, config, split=None, sequences=(0,), augment=Augment3D()
    )
    loader = DataLoader(dataset, batch_size=2, collate_fn=partial(collate, config=config))
    batch = next(iter(loader))
    assert batch.names == ["00/000000", "00/000001"]
    assert batch.sizes == [dataset[0].points.shape[0], dataset[1].points.shape[0]]
    assert batch.inputs.batch_size == 2 and batch.labels.shape == batch.batch.shape
    assert set(batch.inputs.voxels[1].coords[:, 0].tolist()) == {0, 1}
    model = Encoder3D(config, "table").eval()
    model.present_taps = True
    with torch.no_grad():
        logits = model(batch.inputs)
    assert logits.shape == (batch.points.shape[0], 20) and bool(torch.isfinite(logits).all())


def test_bad_data_names_the_file(tmp_path: Path, semantickitti_root: Path, label_map) -> None:
    config = load_config("semantickitti_small")
    # the real sequence 00 has a scan (000003) without a label file
    with pytest.raises(FileNotFoundError, match=r"000003\.label"):
        SemanticKittiDataset(REAL / "semantickitti", label_map, config, split=None, sequences=(0,))
    broken = tmp_path / "sequences" / "00"
    shutil.copytree(semantickitti_root / "sequences" / "00", broken)
    (broken / "velodyne" / "000000.bin").write_bytes(b"\x00" * 30)
    dataset = SemanticKittiDataset(tmp_path, label_map, config, split=None, sequences=(0,))
    with pytest.raises(ValueError, match=r"000000\.bin: 30 bytes is not a multiple of 16"):
        dataset[0]
    np.zeros(5, dtype="<u4").tofile(broken / "labels" / "000001.label")
    with pytest.raises(ValueError, match=r"000001\.label has 5 labels for 124605 points"):
        dataset[1]
    with pytest.raises(ValueError, match="use a SemanticKITTI config"):
        SemanticKittiDataset(semantickitti_root, label_map, load_config("tiny"), split=None, sequences=(0,))
    with pytest.raises(FileNotFoundError, match="label config not found"):
        SemanticKittiLabelMap.from_yaml(tmp_path / "none.yaml")


def test_class_weights_follow_the_content_table(label_map: SemanticKittiLabelMap, tmp_path: Path) -> None:
    data = yaml.safe_load((REAL / "semantickitti" / "semantic-kitti.yaml").read_text())
    content = data["content"]
    # car gathers raw 10 (car) and 252 (moving-car); road gathers 40 (road) and 60 (lane-marking)
    f_car, f_road = content[10] + content[252], content[40] + content[60]
    assert [raw for raw, train in data["learning_map"].items() if train in (1, 9)] == [10, 40, 60, 252]
    f_max = label_map.frequencies[1:].max()
    weights = label_map.class_weights()
    assert weights.shape == (20,) and weights.dtype == np.float32 and weights[0] == 0
    assert math.isclose(weights[1], (f_max / f_car) ** (1 / 3), rel_tol=1e-5)
    assert math.isclose(weights[9], (f_max / f_road) ** (1 / 3), rel_tol=1e-5)
    assert weights[1:].min() == 1.0  # the most frequent class (vegetation)
    order = np.argsort(label_map.frequencies[1:])
    assert np.all(np.diff(weights[1:][order]) <= 0)  # rarer → heavier
    assert math.isclose(float(label_map.frequencies.sum()), 1.0, abs_tol=1e-4)

    del data["content"]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="no `content` table"):
        SemanticKittiLabelMap.from_yaml(tmp_path / "plain.yaml").class_weights()
