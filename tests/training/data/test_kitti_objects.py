"""KITTI object frames: calibration, boxes, and which points a box holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from seg3d.scans import real_data_dir
from training.data.kitti_objects import KittiBox, KittiCalibration, object_frames, points_in_box, read_boxes


def _rotate_y(local: np.ndarray, ry: float) -> np.ndarray:
    """KITTI's box-to-camera rotation about y (the devkit's corner formula)."""
    c, s = np.cos(ry), np.sin(ry)
    rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return local @ rotation.T


@pytest.mark.parametrize("ry", [0.0, 0.7, -1.57, 3.0])
def test_points_in_box_follows_the_yaw_and_the_bottom_centre(ry: float) -> None:
    box = KittiBox("Car", height=1.5, width=1.8, length=4.0, bottom_centre=(2.0, 1.6, 20.0), rotation_y=ry)
    rng = np.random.default_rng(0)
    # Local coordinates: length along x, height up (negative y), width along z.
    inside_local = rng.uniform([-1.95, -1.45, -0.85], [1.95, -0.05, 0.85], size=(200, 3))
    outside_local = np.array(
        [
            [2.1, -0.7, 0.0],
            [-2.1, -0.7, 0.0],
            [0.0, 0.1, 0.0],
            [0.0, -1.6, 0.0],
            [0.0, -0.7, 0.95],
            [0, -0.7, -0.95],
        ]
    )
    centre = np.array(box.bottom_centre)
    assert points_in_box(_rotate_y(inside_local, ry) + centre, box).all()
    assert not points_in_box(_rotate_y(outside_local, ry) + centre, box).any()


def test_calibration_takes_velodyne_points_to_the_rectified_camera(tmp_path: Path) -> None:
    # Velodyne x forward, y left, z up -> camera x right, y down, z forward; then a 1 m shift.
    tr = [0, -1, 0, 0.5, 0, 0, -1, -0.25, 1, 0, 0, 1.0]
    r0 = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    path = tmp_path / "calib.txt"
    path.write_text(
        "P2: "
        + " ".join(["0"] * 12)
        + "\nR0_rect: "
        + " ".join(map(str, r0))
        + "\nTr_velo_to_cam: "
        + " ".join(map(str, tr))
        + "\n"
    )
    calib = KittiCalibration.read(path)
    out = calib.velo_to_rect(np.array([[10.0, 2.0, -1.0]]))
    np.testing.assert_allclose(out, [[-2.0 + 0.5, 1.0 - 0.25, 10.0 + 1.0]])
    bad = tmp_path / "bad.txt"
    bad.write_text("R0_rect: 1 0 0\n")
    with pytest.raises(ValueError, match="not a KITTI object calibration"):
        KittiCalibration.read(bad)


def test_label_files_skip_dont_care_and_refuse_short_lines(tmp_path: Path) -> None:
    path = tmp_path / "000000.txt"
    path.write_text(
        "Car 0.00 0 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57\n"
        "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    (box,) = read_boxes(path)
    assert box == KittiBox("Car", 1.67, 1.87, 3.69, (-16.53, 2.39, 58.49), 1.57)
    path.write_text("Car 0.00 0 1.85\n")
    with pytest.raises(ValueError, match=r"000000.txt:1: 4 fields"):
        read_boxes(path)


def test_real_object_frames_put_the_pedestrian_box_on_real_returns() -> None:
    root = real_data_dir()
    if root is None:
        pytest.skip("real scans not found")
    frames = object_frames(root / "kitti" / "object")
    assert [f.name for f in frames] == ["000000", "000001"]  # 000008 has no calibration or labels
    frame = frames[0]
    (pedestrian,) = read_boxes(frame.labels)
    cloud = np.fromfile(frame.scan, dtype=np.float32).reshape(-1, 4)
    rect = KittiCalibration.read(frame.calibration).velo_to_rect(cloud[:, :3])
    inside = points_in_box(rect, pedestrian)
    # A person 8.4 m ahead fills a 1.9 m box with hundreds of HDL-64 returns; the same box moved
    # 3 m sideways, onto empty road beside it, holds next to none.
    x, y, z = pedestrian.bottom_centre
    shifted = dataclasses.replace(pedestrian, bottom_centre=(x + 3.0, y, z))
    assert inside.sum() > 200
    assert points_in_box(rect, shifted).sum() < inside.sum() / 10
    with pytest.raises(FileNotFoundError, match="not a KITTI object folder"):
        object_frames(root / "nuscenes")
