"""Build the training and validation data sets a `TrainConfig` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig
from training.data.augment import Augment3D, IntensityAugment
from training.data.nuscenes import NuScenesDataset
from training.data.semantickitti import SemanticKittiDataset, SemanticKittiLabelMap

__all__ = ["TrainingSet", "build_class_weights", "build_dataset"]

#: The data sets a config can name; both implement `training.data.protocol.TrainingDataset`.
TrainingSet = NuScenesDataset | SemanticKittiDataset


def build_dataset(
    config: TrainConfig, root: str | Path, split: str, training: bool, nusc: Any = None
) -> TrainingSet:
    """The data set of ``split`` (``train`` uses the config's training split); both kinds implement
    `training.data.protocol.TrainingDataset`.

    For nuScenes ``split`` is a devkit split name; ``"train"`` means the config's
    ``data.nuscenes.split``. Mode ``3d`` reads no image. ``training`` turns on the augmentation
    unless the config's ``data.augment`` is off.
    """
    data = config.data
    augment = training and data.augment
    jitter = IntensityAugment(
        data.intensity_dropout,
        data.intensity_scale,
        config.model.input.intensity_max,
        data.intensity_class_level,
    )
    intensity = jitter if jitter.active else None  # off: no per-sample copy of the cloud
    if data.dataset == "nuscenes":
        options = data.nuscenes
        if split != "train":
            options = options.model_copy(update={"split": split})
        if config.branch.mode == "3d":
            options = options.model_copy(update={"cameras": "none"})
        return NuScenesDataset(
            root,
            config.model,
            options,
            training=augment,
            labelled=split != "test",
            seed=config.loop.seed,
            nusc=nusc,
            intensity=intensity,
        )
    kitti = data.semantickitti
    label_path = Path(kitti.label_config)
    if not label_path.is_absolute():
        label_path = Path(root) / label_path
    sequences = kitti.train_sequences if split == "train" else kitti.val_sequences
    return SemanticKittiDataset(
        root,
        SemanticKittiLabelMap.from_yaml(label_path),
        config.model,
        split=None if sequences else ("train" if split == "train" else "valid"),
        sequences=sequences,
        augment=Augment3D() if augment else None,
        seed=config.loop.seed,
        intensity=intensity,
    )


def build_class_weights(config: TrainConfig, train_set: TrainingSet) -> torch.Tensor | None:
    """Cross-entropy class weights ``(classes,)`` the config asks for, or None (plain CE).

    Only SemanticKITTI is weighted (``data.semantickitti.class_weighted``), as in 2DPASS, by the label
    map the training set already read (which matches the model's classes); nuScenes trains with
    plain cross-entropy.
    """
    if not isinstance(train_set, SemanticKittiDataset) or not config.data.semantickitti.class_weighted:
        return None
    return torch.from_numpy(train_set.label_map.class_weights())
