"""One keyframe: the LiDAR sweep, its lidarseg labels and the six camera images, written to disk.

This is the unit of parallel work: it depends only on its `KeyframeTask` (the scene's plan and world,
the sample index, the seed), draws from its own random streams, and returns the per-object counts
the tables need (`KeyframeResult`), so the output is the same whichever worker runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg3d.classes import NUSCENES_RAW_CLASSES
from seg3d.points import PointFormat, write_points
from training.data.synthetic.lidar import sweep
from training.data.synthetic.plan import ScenePlan, scene_rng
from training.data.synthetic.render import CameraView, render_camera
from training.data.synthetic.sensors import (
    CAMERA_CHANNELS,
    HDL32E,
    LIDAR_CHANNEL,
    LIDARS,
    RIGS,
    SensorCalibration,
)
from training.data.synthetic.tables import lidarseg_filename, sample_data_filename, sample_data_token
from training.data.synthetic.world import World

__all__ = ["JPEG_QUALITY", "KeyframeResult", "KeyframeTask", "camera_view", "make_keyframe", "sensor_pose"]

JPEG_QUALITY = 90
#: Objects whose centre is farther than this from the ego are not annotated (LiDAR range + margin).
ANNOTATION_RANGE = HDL32E.max_range + 10.0


@dataclass(frozen=True)
class KeyframeTask:
    """Everything one keyframe depends on (pickled to a worker)."""

    seed: int
    version: str
    root: Path  # dataset root being written
    plan: ScenePlan
    world: World
    sample: int
    render_scale: float
    lidar: str = "hdl32e"  # a key of sensors.LIDARS


@dataclass(frozen=True)
class KeyframeResult:
    """What the tables and the report need from a keyframe."""

    scene: int
    sample: int
    num_points: int
    label_counts: np.ndarray  # (32,) points per raw lidarseg index
    box_points: np.ndarray  # (num objects,) LiDAR points inside each annotation box
    covered: np.ndarray  # (num objects,) camera pixels (reduced grid, six cameras) the object's ray meets
    visible: np.ndarray  # (num objects,) ... where it is the nearest surface
    annotated: np.ndarray  # (num objects,) bool: within ANNOTATION_RANGE of the ego at the sample time
    seconds: float


def sensor_pose(
    plan: ScenePlan, world: World, sensor: SensorCalibration, timestamp: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Sensor origin (scene frame), its rotation sensor → scene, and the ego's xy, at ``timestamp``.

    The ego drives along the scene x axis, so its yaw in the scene frame is 0.
    """
    ego = np.array([plan.ego_x(timestamp), world.ego_lane_y(), 0.0])
    return ego + np.asarray(sensor.translation), sensor.rotation_matrix(), (float(ego[0]), float(ego[1]))


def camera_view(
    seed: int, plan: ScenePlan, world: World, sample: int, channel: str, scale: float
) -> CameraView:
    """One camera of one keyframe, rendered exactly as `make_keyframe` renders it (same random stream)."""
    camera = RIGS[plan.location.vehicle][channel]
    origin, rotation, _ = sensor_pose(plan, world, camera, plan.times[sample].cameras[channel])
    rng = scene_rng(seed, plan.index, 1 + sample, 1 + CAMERA_CHANNELS.index(channel))
    return render_camera(world, camera, origin, rotation, rng, scale)


def _box_points(world: World, points: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Points inside the annotation box of each object selected by ``which`` (the devkit's
    ``points_in_box``, in the scene frame); 0 for the others."""
    counts = np.zeros(len(world.objects), dtype=np.int64)
    for i in np.flatnonzero(which):
        obj = world.objects[i]
        width, length, height = obj.size
        offset = points - np.asarray(obj.center)
        near = np.abs(offset[:, 0]) + np.abs(offset[:, 1]) <= (width + length)  # cheap pre-filter
        cos, sin = np.cos(obj.yaw), np.sin(obj.yaw)
        o = offset[near]
        lx, ly = cos * o[:, 0] + sin * o[:, 1], -sin * o[:, 0] + cos * o[:, 1]
        inside = (np.abs(lx) <= length / 2) & (np.abs(ly) <= width / 2) & (np.abs(o[:, 2]) <= height / 2)
        counts[i] = int(inside.sum())
    return counts


def make_keyframe(task: KeyframeTask) -> KeyframeResult:
    """Simulate and write one keyframe's LiDAR, lidarseg and camera files; count per-object evidence."""
    from PIL import Image

    start = time.perf_counter()
    plan, world, k = task.plan, task.world, task.sample
    rig = RIGS[plan.location.vehicle]
    times = plan.times[k]
    objects = world.objects

    lidar = rig[LIDAR_CHANNEL]
    origin, rotation, ego_xy = sensor_pose(plan, world, lidar, times.lidar)
    model = LIDARS[task.lidar]
    scan = sweep(world, origin, rotation, ego_xy, 0.0, model, scene_rng(task.seed, plan.index, 1 + k, 0))
    centres = np.array([o.center for o in objects]).reshape(-1, 3)
    annotated = np.hypot(centres[:, 0] - ego_xy[0], centres[:, 1] - ego_xy[1]) <= ANNOTATION_RANGE
    box_points = _box_points(world, scan.scene_points, annotated)

    lidar_name = task.root / sample_data_filename(plan, LIDAR_CHANNEL, times.lidar)
    lidar_name.parent.mkdir(parents=True, exist_ok=True)
    # the nuScenes layout, intensity on its own 0-255 scale, as the one point writer defines it
    write_points(lidar_name, scan.points[:, :4], PointFormat.NUSCENES, 255.0, ring=scan.points[:, 4])
    label_name = task.root / lidarseg_filename(
        task.version, sample_data_token(task.seed, plan, k, LIDAR_CHANNEL)
    )
    label_name.parent.mkdir(parents=True, exist_ok=True)
    scan.labels.tofile(label_name)

    # An object's pixels are those of all its solids (a car's body and cabin).
    instance = world.solids.instance
    owned = instance >= 0
    covered = np.zeros(len(objects), dtype=np.int64)
    visible = np.zeros(len(objects), dtype=np.int64)
    for channel in CAMERA_CHANNELS:
        view = camera_view(task.seed, plan, world, k, channel, task.render_scale)
        covered += np.bincount(instance[owned], view.covered[owned], len(objects)).astype(np.int64)
        visible += np.bincount(instance[owned], view.visible[owned], len(objects)).astype(np.int64)
        image_name = task.root / sample_data_filename(plan, channel, times.cameras[channel])
        image_name.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(view.image).save(image_name, format="JPEG", quality=JPEG_QUALITY)

    return KeyframeResult(
        scene=plan.index,
        sample=k,
        num_points=int(scan.points.shape[0]),
        label_counts=np.bincount(scan.labels, minlength=len(NUSCENES_RAW_CLASSES)),
        box_points=box_points,
        covered=covered,
        visible=visible,
        annotated=annotated,
        seconds=time.perf_counter() - start,
    )
