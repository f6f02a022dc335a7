"""Our nuScenes projection against nuscenes-devkit on the real scans and tables in ../shared/data/real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seg3d.testing import real_data_dir
from training.data.nuscenes_geometry import box_to_2d, lidar_to_camera, project_to_image

REAL = real_data_dir()
VERSION = "v1.0-mini-extract"
pytestmark = pytest.mark.skipif(REAL is None, reason="real scans not found")


@pytest.fixture(scope="module")
def devkit_root(tmp_path_factory) -> Path:
    """The real tables plus the four the extract lacks (attribute, visibility, log, map), and the real
    LIDAR_TOP / CAM_FRONT files where the tables say they are."""
    root = tmp_path_factory.mktemp("nuscenes")
    source = REAL / "nuscenes"
    tables = root / VERSION
    shutil.copytree(source / VERSION, tables)
    annotations = json.loads((tables / "sample_annotation.json").read_text())
    attributes = sorted({t for a in annotations for t in a["attribute_tokens"]})
    (tables / "attribute.json").write_text(
        json.dumps(
            [{"token": t, "name": f"attribute-{i}", "description": ""} for i, t in enumerate(attributes)]
        )
    )
    levels = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}
    (tables / "visibility.json").write_text(
        json.dumps([{"token": t, "level": level, "description": ""} for t, level in levels.items()])
    )
    logs = sorted({s["log_token"] for s in json.loads((tables / "scene.json").read_text())})
    (tables / "log.json").write_text(
        json.dumps(
            [{"token": t, "logfile": t, "vehicle": "", "date_captured": "", "location": ""} for t in logs]
        )
    )
    (tables / "map.json").write_text(
        json.dumps([{"token": "map", "log_tokens": logs, "category": "semantic_prior", "filename": ""}])
    )
    for folder in ("LIDAR_TOP", "CAM_FRONT"):
        (root / "samples" / folder).mkdir(parents=True)
        for file in (source / "samples" / folder).iterdir():
            (root / "samples" / folder / file.name).symlink_to(file)
    return root


@pytest.fixture(scope="module")
def nusc(devkit_root: Path):
    nuscenes = pytest.importorskip("nuscenes.nuscenes", reason="nuscenes-devkit is not installed")
    return nuscenes.NuScenes(version=VERSION, dataroot=str(devkit_root), verbose=False)


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
