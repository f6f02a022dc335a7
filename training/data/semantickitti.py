"""SemanticKITTI for 3D-only training and evaluation.

Layout: ``<root>/sequences/<NN>/velodyne/<frame>.bin`` (4 float32: x, y, z, remission 0–1) and
``<root>/sequences/<NN>/labels/<frame>.label`` (uint32: semantic id in the low 16 bits, instance id
in the high 16). Raw semantic ids are mapped to the 19 training classes + ignore (0) with the
``learning_map`` of the dataset's ``semantic-kitti.yaml`` (moving classes fold into their static
ones); the splits come from the same file. Scans are read by `seg3d.points.read_points` (remission
converted to the model's intensity scale). Points are cropped to the model's range (strict, as
2DPASS does for training and evaluation) and keep their row in the file. `SemanticKittiDataset`
implements `training.data.protocol.TrainingDataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from seg3d.config import ModelConfig
from seg3d.points import PointFormat, read_points
from seg3d.preprocess import crop_mask
from training.data.augment import Augment3D, IntensityAugment
from training.data.sample import LidarSample

__all__ = ["SemanticKittiDataset", "SemanticKittiLabelMap"]


@dataclass(frozen=True)
class SemanticKittiLabelMap:
    """Raw semantic id → training id, and the training classes' names, from ``semantic-kitti.yaml``."""

    lookup: np.ndarray  # (max raw id + 1,) uint8; ids absent from learning_map map to 0 (ignore)
    class_names: tuple[str, ...]
    splits: dict[str, tuple[int, ...]]
    # Share of all points per training class (index 0: ignored points), summed over the raw ids of the
    # yaml's ``content`` table through learning_map; None when the yaml has no ``content``.
    frequencies: np.ndarray | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SemanticKittiLabelMap:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SemanticKITTI label config not found: {path}")
        data = yaml.safe_load(path.read_text())
        try:
            learning_map = {int(k): int(v) for k, v in data["learning_map"].items()}
            inverse = {int(k): int(v) for k, v in data["learning_map_inv"].items()}
            names = {int(k): str(v) for k, v in data["labels"].items()}
            splits = {str(k): tuple(int(s) for s in v) for k, v in data["split"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a semantic-kitti.yaml label config ({exc})") from exc
        lookup = np.zeros(max(learning_map) + 1, dtype=np.uint8)
        for raw, train in learning_map.items():
            lookup[raw] = train
        count = max(inverse) + 1
        class_names = tuple(names[inverse[i]] if i else "unlabeled" for i in range(count))
        frequencies = None
        if "content" in data:
            frequencies = np.zeros(count, dtype=np.float64)
            for raw, share in data["content"].items():
                frequencies[learning_map.get(int(raw), 0)] += float(share)
        return cls(lookup, class_names, splits, frequencies)

    def class_weights(self) -> np.ndarray:
        """Cross-entropy weights ``(classes,)`` float32: ``(max_k f_k / f_c)^(1/3)``, 2DPASS's rule.

        ``f_c`` is the class's share of points (`frequencies`); the ignore class gets 0 and a class
        with no points the largest weight. The cube root keeps rare classes (bicyclist, 0.02 % of
        points) from weighing a thousand times the road.

        Raises:
            ValueError: the label config has no ``content`` table.
        """
        if self.frequencies is None:
            raise ValueError("the SemanticKITTI label config has no `content` table to weight classes by")
        shares = self.frequencies[1:]
        present = shares > 0
        if not present.any():
            raise ValueError("the `content` table gives no point to any training class")
        weights = np.zeros(len(self.class_names), dtype=np.float64)
        weights[1:][present] = np.cbrt(shares[present].max() / shares[present])
        weights[1:][~present] = weights[1:][present].max()
        return weights.astype(np.float32)

    def to_train(self, raw_labels: np.ndarray) -> np.ndarray:
        """Training ids ``(N,)`` uint8 of raw ``.label`` values (instance bits dropped)."""
        semantic = (raw_labels & 0xFFFF).astype(np.int64)
        out = np.zeros(semantic.shape, dtype=np.uint8)
        known = semantic < self.lookup.shape[0]
        out[known] = self.lookup[semantic[known]]
        return out


class SemanticKittiDataset(Dataset[LidarSample]):
    """Scans of some sequences (or of a split), cropped, optionally augmented.

    Args:
        root: the folder holding ``sequences/``.
        label_map: from the dataset's ``semantic-kitti.yaml``.
        config: the model config (crop range, intensity scale; its classes must be the label map's).
        split: ``train``, ``valid`` or ``test`` from the label config, or None with ``sequences``.
        sequences: explicit sequence numbers instead of a split.
        labelled: read labels (every scan must have one) or not (test split, inference).
        augment: 3D augmentation for training; None for evaluation.
        intensity: intensity randomisation after ``augment`` (only with it).
        seed: seed of the augmentation stream (sample ``i`` of epoch ``e`` uses ``seed + e·len + i``).

    Raises:
        FileNotFoundError: a missing sequence folder or label file, named.
        ValueError: a config whose classes differ from the label map.
    """

    def __init__(
        self,
        root: str | Path,
        label_map: SemanticKittiLabelMap,
        config: ModelConfig,
        split: str | None = "train",
        sequences: tuple[int, ...] | None = None,
        labelled: bool = True,
        augment: Augment3D | None = None,
        seed: int = 0,
        intensity: IntensityAugment | None = None,
    ) -> None:
        self.root = Path(root)
        self.label_map = label_map
        self.config = config
        self.labelled = labelled
        self.augment = augment
        self.intensity = intensity if augment is not None else None
        self.seed = seed
        self.epoch = 0
        if tuple(config.class_names) != label_map.class_names:
            raise ValueError(
                f"config {config.name!r} classes {list(config.class_names)[:3]}... differ from the label "
                f"map's {list(label_map.class_names)[:3]}...: use a SemanticKITTI config"
            )
        if sequences is None:
            if split not in label_map.splits:
                raise ValueError(f"unknown split {split!r}; the label config has {sorted(label_map.splits)}")
            sequences = label_map.splits[split]
        self.files: list[tuple[Path, Path | None]] = []
        for sequence in sequences:
            folder = self.root / "sequences" / f"{sequence:02d}"
            scans = sorted((folder / "velodyne").glob("*.bin"))
            if not scans and split is None:
                raise FileNotFoundError(f"no scans in {folder / 'velodyne'}")
            for scan in scans:
                label = folder / "labels" / f"{scan.stem}.label"
                if labelled and not label.is_file():
                    raise FileNotFoundError(f"label file missing for {scan}: {label}")
                self.files.append((scan, label if labelled else None))

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Different augmentation per epoch, still deterministic."""
        self.epoch = epoch

    def _read_points(self, index: int) -> np.ndarray:
        return read_points(self.files[index][0], PointFormat.KITTI, self.config.input.intensity_max)

    def file_points(self, index: int) -> np.ndarray:
        """xyz ``(N, 3)`` of every point of scan ``index``'s file; errors name the file."""
        return self._read_points(index)[:, :3]

    def submission_name(self, index: int) -> str:
        """``sequences/<NN>/predictions/<frame>.label``: the scan's file in the SemanticKITTI
        submission layout."""
        scan_path = self.files[index][0]
        return f"sequences/{scan_path.parent.parent.name}/predictions/{scan_path.stem}.label"

    def read_labels(self, index: int, num_points: int) -> torch.Tensor:
        """Training ids ``(N,)`` int64 of scan ``index``'s file points, through the label map;
        errors name the files."""
        scan_path, label_path = self.files[index]
        if label_path is None:
            raise FileNotFoundError(f"no labels for {scan_path}: the data set was opened unlabelled")
        if not label_path.is_file():
            raise FileNotFoundError(f"label file missing for {scan_path}: {label_path}")
        raw_labels = np.fromfile(label_path, dtype="<u4")
        if raw_labels.shape[0] != num_points:
            raise ValueError(
                f"{label_path} has {raw_labels.shape[0]} labels for {num_points} points in {scan_path}"
            )
        return torch.from_numpy(self.label_map.to_train(raw_labels).astype(np.int64))

    def __getitem__(self, index: int) -> LidarSample:
        scan_path, label_path = self.files[index]
        points = torch.from_numpy(self._read_points(index))
        num_file_points = int(points.shape[0])
        labels = self.read_labels(index, num_file_points) if label_path is not None else None
        keep = crop_mask(points[:, :3], self.config.grid)
        indices = torch.nonzero(keep).flatten()
        points = points[keep]
        labels = labels[keep] if labels is not None else None
        if self.augment is not None:
            generator = torch.Generator().manual_seed(self.seed + self.epoch * len(self) + index)
            points = self.augment(points, generator)
            if self.intensity is not None:
                points = self.intensity(points, generator, labels)
        return LidarSample(
            name=f"{scan_path.parent.parent.name}/{scan_path.stem}",
            points=points,
            labels=labels,
            indices=indices,
            num_file_points=num_file_points,
        )
