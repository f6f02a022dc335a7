"""Measurements of a nuScenes-format dataset through nuscenes-devkit, as the training pipeline sees it.

Used by the tests of the synthetic dataset and by ``bench/synthetic.py``; they work on any dataset
the devkit loads (the real tables too). Everything goes through the devkit's records and file paths
and through `training.data.nuscenes_geometry` (the projection the loader uses):

- `sweep`: a keyframe's points and lidarseg labels;
- `box_purity`: for each category, how many LiDAR points projected into its fully visible 2D boxes
  carry that category, a point inside several boxes going to the box whose centre depth is nearest
  its own (docs/architecture.md §1.5, §5.2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from seg3d.classes import NUSCENES_INTEREST_CATEGORIES, NUSCENES_RAW_CLASSES
from training.data.nuscenes_geometry import box_to_2d, lidar_to_camera, project_to_image
from training.data.synthetic.sensors import CAMERA_CHANNELS, IMAGE_SIZE

__all__ = ["CAMERAS", "IMAGE_SIZE", "INTEREST_CATEGORIES", "BoxPurity", "box_purity", "project", "sweep"]

CAMERAS = CAMERA_CHANNELS
#: The classes whose 2D boxes the Local Object Branch leans on most (`seg3d.classes`).
INTEREST_CATEGORIES = NUSCENES_INTEREST_CATEGORIES


def sweep(nusc: object, lidar_token: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 5)`` float32 points and ``(N,)`` uint8 raw labels of a LIDAR_TOP sample_data, read from the
    paths the devkit resolves (``get_sample_data_path``, the lidarseg record's ``filename``)."""
    from nuscenes.utils.data_io import load_bin_file

    # The raw file with all five columns (the ring too): these checks inspect what the generator
    # wrote. Model inputs are read with `seg3d.points.read_points`, which keeps x, y, z, intensity.
    points = np.fromfile(nusc.get_sample_data_path(lidar_token), dtype="<f4").reshape(-1, 5)
    labels = load_bin_file(os.path.join(nusc.dataroot, nusc.get("lidarseg", lidar_token)["filename"]))
    return points, labels


def project(
    nusc: object, lidar_token: str, camera_token: str, xyz: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels ``(N, 2)``, depths ``(N,)`` and the in-image mask (depth > 0, strictly inside) of LiDAR
    points in a camera, through both ego poses (motion compensated)."""
    lidar, camera = nusc.get("sample_data", lidar_token), nusc.get("sample_data", camera_token)
    calibration = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
    points = lidar_to_camera(
        xyz,
        nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"]),
        nusc.get("ego_pose", lidar["ego_pose_token"]),
        nusc.get("ego_pose", camera["ego_pose_token"]),
        calibration,
    )
    uv, depth = project_to_image(points, calibration["camera_intrinsic"])
    width, height = IMAGE_SIZE
    inside = (depth > 0) & (uv[:, 0] > 0) & (uv[:, 0] < width) & (uv[:, 1] > 0) & (uv[:, 1] < height)
    return uv, depth, inside


@dataclass
class BoxPurity:
    """Per category: fully visible (box, camera) pairs, points assigned to them, and how many of those
    points carry the category."""

    boxes: dict[str, int] = field(default_factory=dict)
    assigned: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)

    def purity(self, category: str) -> float:
        return self.correct.get(category, 0) / max(self.assigned.get(category, 0), 1)

    def table(self) -> dict[str, dict[str, float]]:
        return {
            c: {"boxes": self.boxes[c], "points": self.assigned.get(c, 0), "purity": round(self.purity(c), 4)}
            for c in sorted(self.boxes)
        }


def box_purity(nusc: object, sample_tokens: Iterable[str] | None = None) -> BoxPurity:
    """Purity of the LiDAR points in the fully visible 2D boxes of every annotated category, over the
    six cameras of the given samples (default: all)."""
    result = BoxPurity()
    tokens = [s["token"] for s in nusc.sample] if sample_tokens is None else list(sample_tokens)
    for sample_token in tokens:
        sample = nusc.get("sample", sample_token)
        points, labels = sweep(nusc, sample["data"]["LIDAR_TOP"])
        annotations = [nusc.get("sample_annotation", a) for a in sample["anns"]]
        for channel in CAMERAS:
            camera = nusc.get("sample_data", sample["data"][channel])
            ego = nusc.get("ego_pose", camera["ego_pose_token"])
            calibration = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
            boxes = [(a["category_name"], box_to_2d(a, ego, calibration, IMAGE_SIZE)) for a in annotations]
            boxes = [(name, box) for name, box in boxes if box is not None]
            if not boxes:
                continue
            uv, depth, inside = project(nusc, sample["data"]["LIDAR_TOP"], camera["token"], points[:, :3])
            u, v, d, label = uv[inside, 0], uv[inside, 1], depth[inside], labels[inside]
            owner = np.full(u.shape[0], -1)
            gap = np.full(u.shape[0], np.inf)
            for i, (_, box) in enumerate(boxes):
                within = (u >= box.x_min) & (u <= box.x_max) & (v >= box.y_min) & (v <= box.y_max)
                nearer = within & (np.abs(d - box.depth) < gap)
                owner[nearer], gap[nearer] = i, np.abs(d - box.depth)[nearer]
            for i, (name, _) in enumerate(boxes):
                mine = owner == i
                result.boxes[name] = result.boxes.get(name, 0) + 1
                result.assigned[name] = result.assigned.get(name, 0) + int(mine.sum())
                hits = int((label[mine] == NUSCENES_RAW_CLASSES.index(name)).sum())
                result.correct[name] = result.correct.get(name, 0) + hits
    return result
