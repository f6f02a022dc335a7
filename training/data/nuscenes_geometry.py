"""nuScenes geometry: LiDAR points into a camera image, and 3D boxes into 2D boxes.

`docs/architecture.md` §1.4 and §1.5, from the nuScenes table records (quaternions are ``(w, x, y, z)``):

- a LiDAR point goes LiDAR → ego (LiDAR time) → global → ego (camera time) → camera, which also
  compensates the ego motion between the two timestamps; then ``K`` and a division by depth;
- a 3D box (global frame) goes global → ego (camera time) → camera; it becomes a 2D box when it is
  fully visible (all 8 corners inside the image, more than 1 m deep) as the min/max of its
  projected corners.

Box geometry is float64. LiDAR points are stored in float32 between the steps, as nuScenes-devkit's
``LidarPointCloud`` (and so 2DPASS) does: in global coordinates, about 1 km from the origin, float32
spacing is ~1e-4 m, which moves near points by up to ~0.03 px. Keeping the same storage makes the
pixels agree with the devkit's to 1e-3 px (tested) instead of differing by that rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

__all__ = [
    "Box2D",
    "Pose",
    "assign_to_boxes",
    "box_corners",
    "box_to_2d",
    "lidar_to_camera",
    "project_to_image",
    "quaternion_matrix",
]

Record = Mapping[str, Sequence[float]]


def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)``."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``p ↦ R p + t`` from a ``calibrated_sensor`` or ``ego_pose`` record."""

    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def from_record(cls, record: Record) -> Pose:
        return cls(quaternion_matrix(record["rotation"]), np.asarray(record["translation"], dtype=np.float64))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        return (points - self.translation) @ self.rotation


def lidar_to_camera(
    xyz: np.ndarray, lidar_sensor: Record, lidar_ego: Record, camera_ego: Record, camera_sensor: Record
) -> np.ndarray:
    """``(N, 3)`` LiDAR-frame points in the camera frame (x right, y down, z forward), float32."""
    points = np.ascontiguousarray(np.asarray(xyz, dtype=np.float32).T)  # (3, N), float32 storage

    def rotate(rotation: np.ndarray) -> None:
        points[:] = np.dot(rotation, points)  # computed in float64, stored in float32

    def translate(offset: np.ndarray) -> None:
        for axis in range(3):
            points[axis] = points[axis] + offset[axis]

    sensor, ego = Pose.from_record(lidar_sensor), Pose.from_record(lidar_ego)
    rotate(sensor.rotation)
    translate(sensor.translation)
    rotate(ego.rotation)
    translate(ego.translation)
    camera_pose, camera = Pose.from_record(camera_ego), Pose.from_record(camera_sensor)
    translate(-camera_pose.translation)
    rotate(camera_pose.rotation.T)
    translate(-camera.translation)
    rotate(camera.rotation.T)
    return points.T


def project_to_image(
    points_camera: np.ndarray, intrinsic: Sequence[Sequence[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(N, 2)`` (u = column, v = row) and depths ``(N,)`` of camera-frame points."""
    k = np.asarray(intrinsic, dtype=np.float64)
    homogeneous = np.dot(k, points_camera.T).T
    depth = points_camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = homogeneous[:, :2] / homogeneous[:, 2:3]
    return uv, depth


def box_corners(center: Sequence[float], size: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of a nuScenes box: ``size`` is (width, length, height), length along
    the box's own x axis, rotated by the quaternion and moved to ``center``."""
    width, length, height = size
    signs = np.array(list(product((-1, 1), repeat=3)), dtype=np.float64)
    local = signs * np.array([length, width, height]) / 2
    return local @ quaternion_matrix(rotation).T + np.asarray(center, dtype=np.float64)


@dataclass(frozen=True)
class Box2D:
    """An axis-aligned image box in original pixels, truncated to int as the 2DDATA code does."""

    x_min: int
    x_max: int
    y_min: int
    y_max: int
    depth: float  # of the box centre in the camera frame, to resolve points inside several boxes


def box_to_2d(
    annotation: Record,
    camera_ego: Record,
    camera_sensor: Record,
    image_size: tuple[int, int],
    min_depth: float = 1.0,
    clip: bool = False,
) -> Box2D | None:
    """The 2D box of a 3D box (global frame) in one camera, or None when it is not kept.

    By default only fully visible boxes are kept (devkit ``BoxVisibility.ALL``, as the 2DDATA code
    does): all 8 corners inside the image and deeper than ``min_depth``. With ``clip`` a box is kept
    when all its corners are in front of the camera (deeper than 0.1 m, the devkit's ``in_front``
    test; a corner behind the camera has no meaningful pixel) and at least one of them is visible;
    its extent is then clipped to the image.
    """
    corners = box_corners(annotation["translation"], annotation["size"], annotation["rotation"])
    corners = Pose.from_record(camera_sensor).invert(Pose.from_record(camera_ego).invert(corners))
    uv, depth = project_to_image(corners, camera_sensor["camera_intrinsic"])
    width, height = image_size
    inside = (uv[:, 0] > 0) & (uv[:, 0] < width) & (uv[:, 1] > 0) & (uv[:, 1] < height) & (depth > min_depth)
    if clip:
        if not (bool((depth > 0.1).all()) and bool(inside.any())):
            return None
        uv = np.stack([uv[:, 0].clip(0, width - 1), uv[:, 1].clip(0, height - 1)], axis=1)
    elif not bool(inside.all()):
        return None
    centre = Pose.from_record(camera_sensor).invert(
        Pose.from_record(camera_ego).invert(np.asarray([annotation["translation"]], dtype=np.float64))
    )
    return Box2D(
        int(uv[:, 0].min()),
        int(uv[:, 0].max()),
        int(uv[:, 1].min()),
        int(uv[:, 1].max()),
        float(centre[0, 2]),
    )


def assign_to_boxes(uv: np.ndarray, depth: np.ndarray, boxes: Sequence[Box2D]) -> np.ndarray:
    """The box of each projected point, ``(N,)`` int64, -1 for none (`docs/architecture.md` §5.2).

    A point belongs to a box when its pixel lies within the box's extent (bounds included). A
    point inside several boxes goes to the box whose centre depth is nearest to the point's depth;
    equal depths go to the box of smaller area, then to the first box.
    """
    owner = np.full(uv.shape[0], -1, dtype=np.int64)
    if not boxes or uv.shape[0] == 0:
        return owner
    extent = np.array([[b.x_min, b.x_max, b.y_min, b.y_max] for b in boxes], dtype=np.float64)  # (K, 4)
    centre_depth = np.array([b.depth for b in boxes], dtype=np.float64)
    area = (extent[:, 1] - extent[:, 0]) * (extent[:, 3] - extent[:, 2])
    u, v = uv[:, :1], uv[:, 1:2]
    inside = (u >= extent[:, 0]) & (u <= extent[:, 1]) & (v >= extent[:, 2]) & (v <= extent[:, 3])  # (N, K)
    cost = np.where(inside, np.abs(depth[:, None] - centre_depth[None, :]), np.inf)
    best = np.full(uv.shape[0], np.inf)
    # Visit boxes by increasing area (stable) and take strictly better gaps only, so equal gaps
    # keep the smaller, then the earlier, box. K is small (tens): loop over boxes, not points.
    for k in np.argsort(area, kind="stable"):
        better = cost[:, k] < best
        owner[better] = k
        best[better] = cost[better, k]
    return owner
