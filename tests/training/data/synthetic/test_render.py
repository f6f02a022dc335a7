"""Camera rays go through pixel centres with the camera's intrinsics: the horizon and a box land where
the pinhole model puts them."""

from __future__ import annotations

import numpy as np

from training.data.synthetic.raycast import GROUND, MISS
from training.data.synthetic.render import RENDER_RANGE, render_camera
from training.data.synthetic.sensors import RIGS
from training.data.synthetic.world import RoadLayout, Shape, Solids, Style, World, raw_index

# Camera frame (x right, y down, z forward) → scene: looking along +x, level.
LEVEL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
LAYOUT = RoadLayout(3.5, 2.5, 0.0, 3.0, False, (), (), (150, 150, 150))


def _world(*boxes: tuple[tuple[float, float, float], tuple[float, float, float]]) -> World:
    n = len(boxes)
    solids = Solids(
        shape=np.full(n, Shape.BOX, dtype=np.int8),
        center=np.array([b[0] for b in boxes], dtype=np.float64).reshape(n, 3),
        half=np.array([b[1] for b in boxes], dtype=np.float64).reshape(n, 3),
        yaw=np.zeros(n),
        label=np.full(n, raw_index("vehicle.car"), dtype=np.uint8),
        style=np.full(n, Style.CAR, dtype=np.int8),
        color=np.full((n, 3), (200, 30, 30), dtype=np.uint8),
        reflectivity=np.ones(n, dtype=np.float32),
        instance=np.arange(n, dtype=np.int32),
    )
    return World(LAYOUT, solids, (), (0.3, 0.3, 0.9))


def test_horizon_row_follows_the_principal_point() -> None:
    camera = RIGS["n008"]["CAM_FRONT"]
    view = render_camera(_world(), camera, np.array([0.0, 0.0, 1.5]), LEVEL, np.random.default_rng(0), 0.5)
    assert view.image.shape == (900, 1600, 3) and view.solid.shape == (450, 800)
    cy, f = camera.principal[1], camera.focal
    rows = (np.arange(450) + 0.5) / 0.5  # full-resolution v of each reduced row's centre
    sky, ground = rows < cy, rows > cy + f * 1.5 / RENDER_RANGE + 2
    assert (view.solid[sky] == MISS).all() and (view.solid[ground] == GROUND).all()
    # Sky is bluer than the road.
    assert view.image[10].mean(axis=0)[2] > view.image[-10].mean(axis=0)[2]


def test_a_box_shows_where_it_projects() -> None:
    camera = RIGS["n008"]["CAM_FRONT"]
    world = _world(((20.0, 3.0, 1.0), (2.0, 1.0, 1.0)))
    view = render_camera(world, camera, np.array([0.0, 0.0, 1.5]), LEVEL, np.random.default_rng(0), 0.5)
    (cx, cy), f = camera.principal, camera.focal
    # The near face's centre (18, 3, 1): camera x = -3 (left), y = 0.5 (down), depth 18.
    u, v = cx + f * -3 / 18, cy + f * 0.5 / 18
    assert view.solid[int(v * 0.5), int(u * 0.5)] == 0
    assert view.visible[0] == view.covered[0] == (view.solid == 0).sum() > 1000
    # Its corners project onto the edge of what it covers (within a reduced pixel).
    rows, cols = np.nonzero(view.solid == 0)
    left, top = cx + f * -4 / 18, cy + f * -0.5 / 18
    assert abs(cols.min() - left * 0.5) <= 1.0 and abs(rows.min() - top * 0.5) <= 1.0
