"""What a label file holds, per output layout: the model's labels encoded for the data set's tools.

A model labels points with indices of its own class table (`seg3d.classes`). Each layout the job
writes wants something else, and `LabelEncoding` is the one place that says what:

- ``nuscenes-lidarseg`` (`Encoding.NUSCENES_RAW`): one uint8 per point, the *raw* lidarseg category
  index, numbered by the data set's own ``category.json``, exactly as nuScenes-lidarseg's ground
  truth files, so that ``NuScenes(version, dataroot)`` reads the predictions as if they were labels;
  each class is written as its main category (`seg3d.labelfiles.NUSCENES_MAIN_CATEGORY`).
- ``nuscenes-submission`` (`Encoding.NUSCENES_CHALLENGE`): one uint8 per point, the lidarseg
  challenge's class index 1–16, which the devkit's ``LidarSegEval`` reads.
- ``semantickitti`` (`Encoding.SEMANTICKITTI`): one little-endian uint32 per point, the raw
  SemanticKITTI id (``learning_map_inv``), as the semantic-kitti-api reads ``predictions/*.label``.
- ``files`` (`Encoding.MODEL`): the model's own label file (`seg3d.labelfiles`).

A model of another class table is read in the layout's classes through the declared mapping
(`seg3d.classes.class_mapping`: nuScenes → SemanticKITTI or back); a class the mapping leaves out
is written as the layout's ignore class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI, ClassTable, class_mapping
from seg3d.labelfiles import decode_label_file, encode_label_file, nuscenes_raw_labels

__all__ = ["Encoding", "LabelEncoding"]


class Encoding(str, Enum):
    NUSCENES_RAW = "nuscenes-raw"
    NUSCENES_CHALLENGE = "nuscenes-challenge"
    SEMANTICKITTI = "semantickitti"
    MODEL = "model"


@dataclass(frozen=True)
class LabelEncoding:
    """How a job turns a model's labels into a label file's bytes, and checks a file it wrote.

    Picklable (it travels to every worker process and Ray actor). ``raw_index``: the data set's raw
    category name → index (``category.json``), for `Encoding.NUSCENES_RAW` only.
    """

    encoding: Encoding
    model_classes: ClassTable
    raw_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoding is Encoding.NUSCENES_RAW and not self.raw_index:
            raise ValueError("the raw lidarseg encoding needs the data set's category numbering")
        target = self.target_classes
        if target != self.model_classes:
            class_mapping(self.model_classes, target)  # raises when no mapping is declared

    @property
    def target_classes(self) -> ClassTable:
        """The class table the file is written in."""
        if self.encoding in (Encoding.NUSCENES_RAW, Encoding.NUSCENES_CHALLENGE):
            return NUSCENES_LIDARSEG
        if self.encoding is Encoding.SEMANTICKITTI:
            return SEMANTICKITTI
        return self.model_classes

    @property
    def record_size(self) -> int:
        """Bytes per point."""
        return 4 if self.target_classes == SEMANTICKITTI else 1

    def _in_target(self, labels: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
        target = self.target_classes
        if target == self.model_classes:
            return np.asarray(labels, dtype=np.int64)
        return class_mapping(self.model_classes, target).apply(labels)

    def encode(self, labels: npt.NDArray[np.integer[Any]]) -> bytes:
        """A label file's bytes for ``labels`` ``(N,)``, indices of the model's classes.

        Raises:
            ValueError: labels outside the model's table.
        """
        target = self._in_target(labels)
        if self.encoding is Encoding.NUSCENES_RAW:
            return nuscenes_raw_labels(target, self.raw_index).tobytes()
        return encode_label_file(target, self.target_classes)

    def check(self, data: bytes, points: int) -> str | None:
        """Why ``data`` is not a complete label file of a cloud of ``points`` points, or None.

        Used by ``--resume``: a file is kept only when it has one record per point and every record
        is a label this encoding writes.
        """
        if len(data) != points * self.record_size:
            return f"{len(data)} bytes for {points} points of {self.record_size} byte(s)"
        if self.encoding is Encoding.NUSCENES_RAW:
            written = set(nuscenes_raw_labels(np.arange(len(NUSCENES_LIDARSEG)), self.raw_index).tolist())
            found = set(np.unique(np.frombuffer(data, dtype=np.uint8)).tolist())
            return None if found <= written else f"raw categories {sorted(found - written)} are never written"
        try:
            decode_label_file(data, self.target_classes)
        except ValueError as exc:
            return str(exc)
        return None
