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
    Shape,
    Style,
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
        # standing on the ground: the road, or the kerb's top off the carriageway
        assert obj.center[2] == pytest.approx(world.layout.base(obj.center[1]) + height / 2)
        mine = np.flatnonzero(solids.instance == index)
        assert obj.solid in mine and (solids.label[mine] == raw_index(obj.category)).all()
        assert np.allclose(solids.yaw[mine], obj.yaw)
        if spec.style != Style.CAR:
            assert mine.tolist() == [obj.solid]
            assert np.allclose(solids.center[obj.solid], obj.center)
            assert np.allclose(solids.half[obj.solid], np.array([length, width, height]) / 2 - SHELL)
            continue
        # A car: a body box from the ground to the window line, and a cabin dome on it, up to the roof.
        body, cabin = obj.solid, int(mine[mine != obj.solid][0])
        assert (
            len(mine) == 2 and solids.shape[cabin] == Shape.ELLIPSOID and solids.style[cabin] == Style.CABIN
        )
        bottom = obj.center[2] - height / 2
        assert solids.center[body, 2] - solids.half[body, 2] == pytest.approx(bottom + SHELL)
        window_line = solids.center[body, 2] + solids.half[body, 2] + SHELL
        assert 0.5 * height - 1e-9 <= window_line - bottom <= 0.62 * height + 1e-9
        assert solids.center[cabin, 2] == pytest.approx(window_line)
        assert solids.center[cabin, 2] + solids.half[cabin, 2] == pytest.approx(bottom + height - SHELL)
        # Every corner of each solid's bounding box lies inside the annotation box.
        c, s = np.cos(obj.yaw), np.sin(obj.yaw)
        offset = solids.corners()[mine].reshape(-1, 3) - obj.center
        local = np.stack([c * offset[:, 0] + s * offset[:, 1], -s * offset[:, 0] + c * offset[:, 1]], 1)
        assert (np.abs(local) <= np.array([length, width]) / 2 + 1e-9).all()


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


def test_off_the_carriageway_the_ground_is_raised_by_a_kerb(world: World) -> None:
    layout, solids = world.layout, world.solids
    assert 0.08 <= layout.kerb_height <= 0.2
    kerbside = np.flatnonzero(solids.style == Style.KERBSIDE)
    assert len(kerbside) == (3 if layout.median_half_width else 2)
    top = solids.center[kerbside, 2] + solids.half[kerbside, 2]
    bottom = solids.center[kerbside, 2] - solids.half[kerbside, 2]
    assert np.allclose(top, layout.kerb_height) and np.allclose(bottom, 0.0)
    # The slabs start at the kerb line each side (and span the median), and cover the drive's surroundings.
    inner = np.abs(solids.center[kerbside, 1]) - solids.half[kerbside, 1]
    expected = [layout.road_half_width] * 2 + (
        [-layout.median_half_width] if layout.median_half_width else []
    )
    assert sorted(inner.tolist()) == pytest.approx(sorted(expected))
    assert (solids.center[kerbside, 0] - solids.half[kerbside, 0] < -130).all()
    assert (solids.center[kerbside, 0] + solids.half[kerbside, 0] > 130).all()
    # Scenery off the road stands on the kerb's top (boxes), or sits in it (bushes, centre above it).
    scenery = (solids.instance < 0) & (solids.style != Style.KERBSIDE)
    scenery &= np.abs(solids.center[:, 1]) > layout.road_half_width + 0.5
    boxes = scenery & (solids.shape == Shape.BOX)
    feet = solids.center[boxes, 2] - solids.half[boxes, 2]
    assert boxes.sum() > 20 and (feet >= layout.kerb_height - 1e-9).all()
    assert (solids.center[scenery, 2] > layout.kerb_height).all()


def test_fences_run_along_the_back_of_the_sidewalk(world: World) -> None:
    layout, solids = world.layout, world.solids
    fences = np.flatnonzero(solids.style == Style.FENCE)
    assert (solids.label[fences] == raw_index("static.manmade")).all()
    inner = np.abs(solids.center[fences, 1]) - solids.half[fences, 1]
    assert np.allclose(inner, layout.sidewalk_outer + 0.15)
    assert solids.center[fences, 2] - solids.half[fences, 2] == pytest.approx(layout.kerb_height)
    assert ((solids.half[fences, 2] >= 0.4) & (solids.half[fences, 2] <= 1.0)).all()


def test_some_worlds_have_fences() -> None:
    counts = [
        int((build_world(scene_rng(seed, 0, 0, 1), PATH, False).solids.style == Style.FENCE).sum())
        for seed in range(6)
    ]
    assert sum(c > 0 for c in counts) >= 4, counts


def test_scenery_classes_are_present(world: World) -> None:
    labels = set(world.solids.label.tolist())
    assert {raw_index("static.manmade"), raw_index("static.vegetation")} <= labels


def test_the_same_generator_state_gives_the_same_world() -> None:
    a = build_world(scene_rng(5, 1, 0, 1), PATH, False)
    b = build_world(scene_rng(5, 1, 0, 1), PATH, False)
    assert a.objects == b.objects and np.array_equal(a.solids.center, b.solids.center)
