"""Per-point label files in the layouts the data sets' own tools read.

A model's labels are indices into its class table (`seg3d.classes`). Written to a file, they take
the layout of the model's data set, one record per input point, in input order:

- nuScenes-lidarseg classes (`NUSCENES_LIDARSEG`): ``<stem>_lidarseg.bin``, one uint8 per point,
  the training class index 0-16, which is the lidarseg challenge's class index (1 barrier … 16
  vegetation; 0 ignore, never predicted). These are the very bytes ``POST /segment`` answers with
  ``Accept: application/octet-stream``, and the layout of the challenge's prediction files.
- SemanticKITTI classes (`SEMANTICKITTI`): ``<stem>.label``, one little-endian uint32 per point,
  the *raw* SemanticKITTI id (``learning_map_inv`` of ``semantic-kitti.yaml``: car 10, road 40 …)
  in the low 16 bits and instance 0 in the high 16 bits, as the data set's ``labels/*.label``
  files and its benchmark's submissions.
- any other table: ``<stem>_labels.bin``, one uint8 training index per point.

nuscenes-devkit renders predictions (``lidarseg_preds_bin_path``) by looking each byte up in its
*raw* category table (32 categories), not in the 16 training classes; `nuscenes_raw_labels` gives the
raw index of each class's main category (`NUSCENES_MAIN_CATEGORY`), whose devkit colour is the
class's colour in `NUSCENES_LIDARSEG`, so the devkit draws the labels in this palette.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.classes import NUSCENES_LIDARSEG, NUSCENES_RAW_CLASSES, SEMANTICKITTI, ClassTable
from seg3d.io import write_atomic

__all__ = [
    "NUSCENES_MAIN_CATEGORY",
    "SEMANTICKITTI_RAW_IDS",
    "decode_label_file",
    "encode_label_file",
    "label_file_name",
    "nuscenes_raw_labels",
    "write_label_file",
]

#: SemanticKITTI training index → raw label id (``learning_map_inv`` of ``semantic-kitti.yaml``).
SEMANTICKITTI_RAW_IDS: tuple[int, ...] = (
    0, 10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72, 80, 81,
)  # fmt: skip

#: nuScenes training class → the raw lidarseg category it is drawn as: one of the categories that
#: map to it (`seg3d.classes.NUSCENES_RAW_TO_TRAIN`), the one whose devkit colour is the class's.
NUSCENES_MAIN_CATEGORY: tuple[str, ...] = (
    "noise", "movable_object.barrier", "vehicle.bicycle", "vehicle.bus.rigid", "vehicle.car",
    "vehicle.construction", "vehicle.motorcycle", "human.pedestrian.adult", "movable_object.trafficcone",
    "vehicle.trailer", "vehicle.truck", "flat.driveable_surface", "flat.other", "flat.sidewalk",
    "flat.terrain", "static.manmade", "static.vegetation",
)  # fmt: skip


def label_file_name(stem: str, classes: ClassTable) -> str:
    """The label file of a scan named ``stem``, for a model with ``classes`` (module docstring)."""
    if classes == NUSCENES_LIDARSEG:
        return f"{stem}_lidarseg.bin"
    if classes == SEMANTICKITTI:
        return f"{stem}.label"
    return f"{stem}_labels.bin"


def _checked(labels: npt.ArrayLike, classes: ClassTable) -> npt.NDArray[np.int64]:
    label = np.asarray(labels)
    if label.ndim != 1:
        raise ValueError(f"labels must be one per point, (N,), got shape {label.shape}")
    label = label.astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= len(classes)):
        raise ValueError(f"labels span {label.min()}..{label.max()}, outside the {len(classes)} classes")
    return label


def encode_label_file(labels: npt.ArrayLike, classes: ClassTable) -> bytes:
    """The bytes of `label_file_name`'s file for ``labels`` ``(N,)`` (class indices of ``classes``).

    Raises:
        ValueError: labels not ``(N,)`` or outside the table.
    """
    label = _checked(labels, classes)
    if classes == SEMANTICKITTI:
        return np.asarray(SEMANTICKITTI_RAW_IDS, dtype="<u4")[label].tobytes()
    if len(classes) > 256:  # pragma: no cover - every table has fewer
        raise ValueError(f"{classes.name}: {len(classes)} classes do not fit a uint8 label")
    return label.astype(np.uint8).tobytes()


def decode_label_file(data: bytes, classes: ClassTable) -> npt.NDArray[np.int64]:
    """Class indices ``(N,)`` of ``classes`` from a label file's bytes: `encode_label_file`'s inverse.
    A SemanticKITTI file's instance bits are dropped; a raw id no class maps back to is refused.

    Raises:
        ValueError: a length that is not a whole number of records, or an unknown raw id.
    """
    if classes == SEMANTICKITTI:
        if len(data) % 4:
            raise ValueError(f"a .label file holds uint32 records; {len(data)} bytes is not a multiple of 4")
        raw = np.frombuffer(data, dtype="<u4") & 0xFFFF
        lookup = np.full(max(SEMANTICKITTI_RAW_IDS) + 1, -1, dtype=np.int64)
        lookup[list(SEMANTICKITTI_RAW_IDS)] = np.arange(len(SEMANTICKITTI_RAW_IDS))
        unknown = (raw >= lookup.size) | (lookup[np.minimum(raw, lookup.size - 1)] < 0)
        if unknown.any():
            raise ValueError(f"raw ids {sorted(set(raw[unknown].tolist()))[:5]} are no training class's")
        return np.asarray(lookup[raw], dtype=np.int64)
    return _checked(np.frombuffer(data, dtype=np.uint8), classes)


def write_label_file(path: str | Path, labels: npt.ArrayLike, classes: ClassTable) -> None:
    """`encode_label_file` written to ``path`` atomically."""
    write_atomic(path, encode_label_file(labels, classes))


def nuscenes_raw_labels(
    labels: npt.ArrayLike, raw_index: Mapping[str, int] | None = None
) -> npt.NDArray[np.uint8]:
    """nuScenes training labels ``(N,)`` → uint8 raw lidarseg indices of their classes' main
    categories (`NUSCENES_MAIN_CATEGORY`), for the devkit's renderers.

    Args:
        labels: `NUSCENES_LIDARSEG` class indices.
        raw_index: raw category name → index, as a data set's ``category.json`` numbers them
            (nuscenes-devkit's ``lidarseg_name2idx_mapping``); default the official numbering
            (`seg3d.classes.NUSCENES_RAW_CLASSES`).

    Raises:
        ValueError: labels outside the table, or a main category missing from ``raw_index``.
    """
    label = _checked(labels, NUSCENES_LIDARSEG)
    index = raw_index if raw_index is not None else {n: i for i, n in enumerate(NUSCENES_RAW_CLASSES)}
    missing = [n for n in NUSCENES_MAIN_CATEGORY if n not in index]
    if missing:
        raise ValueError(f"the category table lacks {missing}: it is not the nuScenes-lidarseg one")
    lookup = np.asarray([index[n] for n in NUSCENES_MAIN_CATEGORY], dtype=np.uint8)
    return lookup[label]
