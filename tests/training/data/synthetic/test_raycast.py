"""Ray casting against analytic cases: distances, faces, ground, occlusion, windows."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.synthetic.raycast import GROUND, MISS, Window, cast
from training.data.synthetic.world import Shape, Solids


def _solids(*rows: tuple[Shape, tuple[float, float, float], tuple[float, float, float], float]) -> Solids:
    n = len(rows)
    return Solids(
        shape=np.array([r[0] for r in rows], dtype=np.int8),
        center=np.array([r[1] for r in rows], dtype=np.float64).reshape(n, 3),
        half=np.array([r[2] for r in rows], dtype=np.float64).reshape(n, 3),
        yaw=np.array([r[3] for r in rows], dtype=np.float64),
        label=np.zeros(n, dtype=np.uint8),
        style=np.zeros(n, dtype=np.int8),
        color=np.zeros((n, 3), dtype=np.uint8),
        reflectivity=np.zeros(n, dtype=np.float32),
        instance=np.full(n, -1, dtype=np.int32),
    )


def _rays(*directions: tuple[float, float, float]) -> np.ndarray:
    d = np.array(directions, dtype=np.float64)
    return (d / np.linalg.norm(d, axis=1, keepdims=True))[None]  # a (1, n, 3) grid


def _everywhere(solids: Solids, rays: np.ndarray) -> list[Window]:
    return [Window(i, 0, rays.shape[0], 0, rays.shape[1]) for i in range(len(solids))]


def test_box_entry_distance_and_face() -> None:
    solids = _solids((Shape.BOX, (10, 0, 1), (1, 2, 1), 0.0), (Shape.BOX, (0, -10, 1), (2, 1, 1), np.pi / 2))
    rays = _rays((1, 0, 0), (0, -1, 0), (-1, 0, 0))
    hits = cast(solids, np.array([0.0, 0.0, 1.0]), rays, _everywhere(solids, rays), 100.0)
    assert hits.distance[0, :2] == pytest.approx([9.0, 8.0])  # the second box is turned: 2 m half-length
    assert hits.solid[0].tolist() == [0, 1, MISS]
    # Entering through the -x face of box 0; through the +x face (its own frame) of the turned box 1.
    assert hits.face[0, :2].tolist() == [0, 1]
    assert hits.covered.tolist() == [1, 1]


def test_ground_and_range() -> None:
    solids = _solids()
    rays = _rays((1, 0, -1), (1, 0, -0.01), (0, 1, 0.2))
    hits = cast(solids, np.array([0.0, 0.0, 2.0]), rays, [], 50.0)
    assert hits.distance[0, 0] == pytest.approx(2 * np.sqrt(2), rel=1e-6)
    assert hits.solid[0].tolist() == [GROUND, MISS, MISS]  # the second ray meets the ground at 200 m


def test_nearest_surface_wins_and_a_ray_from_inside_ignores_its_box() -> None:
    solids = _solids(
        (Shape.BOX, (10, 0, 0), (1, 1, 1), 0.0),
        (Shape.BOX, (5, 0, 0), (1, 1, 1), 0.0),
        (Shape.BOX, (0, 0, 0), (1, 1, 1), 0.0),  # around the origin
    )
    rays = _rays((1, 0, 0))
    hits = cast(solids, np.zeros(3), rays, _everywhere(solids, rays), 100.0)
    assert hits.solid[0, 0] == 1 and hits.distance[0, 0] == pytest.approx(4.0)
    assert hits.covered.tolist() == [1, 1, 0]


def test_windows_limit_which_rays_test_a_solid() -> None:
    solids = _solids((Shape.BOX, (10, 0, 0), (1, 5, 1), 0.0))
    rays = _rays((1, 0, 0), (1, 0.1, 0))
    hits = cast(solids, np.zeros(3), rays, [Window(0, 0, 1, 1, 2)], 100.0)
    assert hits.solid[0].tolist() == [MISS, 0]


def test_ellipsoid_distance() -> None:
    solids = _solids(
        (Shape.ELLIPSOID, (10, 0, 0), (2, 2, 2), 0.3), (Shape.ELLIPSOID, (0, 10, 0), (1, 3, 1), 0.0)
    )
    rays = _rays((1, 0, 0), (10, 1, 0), (0, 1, 0))
    hits = cast(solids, np.zeros(3), rays, _everywhere(solids, rays), 100.0)
    assert hits.distance[0, 0] == pytest.approx(8.0, rel=1e-5)
    # Off-axis ray through the sphere: the entry distance along the unit ray.
    d = np.array([10.0, 1.0, 0.0]) / np.sqrt(101)
    along = 10 * d[0]
    assert hits.distance[0, 1] == pytest.approx(along - np.sqrt(4 - (100 - along**2)), rel=1e-5)
    assert hits.distance[0, 2] == pytest.approx(7.0, rel=1e-5) and hits.face[0, 2] == -1
