"""What every training data set offers: samples for the loop, file points and labels for evaluation.

`NuScenesDataset` and `SemanticKittiDataset` implement both protocols, so the loop
(`training.loop`) and evaluation (`training.evaluation`, ``python -m training.evaluate``) work on
either without knowing which: full-scan evaluation reads every file point with `file_points` and
its training ids with `read_labels`; submissions name each sample's file with `submission_name`.
Point files are read with `seg3d.points.read_points` only (intensity in the model's scale, NaN/Inf
and overflow refused with errors that name the file).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from training.data.sample import LidarSample

__all__ = ["EvaluationDataset", "TrainingDataset"]


@runtime_checkable
class EvaluationDataset(Protocol):
    """A sequence of `LidarSample`, with access to the files behind each sample."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> LidarSample: ...

    def file_points(self, index: int) -> np.ndarray:
        """``(num_file_points, 3)`` float32 xyz of every point of sample ``index``'s file, in file order.

        Raises:
            FileNotFoundError, seg3d.points.PointsError: naming the file.
        """
        ...

    def read_labels(self, index: int, num_points: int) -> torch.Tensor:
        """``(num_points,)`` int64 training ids (0 = ignore) of every point of sample ``index``'s file.

        Raises:
            FileNotFoundError: no label file (naming it), or the data set is unlabelled.
            ValueError: the label file does not hold ``num_points`` labels (naming both files).
        """
        ...

    def submission_name(self, index: int) -> str:
        """The file name of sample ``index``'s predictions in the data set's submission layout
        (nuScenes-lidarseg: ``<lidar token>_lidarseg.bin``)."""
        ...


@runtime_checkable
class TrainingDataset(EvaluationDataset, Protocol):
    """An evaluation data set whose augmentation and camera choice follow the epoch."""

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s per-sample streams (deterministic for a given seed)."""
        ...
