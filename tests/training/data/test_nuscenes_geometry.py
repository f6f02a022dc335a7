"""Our nuScenes projection against nuscenes-devkit on the real scans and tables in ../shared/data/real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seg3d.scans import real_data_dir
from training.data.nuscenes_geometry import box_to_2d, lidar_to_camera, project_to_image

pytestmark = pytest.mark.skipif(real_data_dir() is None, reason="real scans not found")


def _pairs(nusc, root: Path) -> list[tuple[dict, dict]]:
    """Each real LIDAR_TOP file with the CAM_FRONT image closest in time that is on disk."""
    cameras = [
        sd for sd in nusc.sample_data if sd["channel"] == "CAM_FRONT" and (root / sd["filename"]).exists()
    ]
    pairs = []
    for lidar in nusc.sample_data:
        if lidar["channel"] == "LIDAR_TOP" and (root / lidar["filename"]).exists():
            camera = min(cameras, key=lambda sd: abs(sd["timestamp"] - lidar["timestamp"]))
            pairs.append((lidar, camera))
    return pairs


def test_projection_matches_map_pointcloud_to_image(nusc, devkit_root: Path) -> None:
    pairs = _pairs(nusc, devkit_root)
    assert len(pairs) == 3  # the three scene-0916 scans; the fourth real scan is not in these tables
    worst = 0.0
    for lidar, camera in pairs:
        expected, depths, image = nusc.explorer.map_pointcloud_to_image(lidar["token"], camera["token"])
        xyz = np.fromfile(devkit_root / lidar["filename"], dtype="<f4").reshape(-1, 5)[:, :3]
        points = lidar_to_camera(
            xyz,
            nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"]),
            nusc.get("ego_pose", lidar["ego_pose_token"]),
            nusc.get("ego_pose", camera["ego_pose_token"]),
            nusc.get("calibrated_sensor", camera["calibrated_sensor_token"]),
        )
        uv, depth = project_to_image(
            points, nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])["camera_intrinsic"]
        )
        width, height = image.size
        # the devkit's own visibility rule (1 m, one-pixel margin), to line the two lists up
        keep = (
            (depth > 1.0) & (uv[:, 0] > 1) & (uv[:, 0] < width - 1) & (uv[:, 1] > 1) & (uv[:, 1] < height - 1)
        )
        assert int(keep.sum()) == expected.shape[1] > 1000
        diff = float(np.abs(uv[keep] - expected[:2].T).max())
        worst = max(worst, diff)
        np.testing.assert_allclose(depth[keep], depths, atol=1e-3)
    assert worst < 1e-3, f"max pixel difference {worst:.2e}"


def test_fully_visible_boxes_match_the_devkit_and_lie_inside_the_image(nusc, devkit_root: Path) -> None:
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    checked = 0
    for sample in nusc.sample:
        camera = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        cs = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
        ego = nusc.get("ego_pose", camera["ego_pose_token"])
        size = (camera["width"], camera["height"])
        _, boxes, intrinsic = nusc.get_sample_data(camera["token"], box_vis_level=BoxVisibility.ALL)
        expected = {}
        for box in boxes:
            corners = view_points(box.corners(), intrinsic, normalize=True)[:2]
            expected[box.token] = (corners[0].min(), corners[0].max(), corners[1].min(), corners[1].max())
        ours = {}
        for token in sample["anns"]:
            box2d = box_to_2d(nusc.get("sample_annotation", token), ego, cs, size)
            if box2d is not None:
                ours[token] = box2d
                assert 0 <= box2d.x_min <= box2d.x_max < size[0] and 0 <= box2d.y_min <= box2d.y_max < size[1]
                assert box2d.depth > 1.0
        assert set(ours) == set(expected), sample["token"]
        for token, (x0, x1, y0, y1) in expected.items():
            assert (ours[token].x_min, ours[token].x_max, ours[token].y_min, ours[token].y_max) == (
                int(x0),
                int(x1),
                int(y0),
                int(y1),
            )
        checked += len(ours)
    assert checked > 20


def test_clipped_boxes_are_the_devkit_any_boxes_in_front_and_lie_in_the_image(nusc) -> None:
    from nuscenes.utils.geometry_utils import BoxVisibility, box_in_image

    clipped_only = 0
    for sample in nusc.sample:
        camera = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        cs = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
        ego = nusc.get("ego_pose", camera["ego_pose_token"])
        size = (camera["width"], camera["height"])
        intrinsic = np.array(cs["camera_intrinsic"])
        _, boxes, _ = nusc.get_sample_data(camera["token"], box_vis_level=BoxVisibility.ANY)
        for box in boxes:
            annotation = nusc.get("sample_annotation", box.token)
            in_front = bool((box.corners()[2] > 0.1).all())
            box2d = box_to_2d(annotation, ego, cs, size, clip=True)
            assert (box2d is not None) == (in_front and box_in_image(box, intrinsic, size, BoxVisibility.ANY))
            if box2d is None:
                continue
            assert (
                0 <= box2d.x_min <= box2d.x_max <= size[0] - 1
                and 0 <= box2d.y_min <= box2d.y_max <= size[1] - 1
            )
            full = box_to_2d(annotation, ego, cs, size)
            if full is None:
                clipped_only += 1
            else:
                assert full == box2d  # a fully visible box is not changed by clipping
    assert clipped_only > 10  # truncated boxes exist and are kept


def test_points_inside_several_boxes_go_to_the_nearest_centre_depth() -> None:
    from training.data.nuscenes_geometry import Box2D, assign_to_boxes

    boxes = [
        Box2D(0, 100, 0, 100, depth=10.0),
        Box2D(50, 150, 50, 150, depth=20.0),
        Box2D(50, 100, 50, 100, 20.0),
    ]
    uv = np.array([[10, 10], [60, 60], [60, 60], [120, 120], [200, 200], [100, 100], [150.0, 150.0]])
    depth = np.array([9.0, 12.0, 19.0, 9.0, 10.0, 25.0, 1.0])
    owner = assign_to_boxes(uv, depth, boxes)
    # 0: only box 0; 1: nearer box 0's depth; 2: boxes 1 and 2 tie on depth, the smaller (2) wins;
    # 3: only box 1; 4: none; 5: bounds are inside, depth 25 nearer 20 → smaller of 1/2 = 2; 6: edge of box 1
    assert owner.tolist() == [0, 0, 2, 1, -1, 2, 1]
    assert assign_to_boxes(uv, depth, []).tolist() == [-1] * 7
