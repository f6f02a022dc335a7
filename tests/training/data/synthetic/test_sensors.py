"""The rig is nuScenes': HDL-32E beams, LIDAR_TOP ~1.84 m up and turned −90°, six cameras around."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.nuscenes_geometry import quaternion_matrix
from training.data.synthetic.sensors import (
    CAMERA_CHANNELS,
    HDL32E,
    HDL64E,
    LIDARS,
    RIGS,
    LidarModel,
    yaw_quaternion,
)


def test_hdl32e_beams() -> None:
    elevations = np.degrees(HDL32E.elevations())
    assert elevations.shape == (32,)
    assert elevations[0] == pytest.approx(-30.67) and elevations[-1] == pytest.approx(10.67, abs=0.01)
    assert np.allclose(np.diff(elevations), 4 / 3)
    directions = HDL32E.directions(0.0)
    assert directions.shape == (32, 1085, 3)
    assert np.allclose(np.linalg.norm(directions, axis=-1), 1.0)
    assert np.allclose(directions[:, 0, 1], 0.0) and np.all(directions[:, 0, 0] > 0)  # firing 0 along x


def test_hdl64e_beams_are_kittis_two_blocks() -> None:
    elevations = np.degrees(HDL64E.elevations())
    assert elevations.shape == (64,) and (np.diff(elevations) > 0).all()  # ring 0 lowest
    assert elevations[0] == pytest.approx(-24.33) and elevations[-1] == pytest.approx(2.0, abs=0.01)
    assert np.allclose(np.diff(elevations[:32]), 0.5)  # the lower block
    assert np.allclose(np.diff(elevations[32:]), 1 / 3, atol=1e-3)  # the upper block, denser
    assert HDL64E.directions(0.0).shape == (64, 2083, 3)
    assert LIDARS == {"hdl32e": HDL32E, "hdl64e": HDL64E}


def test_a_beam_table_must_give_every_ring() -> None:
    with pytest.raises(ValueError, match="3 beam elevations for 4 rings"):
        LidarModel(4, 0.0, 0.0, 10, 80.0, 0.01, elevation_table_deg=(-2.0, -1.0, 0.0))


@pytest.mark.parametrize("vehicle", sorted(RIGS))
def test_rig_geometry(vehicle: str) -> None:
    rig = RIGS[vehicle]
    lidar = rig["LIDAR_TOP"]
    assert lidar.translation[2] == pytest.approx(1.84, abs=0.01) and lidar.intrinsic == []
    # LiDAR x points to the ego's right, y forward.
    rotation = lidar.rotation_matrix()
    assert np.allclose(rotation @ [1, 0, 0], [0, -1, 0], atol=0.05)
    assert np.allclose(rotation @ [0, 1, 0], [1, 0, 0], atol=0.05)
    expected_yaw = {"CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55, "CAM_BACK_RIGHT": -110, "CAM_BACK": 180,
                    "CAM_BACK_LEFT": 110, "CAM_FRONT_LEFT": 55}  # fmt: skip
    for channel in CAMERA_CHANNELS:
        camera = rig[channel]
        forward = camera.rotation_matrix() @ [0, 0, 1]  # optical axis in the ego frame
        yaw = np.degrees(np.arctan2(forward[1], forward[0]))
        assert abs((yaw - expected_yaw[channel] + 180) % 360 - 180) < 6, (channel, yaw)
        assert abs(forward[2]) < 0.05  # level
        assert camera.intrinsic[0][0] == camera.focal
        assert camera.focal == pytest.approx(800 if channel == "CAM_BACK" else 1260, rel=0.03)
        assert 780 < camera.principal[0] < 870 and 440 < camera.principal[1] < 510


def test_yaw_quaternion() -> None:
    assert np.allclose(quaternion_matrix(yaw_quaternion(np.pi / 2)) @ [1, 0, 0], [0, 1, 0])
