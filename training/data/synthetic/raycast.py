"""Ray casting against a world: the ground plane z = 0 and box / ellipsoid solids.

Both sensors cast one ray grid from a single origin: the LiDAR a (rings × firings) grid, a camera a
(rows × columns) pixel grid. Each solid is tested only on the sub-grid it can cover (a `Window`), which
the sensor computes from the solid's corners; this makes the cost proportional to the screen area of
each solid instead of rays × solids. The nearest hit wins, so occlusion is exact for both sensors
and both see the same surfaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from training.data.synthetic.world import Shape, Solids

__all__ = ["GROUND", "MISS", "Hits", "Window", "cast"]

GROUND = -1  # `Hits.solid` of a ray that ends on the ground
MISS = -2  # ... of a ray with nothing within range


@dataclass(frozen=True)
class Window:
    """Solid ``solid`` may be hit only by the rays ``[row0:row1, col0:col1]`` of the grid."""

    solid: int
    row0: int
    row1: int
    col0: int
    col1: int


@dataclass(frozen=True)
class Hits:
    """First hit of every ray of a grid ``(rows, cols)``."""

    distance: np.ndarray  # float32 along the (unit) ray; inf on a miss
    solid: np.ndarray  # int32: solid row, GROUND or MISS
    face: np.ndarray  # int8: box face 0..5 (axis * 2 + (positive side)), -1 otherwise
    covered: np.ndarray  # (num solids,) int64: rays meeting the solid within range, occluded or not


def cast(
    solids: Solids,
    origin: np.ndarray,
    directions: np.ndarray,
    windows: Iterable[Window],
    max_range: float,
) -> Hits:
    """Nearest hits of unit rays ``directions`` ``(rows, cols, 3)`` from ``origin`` (scene frame).

    A ray starting inside a solid does not hit that solid (cameras inside the ego's bounding boxes).
    """
    dx, dy, dz = (np.ascontiguousarray(directions[..., i], dtype=np.float32) for i in range(3))
    shape = dx.shape
    distance = np.full(shape, np.inf, dtype=np.float32)
    solid = np.full(shape, MISS, dtype=np.int32)
    face = np.full(shape, -1, dtype=np.int8)
    covered = np.zeros(len(solids), dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(dz < 0, np.float32(-origin[2]) / dz, np.inf).astype(np.float32)
    ground_hit = ground <= max_range
    distance[ground_hit] = ground[ground_hit]
    solid[ground_hit] = GROUND

    for w in windows:
        rows, cols = slice(w.row0, w.row1), slice(w.col0, w.col1)
        if w.row1 <= w.row0 or w.col1 <= w.col0:
            continue
        # The ray in the solid's frame: shared origin, per-ray direction.
        cos, sin = np.cos(solids.yaw[w.solid]), np.sin(solids.yaw[w.solid])
        offset = origin - solids.center[w.solid]
        o = np.array([cos * offset[0] + sin * offset[1], -sin * offset[0] + cos * offset[1], offset[2]])
        wx, wy, wz = dx[rows, cols], dy[rows, cols], dz[rows, cols]
        d = (np.float32(cos) * wx + np.float32(sin) * wy, np.float32(-sin) * wx + np.float32(cos) * wy, wz)
        half = solids.half[w.solid]
        if solids.shape[w.solid] == Shape.BOX:
            t, axis = _box(o, d, half)
        else:
            t, axis = _ellipsoid(o, d, half), None
        t = np.where(t <= max_range, t, np.inf)  # inf already for no hit
        covered[w.solid] += int(np.count_nonzero(np.isfinite(t)))
        current = distance[rows, cols]
        nearer = t < current
        if not nearer.any():
            continue
        current[nearer] = t[nearer]  # views: write through into the grids
        solid[rows, cols][nearer] = w.solid
        if axis is not None:
            positive = np.choose(axis, d) < 0  # travelling towards -axis: it enters the + face
            face[rows, cols][nearer] = (axis * 2 + positive)[nearer]
        else:
            face[rows, cols][nearer] = -1
    return Hits(distance, solid, face, covered)


def _box(o: np.ndarray, d: tuple[np.ndarray, ...], half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry distance (inf: no hit, or the origin is inside) and the entry axis."""
    near, far = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            inv = np.float32(1.0) / d[axis]
            t1 = np.float32(-half[axis] - o[axis]) * inv
            t2 = np.float32(half[axis] - o[axis]) * inv
            near.append(np.minimum(t1, t2))
            far.append(np.maximum(t1, t2))
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    hit = (t_near <= t_far) & (t_near > 0)
    axis = np.where(near[0] >= near[1], 0, 1)
    axis = np.where(near[2] > np.maximum(near[0], near[1]), 2, axis).astype(np.int8)
    return np.where(hit, t_near, np.inf).astype(np.float32), axis


def _ellipsoid(o: np.ndarray, d: tuple[np.ndarray, ...], half: np.ndarray) -> np.ndarray:
    """Entry distance into an ellipsoid of semi-axes ``half`` (inf: no hit, or the origin is inside)."""
    inv = (1.0 / half).astype(np.float32)
    os = (o / half).astype(np.float32)
    ds = (d[0] * inv[0], d[1] * inv[1], d[2] * inv[2])
    a = ds[0] * ds[0] + ds[1] * ds[1] + ds[2] * ds[2]
    b = os[0] * ds[0] + os[1] * ds[1] + os[2] * ds[2]  # half of the usual b
    c = np.float32(os @ os - 1.0)
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    hit = (disc >= 0) & (t > 0) & (c > 0)
    return np.where(hit, t, np.inf).astype(np.float32)
