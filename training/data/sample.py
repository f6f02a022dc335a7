"""One LiDAR sample as every dataset returns it, with the camera views of the 2D branch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CameraView", "LidarSample"]


@dataclass(frozen=True)
class CameraView:
    """One camera of a sample: its image, the points that project into it, and its 2D boxes.

    Attributes:
        camera: channel name, e.g. ``CAM_FRONT``.
        image: ``(3, H, W)`` float32, normalised (`training.data.image.ImageTransform`).
        point_index: ``(M,)`` int64 rows (into the sample's ``points``) of the points this view
            sees, projected from their un-augmented coordinates.
        pixels: ``(M, 2)`` int64 ``(row, col)`` in ``image`` of those points.
        point_box: ``(M,)`` int64 box of each of those points (index into ``boxes``), -1 for none.
        boxes: ``(K, 4)`` float32 ``x_min, x_max, y_min, y_max`` in the camera's original pixels.
        box_class: ``(K,)`` int64 interest-class index of each box (its class embedding row).
        box_label: ``(K,)`` int64 training id of each box's category.
        box_depth: ``(K,)`` float32 depth of each box centre in the camera frame.
    """

    camera: str
    image: torch.Tensor
    point_index: torch.Tensor
    pixels: torch.Tensor
    point_box: torch.Tensor
    boxes: torch.Tensor
    box_class: torch.Tensor
    box_label: torch.Tensor
    box_depth: torch.Tensor


@dataclass(frozen=True)
class LidarSample:
    """A cloud ready for the encoder.

    Attributes:
        name: where it came from (sequence/frame or sample token), for logs and outputs.
        points: ``(N, 4)`` float32 ``x, y, z, intensity`` in the model's intensity scale.
        labels: ``(N,)`` int64 training ids (0 = ignore), or None for unlabelled data.
        indices: ``(N,)`` int64 row of each point in the original file (crop and dropout keep a
            mapping back, for full-scan evaluation and submissions).
        num_file_points: how many points the file holds.
        views: camera views for the 2D branch; empty for 3D-only data. A point appears in at most
            one view.
    """

    name: str
    points: torch.Tensor
    labels: torch.Tensor | None
    indices: torch.Tensor
    num_file_points: int
    views: tuple[CameraView, ...] = ()
