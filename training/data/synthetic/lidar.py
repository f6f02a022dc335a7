"""A LIDAR_TOP sweep of a world: points in the nuScenes ``.pcd.bin`` layout and their lidarseg labels.

One revolution from the sensor pose at the sweep's timestamp (the rolling shutter of a real sweep,
≤ 50 ms, is ignored). Returns are ordered firing by firing with the rings in order inside a firing
(0…31 for the HDL-32E), as in the real files; rays with nothing within `LidarModel.max_range`
(sky) give no point. Each return gets:

- range noise along the beam (`LidarModel.range_noise`), plus a short random penetration into
  foliage (leaves are not a surface) and 0.5-4 m through a building's windows (the room behind,
  `world.facade_windows`);
- the raw lidarseg index of what it hit (the ground material under the hit on the road and on the
  raised kerbside, solid label, ``vehicle.ego`` 31 for the ego's own roof), and a few spurious
  returns labelled ``noise`` (0) at random ranges;
- an intensity in 0–255: the material's reflectivity, dimmed at grazing incidence, with noise, as an
  integer-valued float as in nuScenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.synthetic.raycast import GROUND, MISS, Window, cast
from training.data.synthetic.sensors import EGO_BOXES, LidarModel
from training.data.synthetic.world import (
    GROUND_LABELS,
    Ground,
    Shape,
    Solids,
    Style,
    World,
    facade_windows,
    ground_sample,
    raw_index,
)

__all__ = ["LidarSweep", "ego_solids", "sweep"]

#: Mean intensity of each `Ground` material; road paint returns far more (retro-reflective beads).
GROUND_REFLECTIVITY = np.array([8.0, 18.0, 10.0, 22.0], dtype=np.float32)
PAINT_REFLECTIVITY = 70.0
NOISE_LABEL = raw_index("noise")
EGO_LABEL = raw_index("vehicle.ego")
SPURIOUS_RATE = 1e-3  # share of returns replaced by spurious ones (dust, multipath)
SPURIOUS = -3  # `LidarSweep.solid` of a spurious return


@dataclass(frozen=True)
class LidarSweep:
    """One sweep: ``points`` ``(N, 5)`` float32 ``x, y, z, intensity, ring`` in the sensor frame."""

    points: np.ndarray
    labels: np.ndarray  # (N,) uint8, raw lidarseg index
    scene_points: np.ndarray  # (N, 3) float64, the same points in the scene frame
    solid: np.ndarray  # (N,) int32, solid hit (raycast.GROUND for the ground, SPURIOUS)


def ego_solids(ego_xy: tuple[float, float], ego_yaw: float) -> Solids:
    """The ego vehicle's boxes (`EGO_BOXES`) at an ego pose in the scene frame."""
    boxes = np.array(EGO_BOXES, dtype=np.float64)
    centre_ego = np.stack([boxes[:, 0:2].mean(1), boxes[:, 2:4].mean(1), boxes[:, 4:6].mean(1)], axis=1)
    cos, sin = np.cos(ego_yaw), np.sin(ego_yaw)
    centre = np.stack(
        [
            ego_xy[0] + cos * centre_ego[:, 0] - sin * centre_ego[:, 1],
            ego_xy[1] + sin * centre_ego[:, 0] + cos * centre_ego[:, 1],
            centre_ego[:, 2],
        ],
        axis=1,
    )
    n = len(boxes)
    return Solids(
        shape=np.full(n, Shape.BOX, dtype=np.int8),
        center=centre,
        half=np.stack([np.diff(boxes[:, 0:2]), np.diff(boxes[:, 2:4]), np.diff(boxes[:, 4:6])], axis=1)[
            ..., 0
        ]
        / 2,
        yaw=np.full(n, ego_yaw),
        label=np.full(n, EGO_LABEL, dtype=np.uint8),
        style=np.full(n, Style.EGO, dtype=np.int8),
        color=np.full((n, 3), 200, dtype=np.uint8),
        reflectivity=np.full(n, 4.0, dtype=np.float32),
        instance=np.full(n, -1, dtype=np.int32),
    )


def _azimuth_windows(
    solids: Solids, origin: np.ndarray, to_sensor: np.ndarray, model: LidarModel, phase: float
) -> list[Window]:
    """Firing-column windows of each solid within range, from its corners' azimuths in the sensor frame."""
    corners = (solids.corners() - origin) @ to_sensor.T  # (N, 8, 3) in the sensor frame
    centre = corners.mean(axis=1)
    radius = np.linalg.norm(corners - centre[:, None], axis=2).max(axis=1)
    in_range = np.linalg.norm(centre, axis=1) - radius < model.max_range
    steps = model.azimuth_steps
    step = 2 * np.pi / steps
    windows = []
    for i in np.flatnonzero(in_range):
        xy = corners[i, :, :2]
        surrounds = xy[:, 0].min() <= 0 <= xy[:, 0].max() and xy[:, 1].min() <= 0 <= xy[:, 1].max()
        if surrounds:  # the sensor is above or inside: every azimuth
            windows.append(Window(int(i), 0, model.rings, 0, steps))
            continue
        mid = np.arctan2(centre[i, 1], centre[i, 0])
        rel = np.angle(np.exp(1j * (np.arctan2(xy[:, 1], xy[:, 0]) - mid)))  # wrapped to (-π, π]
        first = int(np.floor((mid + rel.min() - phase) / step)) - 1
        last = int(np.ceil((mid + rel.max() - phase) / step)) + 2
        first_wrapped = first % steps
        span = min(last - first, steps)
        if first_wrapped + span <= steps:
            windows.append(Window(int(i), 0, model.rings, first_wrapped, first_wrapped + span))
        else:
            windows.append(Window(int(i), 0, model.rings, first_wrapped, steps))
            windows.append(Window(int(i), 0, model.rings, 0, first_wrapped + span - steps))
    return windows


def sweep(
    world: World,
    origin: np.ndarray,
    to_scene: np.ndarray,
    ego_xy: tuple[float, float],
    ego_yaw: float,
    model: LidarModel,
    rng: np.random.Generator,
) -> LidarSweep:
    """Cast one revolution from a sensor at ``origin`` whose frame rotates into the scene by ``to_scene``."""
    solids = Solids.concatenate([world.solids, ego_solids(ego_xy, ego_yaw)])
    phase = float(rng.uniform(0, 2 * np.pi / model.azimuth_steps))
    beams = model.directions(phase)  # (rings, firings, 3), sensor frame
    directions = beams @ to_scene.T
    windows = _azimuth_windows(solids, origin, to_scene.T, model, phase)
    hits = cast(solids, origin, directions, windows, model.max_range)

    # Firing-major order, as the real files: transpose (rings, firings) to (firings, rings).
    distance = hits.distance.T.reshape(-1)
    solid = hits.solid.T.reshape(-1)
    face = hits.face.T.reshape(-1)
    beam = beams.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.tile(np.arange(model.rings, dtype=np.float32), model.azimuth_steps)
    keep = solid != MISS
    distance, solid, face, beam, ring = distance[keep], solid[keep], face[keep], beam[keep], ring[keep]
    n = distance.shape[0]

    scene_dir = beam @ to_scene.T
    surface = origin + distance[:, None].astype(np.float64) * scene_dir
    labels = np.empty(n, dtype=np.uint8)
    reflectivity = np.empty(n, dtype=np.float32)
    cos_incidence = np.empty(n, dtype=np.float32)
    on_ground = solid == GROUND
    on_solid = ~on_ground
    index = solid[on_solid]
    style = np.full(n, -1, dtype=np.int8)  # the hit solid's Style; -1 on the road plane
    style[on_solid] = solids.style[index]
    labels[on_solid] = solids.label[index]
    reflectivity[on_solid] = solids.reflectivity[index]
    cos_incidence[on_solid] = _cos_incidence(
        solids, index, face[on_solid], surface[on_solid], scene_dir[on_solid]
    )
    cos_incidence[on_ground] = np.abs(scene_dir[on_ground, 2])
    # The road plane and the raised ground (kerb slabs) both take the material under the hit.
    ground_like = on_ground | (style == Style.KERBSIDE)
    sample = ground_sample(solids, solid[ground_like], surface[ground_like])
    material = world.layout.material(sample[:, 0], sample[:, 1])
    painted = world.layout.paint(sample[:, 0], sample[:, 1]) > 0
    painted &= (material == Ground.ROAD) & on_ground[ground_like]
    labels[ground_like] = GROUND_LABELS[material]
    reflectivity[ground_like] = np.where(painted, PAINT_REFLECTIVITY, GROUND_REFLECTIVITY[material])

    # Range noise; leaves let the beam in a little before it returns, windows into the room behind.
    noisy = distance + rng.normal(0.0, model.range_noise, n).astype(np.float32)
    foliage = style == Style.FOLIAGE
    noisy[foliage] += rng.exponential(0.12, int(foliage.sum())).astype(np.float32)
    walls = np.flatnonzero(style == Style.BUILDING)
    local = solids.to_local(solid[walls], surface[walls])
    window = np.zeros(n, dtype=bool)
    window[walls] = facade_windows(local, solids.half[solid[walls]], (face[walls] // 2).astype(np.int8))
    room = rng.uniform(0.5, 4.0, int(window.sum())).astype(np.float32)
    noisy[window] += np.minimum(room, np.maximum(model.max_range - noisy[window], 0.0))  # within range
    spurious = rng.random(n) < SPURIOUS_RATE  # a return from somewhere before the surface
    early = rng.uniform(1.0, np.maximum(noisy[spurious], 1.5))
    noisy[spurious] = early.astype(np.float32)
    labels[spurious] = NOISE_LABEL
    solid = np.where(spurious, SPURIOUS, solid).astype(np.int32)
    reflectivity[spurious] = 3.0

    intensity = reflectivity * (0.35 + 0.65 * cos_incidence)
    intensity = intensity + rng.normal(0.0, 1.0, n).astype(np.float32) * (1.0 + 0.12 * intensity)
    intensity = np.clip(np.rint(intensity), 0, 255).astype(np.float32)

    xyz = noisy[:, None] * beam.astype(np.float32)
    points = np.column_stack([xyz, intensity, ring]).astype(np.float32)
    scene_points = origin + noisy[:, None].astype(np.float64) * scene_dir
    return LidarSweep(points, labels, scene_points, solid)


def _cos_incidence(
    solids: Solids, index: np.ndarray, face: np.ndarray, points: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """|cos| of the angle between each ray and the surface normal where it hits."""
    normal = np.zeros((index.shape[0], 3), dtype=np.float64)
    boxes = face >= 0
    axis = face[boxes] // 2
    normal[np.flatnonzero(boxes), axis] = 1.0  # sign is irrelevant for |cos|
    ellipsoid = ~boxes
    local = solids.to_local(index[ellipsoid], points[ellipsoid])
    normal[ellipsoid] = local / solids.half[index[ellipsoid]] ** 2
    yaw = solids.yaw[index]
    cos, sin = np.cos(yaw), np.sin(yaw)
    world_normal = np.stack(
        [cos * normal[:, 0] - sin * normal[:, 1], sin * normal[:, 0] + cos * normal[:, 1], normal[:, 2]],
        axis=1,
    )
    world_normal /= np.linalg.norm(world_normal, axis=1, keepdims=True) + 1e-12
    return np.abs(np.einsum("ij,ij->i", world_normal, directions)).astype(np.float32)
