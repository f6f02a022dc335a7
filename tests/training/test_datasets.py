"""`build_dataset` and `build_class_weights` read what the training config says: the augmentation
switch, the splits, the class weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TrainConfig, load_train_config
from training.data.semantickitti import SemanticKittiLabelMap
from training.datasets import build_class_weights, build_dataset


def _with(config: TrainConfig, **data: object) -> TrainConfig:
    return config.model_copy(update={"data": config.data.model_copy(update=data)})


@pytest.fixture(scope="module")
def kitti(semantickitti_root: Path) -> TrainConfig:
    base = load_train_config("semantickitti_3d")
    options = base.data.semantickitti.model_copy(update={"train_sequences": (0,), "val_sequences": (0,)})
    return _with(base, semantickitti=options, num_workers=0)


def test_augment_switch_semantickitti(kitti: TrainConfig, semantickitti_root: Path) -> None:
    evaluation = build_dataset(kitti, semantickitti_root, "val", training=False)[0]
    augmented = build_dataset(kitti, semantickitti_root, "train", training=True)[0]
    plain = build_dataset(_with(kitti, augment=False), semantickitti_root, "train", training=True)[0]
    torch.testing.assert_close(plain.points, evaluation.points)
    assert augmented.points.shape == evaluation.points.shape
    assert not torch.allclose(augmented.points[:, :3], evaluation.points[:, :3])
    # The intensity switch changes the intensity column alone and leaves the 3D draws as they were.
    dark = build_dataset(_with(kitti, intensity_dropout=1.0), semantickitti_root, "train", training=True)[0]
    torch.testing.assert_close(dark.points[:, :3], augmented.points[:, :3])
    assert bool((dark.points[:, 3] == 0).all()) and bool((augmented.points[:, 3] > 0).any())
    with pytest.raises(ValueError, match="0 <= low <= high"):
        TrainConfig.model_validate(
            {**kitti.model_dump(), "data": {**kitti.data.model_dump(), "intensity_scale": (2, 1)}}
        )
    # The per-class levels reach the dataset through the labels: one factor per class of the sample.
    per_class = build_dataset(
        _with(kitti, intensity_class_level=(0.01, 0.8)), semantickitti_root, "train", training=True
    )[0]
    torch.testing.assert_close(per_class.points[:, :3], augmented.points[:, :3])
    assert per_class.labels is not None
    top = kitti.model.input.intensity_max  # remission: 0-1
    lit = (augmented.points[:, 3] > 0.01 * top) & (per_class.points[:, 3] < top)  # lit and unclipped
    ratios = [
        per_class.points[lit & (per_class.labels == c), 3]
        / augmented.points[lit & (per_class.labels == c), 3]
        for c in per_class.labels.unique().tolist()
        if int((lit & (per_class.labels == c)).sum()) > 5
    ]
    assert len(ratios) >= 2
    assert max(float(r.std()) for r in ratios) < 1e-3 < float(torch.stack([r.mean() for r in ratios]).std())
    with pytest.raises(ValueError, match="0 < low <= high <= 1"):
        TrainConfig.model_validate(
            {**kitti.model_dump(), "data": {**kitti.data.model_dump(), "intensity_class_level": (0.1, 2)}}
        )


def test_augment_switch_nuscenes(synthetic_nuscenes: Path) -> None:
    demo = load_train_config("demo")
    # the demo config with its image branch on (mode 2ddata), so that the camera path is checked too
    demo = demo.model_copy(update={"branch": demo.branch.model_copy(update={"mode": "2ddata"})})
    options = demo.data.nuscenes.model_copy(update={"version": "v1.0-mini", "split": "mini_train"})
    config = _with(demo, nuscenes=options)
    evaluation = build_dataset(config, synthetic_nuscenes, "mini_train", training=False)[0]
    augmented_set = build_dataset(config, synthetic_nuscenes, "train", training=True)
    augmented = augmented_set[0]
    plain = build_dataset(_with(config, augment=False), synthetic_nuscenes, "train", training=True)[0]
    # no dropout, no 3D augmentation, no image jitter or flip: the evaluation sample exactly
    torch.testing.assert_close(plain.points, evaluation.points)
    torch.testing.assert_close(plain.indices, evaluation.indices)
    torch.testing.assert_close(plain.views[0].image, evaluation.views[0].image)
    unchanged = augmented.points.shape == evaluation.points.shape and torch.allclose(
        augmented.points, evaluation.points
    )
    assert not unchanged
    assert build_class_weights(config, augmented_set) is None  # nuScenes: plain CE


def test_class_weights_only_where_asked(kitti: TrainConfig, semantickitti_root: Path) -> None:
    train_set = build_dataset(kitti, semantickitti_root, "train", training=True)
    weights = build_class_weights(kitti, train_set)
    expected = SemanticKittiLabelMap.from_yaml(semantickitti_root / "semantic-kitti.yaml").class_weights()
    assert weights is not None and weights.dtype == torch.float32
    np.testing.assert_array_equal(weights.numpy(), expected)
    unweighted = kitti.data.semantickitti.model_copy(update={"class_weighted": False})
    assert build_class_weights(_with(kitti, semantickitti=unweighted), train_set) is None
