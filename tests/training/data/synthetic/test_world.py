"""Procedural worlds: every category near the drive, objects that fill their boxes and keep apart,
the ground laid out across the road as the module says."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.data.synthetic.plan import scene_rng
from training.data.synthetic.world import (
    CATEGORIES,
    GROUND_LABELS,
    SHELL,
    Ground,
    World,
    build_world,
    raw_index,
)

PATH = (-6.0, 6.0)


@pytest.fixture(
    scope="module", params=[(0, False), (1, True), (2, False), (3, True)], ids=lambda p: f"seed{p[0]}"
)
def world(request) -> World:
    seed, left = request.param
    return build_world(scene_rng(seed, 0, 0, 1), PATH, left_hand_traffic=left)


def _rectangle(center: tuple[float, ...], length: float, width: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    return corners @ np.array([[c, s], [-s, c]]) + center[:2]


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex polygons."""
    for polygon in (a, b):
        for i in range(len(polygon)):
            edge = polygon[(i + 1) % len(polygon)] - polygon[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def test_every_category_is_near_the_drive(world: World) -> None:
    near = {o.category for o in world.objects if abs(o.center[0]) < 60}
    assert near == set(CATEGORIES)


def test_objects_fill_their_boxes(world: World) -> None:
    solids = world.solids
    for index, obj in enumerate(world.objects):
        width, length, height = obj.size
        spec = CATEGORIES[obj.category]
        assert all(
            abs(s - m) < 5 * d + 1e-9 for s, m, d in zip(obj.size, spec.size, spec.spread, strict=True)
        )
        assert obj.center[2] == pytest.approx(height / 2)  # standing on the ground
        assert np.allclose(solids.center[obj.solid], obj.center)
        assert np.allclose(solids.half[obj.solid], np.array([length, width, height]) / 2 - SHELL)
        assert solids.yaw[obj.solid] == pytest.approx(obj.yaw)
        assert solids.instance[obj.solid] == index and solids.label[obj.solid] == raw_index(obj.category)


def test_objects_keep_apart_and_off_the_ego_lane(world: World) -> None:
    footprints = [_rectangle(o.center, o.size[1], o.size[0], o.yaw) for o in world.objects]
    clashes = [(a, b) for a, b in itertools.combinations(range(len(footprints)), 2)
               if _overlap(footprints[a], footprints[b])]  # fmt: skip
    assert clashes == []
    lane = world.ego_lane_y()
    corridor = _rectangle((0.0, lane), PATH[1] - PATH[0] + 8.0, 2.0, 0.0)
    assert not any(_overlap(corridor, f) for f in footprints)


def test_ground_layout_across_the_road(world: World) -> None:
    layout = world.layout
    assert np.sign(world.ego_lane_y()) == layout.ego_side == (1 if layout.left_hand_traffic else -1)
    y = np.array([layout.road_half_width - 0.1, layout.road_half_width + 0.1, layout.sidewalk_outer + 0.1])
    for side in (-1, 1):
        material = layout.material(np.full(3, 1e4), side * y)  # far along x: no patches there
        assert material.tolist() == [Ground.ROAD, Ground.SIDEWALK, Ground.TERRAIN]
    centre = layout.material(np.zeros(1), np.zeros(1))[0]
    assert centre == (Ground.OTHER if layout.median_half_width else Ground.ROAD)
    patches = layout.patches
    assert patches and all(min(abs(y0), abs(y1)) >= layout.sidewalk_outer - 1e-9 for _, _, y0, y1 in patches)
    names = ["flat.driveable_surface", "flat.sidewalk", "flat.terrain", "flat.other"]
    assert GROUND_LABELS.tolist() == [raw_index(n) for n in names]


def test_scenery_classes_are_present(world: World) -> None:
    labels = set(world.solids.label.tolist())
    assert {raw_index("static.manmade"), raw_index("static.vegetation")} <= labels


def test_the_same_generator_state_gives_the_same_world() -> None:
    a = build_world(scene_rng(5, 1, 0, 1), PATH, False)
    b = build_world(scene_rng(5, 1, 0, 1), PATH, False)
    assert a.objects == b.objects and np.array_equal(a.solids.center, b.solids.center)
