"""A LIDAR_TOP sweep: nuScenes file layout and order, ego roof returns, labels that match the world."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.synthetic.lidar import LidarSweep, sweep
from training.data.synthetic.plan import scene_rng
from training.data.synthetic.raycast import GROUND
from training.data.synthetic.sensors import HDL32E, HDL64E, RIGS
from training.data.synthetic.world import RoadLayout, Solids, Style, World, build_world, raw_index


@pytest.fixture(scope="module")
def scene() -> tuple[World, LidarSweep, np.ndarray, np.ndarray]:
    world = build_world(scene_rng(4, 0, 0, 1), (-5.0, 5.0), left_hand_traffic=False)
    lidar = RIGS["n008"]["LIDAR_TOP"]
    ego = (0.0, world.ego_lane_y())
    origin = np.array([ego[0], ego[1], 0.0]) + lidar.translation
    rotation = lidar.rotation_matrix()  # the ego drives along the scene x axis: yaw 0
    return world, sweep(world, origin, rotation, ego, 0.0, HDL32E, scene_rng(4, 0, 1, 0)), origin, rotation


def test_points_are_in_firing_order_with_rings(scene) -> None:
    _, result, _, _ = scene
    points = result.points
    assert points.dtype == np.float32 and points.shape[1] == 5
    assert 25_000 < points.shape[0] <= 32 * 1085
    ring = points[:, 4].astype(int)
    # Within a firing rings increase; a new firing starts when the ring number drops.
    starts = np.flatnonzero(np.diff(ring) <= 0)
    assert 1000 < starts.size < 1085
    elevation = np.degrees(np.arctan2(points[:, 2], np.linalg.norm(points[:, :2], axis=1)))
    far = np.linalg.norm(points[:, :3], axis=1) > 5
    for r in (10, 15, 31):
        measured = np.median(elevation[far & (ring == r)])
        assert measured == pytest.approx(-30.67 + r * 4 / 3, abs=0.6)  # the frame tilts < 1.2°


def test_ego_roof_returns_like_real_sweeps(scene) -> None:
    _, result, _, _ = scene
    ego = result.labels == raw_index("vehicle.ego")
    rings = np.bincount(result.points[ego, 4].astype(int), minlength=32)
    assert 3_000 < ego.sum() < 8_000
    assert rings[0] > 900 and rings[8:].sum() < 100  # real sweeps: ring 0 ~900, fading out by ring 8
    assert np.linalg.norm(result.points[ego, :3], axis=1).max() < 3.0


def test_labels_match_what_was_hit(scene) -> None:
    world, result, origin, rotation = scene
    # Points in the sensor frame and in the scene frame are the same points.
    assert np.allclose(result.points[:, :3] @ rotation.T + origin, result.scene_points, atol=1e-3)
    ground = result.solid == GROUND
    assert np.abs(result.scene_points[ground, 2]).max() < 0.06
    flat = {raw_index(n) for n in ("flat.driveable_surface", "flat.sidewalk", "flat.terrain", "flat.other")}
    assert set(np.unique(result.labels[ground]).tolist()) <= flat
    # Returns from an object carry its class and lie inside its annotation box (range noise included).
    inside = total = 0
    for obj in world.objects:
        mine = result.solid == obj.solid
        if not mine.any():
            continue
        assert (result.labels[mine] == raw_index(obj.category)).all()
        offset = result.scene_points[mine] - obj.center
        c, s = np.cos(obj.yaw), np.sin(obj.yaw)
        local = np.stack(
            [c * offset[:, 0] + s * offset[:, 1], -s * offset[:, 0] + c * offset[:, 1], offset[:, 2]], 1
        )
        width, length, height = obj.size
        inside += int((np.abs(local) <= [length / 2, width / 2, height / 2]).all(axis=1).sum())
        total += int(mine.sum())
    assert total > 1000 and inside / total > 0.95
    assert (result.labels == 0).sum() > 0  # a few spurious returns


def test_intensity_follows_materials() -> None:
    """Dark asphalt, brighter paint and car bodies, retro-reflective cones, on a street of three solids."""
    layout = RoadLayout(3.5, 2.5, 0.0, 3.0, False, (), (), (150, 150, 150))
    rows = [((8.0, 3.0, 0.86), (2.3, 1.0, 0.86), "vehicle.car", 35.0), ((6.0, -3.0, 0.5), (0.2, 0.2, 0.5),
            "movable_object.trafficcone", 140.0)]  # fmt: skip
    solids = Solids(
        shape=np.zeros(2, dtype=np.int8),
        center=np.array([r[0] for r in rows]),
        half=np.array([r[1] for r in rows]),
        yaw=np.zeros(2),
        label=np.array([raw_index(r[2]) for r in rows], dtype=np.uint8),
        style=np.zeros(2, dtype=np.int8),
        color=np.zeros((2, 3), dtype=np.uint8),
        reflectivity=np.array([r[3] for r in rows], dtype=np.float32),
        instance=np.full(2, -1, dtype=np.int32),
    )
    world = World(layout, solids, (), (0.0, 0.0, 1.0))
    lidar = RIGS["n015"]["LIDAR_TOP"]
    result = sweep(world, np.array(lidar.translation), lidar.rotation_matrix(), (0.0, 0.0), 0.0, HDL32E,
                   np.random.default_rng(0))  # fmt: skip
    intensity, labels = result.points[:, 3], result.labels
    assert intensity.min() >= 0 and intensity.max() <= 255 and np.array_equal(intensity, np.round(intensity))
    road = labels == raw_index("flat.driveable_surface")
    paint = road & (np.abs(np.abs(result.scene_points[:, 1]) - 3.5) < 0.05)  # the lane edge line
    masks = {
        "asphalt": road & ~paint,
        "paint": paint,
        "car": labels == raw_index("vehicle.car"),
        "cone": labels == raw_index("movable_object.trafficcone"),
    }
    medians = {name: np.median(intensity[mask]) for name, mask in masks.items()}
    assert medians["asphalt"] < medians["car"] < medians["cone"], medians
    assert medians["asphalt"] < medians["paint"], medians


def test_the_kerb_lifts_the_sidewalk_and_its_face_is_sidewalk(scene) -> None:
    """Road returns lie at z = 0, sidewalk returns on the kerb's top, and the kerb's face (between the
    two, at the road's edge) returns sidewalk, as SemanticKITTI labels kerbs."""
    world, result, _, _ = scene
    layout, z = world.layout, result.scene_points[:, 2]
    road = result.labels == raw_index("flat.driveable_surface")
    walk = result.labels == raw_index("flat.sidewalk")
    noise = 4 * HDL32E.range_noise
    assert np.abs(np.median(z[road])) < 0.01 and np.abs(z[road]).max() < noise + 0.01
    assert np.median(z[walk]) == pytest.approx(layout.kerb_height, abs=0.01)
    face = walk & (z < layout.kerb_height - noise) & (z > noise)
    assert face.sum() > 20
    edge = np.abs(np.abs(result.scene_points[face, 1]) - layout.road_half_width)
    assert np.median(edge) < 0.02


def test_an_hdl64e_sweep_has_64_rings_and_four_times_the_returns(scene) -> None:
    world, result32, origin, rotation = scene
    ego = (0.0, world.ego_lane_y())
    result = sweep(world, origin, rotation, ego, 0.0, HDL64E, scene_rng(4, 0, 1, 0))
    points = result.points
    ring = points[:, 4].astype(int)
    assert ring.max() == 63 and 3.0 < points.shape[0] / result32.points.shape[0] < 4.5
    starts = np.flatnonzero(np.diff(ring) <= 0)  # firing order, as for the HDL-32E
    assert 1900 < starts.size < 2083
    elevation = np.degrees(np.arctan2(points[:, 2], np.linalg.norm(points[:, :2], axis=1)))
    far = np.linalg.norm(points[:, :3], axis=1) > 5
    table = np.degrees(HDL64E.elevations())
    for r in (5, 31, 40, 63):
        if (far & (ring == r)).sum() > 100:
            assert np.median(elevation[far & (ring == r)]) == pytest.approx(table[r], abs=0.6)
    # The same world, the same labels: the classes agree with the HDL-32E's.
    assert set(np.unique(result.labels)) >= set(np.unique(result32.labels)) - {raw_index("noise")}


def test_windows_let_the_beam_into_the_rooms(scene) -> None:
    """Returns from building walls lie on the wall, except through windows, where they come from
    0.5-4 m inside (the room behind the glass); all are manmade."""
    world, result, _, _ = scene
    solids = world.solids
    # (solid rows past the world's are the ego's boxes)
    hit = np.flatnonzero(
        (result.solid >= 0) & (result.solid < len(solids)) & (result.labels != raw_index("noise"))
    )
    building = hit[solids.style[result.solid[hit]] == Style.BUILDING]
    assert building.size > 1000
    assert (result.labels[building] == raw_index("static.manmade")).all()
    index = result.solid[building]
    local = solids.to_local(index, result.scene_points[building])
    depth = (solids.half[index] - np.abs(local)).min(axis=1)  # how far inside the box
    through = depth > 0.3
    assert 0.03 < through.mean() < 0.5 and depth.max() < 4.2
    # On the wall, but for windows near a corner, whose oblique rays can leave by the side wall (into
    # the next building on a block).
    assert (np.abs(depth) < 0.1).mean() > 0.5 and (depth < -0.1).mean() < 0.03
