"""The nuScenes sensor rig: LIDAR_TOP and the six cameras, their calibration, timing and ray geometry.

Frames follow nuScenes: the *ego* frame has x forward, y left, z up, its origin on the ground under
the rear axle; a camera frame has x right, y down, z forward; the LIDAR_TOP frame has x right,
y forward, z up (a ≈ −90° yaw about the ego z axis). Rotations are ``(w, x, y, z)`` quaternions from
the sensor to the ego frame, as in ``calibrated_sensor.json``.

nuScenes facts used here (v1.0-mini tables in ``../shared/data/real/nuscenes/v1.0-mini-extract``):

- the calibrations of LIDAR_TOP and the six cameras of vehicles ``n008`` (Boston) and ``n015``
  (Singapore) are copied from ``calibrated_sensor.json``, rounded to 1e-6 (translation, intrinsics)
  and 1e-8 (quaternions);
- the cameras are 1600×900; CAM_BACK has a wider lens (fx ≈ 800 px against ≈ 1260 px);
- at a keyframe each camera is exposed a few tens of ms *before* the LiDAR timestamp, when the
  rotating LiDAR sweeps across it: −45 ms (FRONT_LEFT) … −2.5 ms (BACK_LEFT), see `CAMERA_OFFSETS_US`;
- LIDAR_TOP is a Velodyne HDL-32E spinning at 20 Hz: 32 beams from −30.67° to +10.67° in 4/3°
  steps (ring 0 lowest), about 1,085 firings per revolution, points stored firing by firing
  (ring 0…31 within a firing), as the real ``.pcd.bin`` files are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.nuscenes_geometry import quaternion_matrix

__all__ = [
    "CAMERA_CHANNELS",
    "CAMERA_OFFSETS_US",
    "EGO_BOXES",
    "HDL32E",
    "HDL64E",
    "IMAGE_SIZE",
    "LIDARS",
    "LIDAR_CHANNEL",
    "RIGS",
    "LidarModel",
    "Rig",
    "SensorCalibration",
    "yaw_quaternion",
]

LIDAR_CHANNEL = "LIDAR_TOP"
#: The camera order of nuScenes and of 2DPASS's camera choice (docs/architecture.md §1.3).
CAMERA_CHANNELS: tuple[str, ...] = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT",
)  # fmt: skip
IMAGE_SIZE = (1600, 900)  # width, height

#: Camera timestamp minus LiDAR timestamp at a keyframe (µs), from the scene-0523 keyframes.
CAMERA_OFFSETS_US: dict[str, int] = {
    "CAM_FRONT": -37_500,
    "CAM_FRONT_RIGHT": -29_500,
    "CAM_BACK_RIGHT": -21_500,
    "CAM_BACK": -12_500,
    "CAM_BACK_LEFT": -2_500,
    "CAM_FRONT_LEFT": -45_000,
}


@dataclass(frozen=True)
class SensorCalibration:
    """One ``calibrated_sensor`` record's values: sensor → ego pose and, for a camera, ``K``."""

    channel: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]  # (w, x, y, z)
    focal: float = 0.0  # fx = fy in pixels; 0 for the LiDAR
    principal: tuple[float, float] = (0.0, 0.0)  # cx, cy in pixels

    @property
    def modality(self) -> str:
        return "camera" if self.channel.startswith("CAM_") else "lidar"

    @property
    def intrinsic(self) -> list[list[float]]:
        """``camera_intrinsic`` as nuScenes stores it (an empty list for the LiDAR)."""
        if self.modality != "camera":
            return []
        cx, cy = self.principal
        return [[self.focal, 0.0, cx], [0.0, self.focal, cy], [0.0, 0.0, 1.0]]

    def rotation_matrix(self) -> np.ndarray:
        return quaternion_matrix(self.rotation)


@dataclass(frozen=True)
class Rig:
    """The calibrated sensors of one nuScenes vehicle."""

    vehicle: str
    sensors: tuple[SensorCalibration, ...]

    def __getitem__(self, channel: str) -> SensorCalibration:
        for sensor in self.sensors:
            if sensor.channel == channel:
                return sensor
        raise KeyError(channel)


def _cam(
    channel: str, t: tuple[float, float, float], q: tuple[float, float, float, float], fcc: tuple[float, ...]
) -> SensorCalibration:
    return SensorCalibration(channel, t, q, fcc[0], (fcc[1], fcc[2]))


RIGS: dict[str, Rig] = {
    "n008": Rig("n008", (
        SensorCalibration("LIDAR_TOP", (0.985793, 0.0, 1.84019),
                          (0.70674924, -0.01530099, 0.01739745, -0.70708467)),
        _cam("CAM_FRONT", (1.722006, 0.004755, 1.494913),
             (0.50772414, -0.49733922, 0.49837168, -0.4964832), (1252.8131, 826.5881, 469.9847)),
        _cam("CAM_FRONT_RIGHT", (1.580826, -0.499079, 1.517494),
             (0.20335174, -0.19146333, 0.678571, -0.67936092), (1256.7485, 817.7888, 451.9542)),
        _cam("CAM_BACK_RIGHT", (1.059452, -0.467203, 1.550509),
             (0.13819188, -0.13796718, -0.68933299, 0.69763034), (1249.9629, 825.3768, 462.5482)),
        _cam("CAM_BACK", (0.055246, 0.010788, 1.567943),
             (0.50679973, -0.4977567, -0.49878499, 0.49659423), (796.8911, 857.7774, 476.8849)),
        _cam("CAM_BACK_LEFT", (1.04852, 0.483058, 1.562102),
             (0.70486203, -0.69073068, -0.11209092, 0.11617346), (1254.9861, 829.5769, 467.1681)),
        _cam("CAM_FRONT_LEFT", (1.575256, 0.500519, 1.50696),
             (0.68120885, -0.66875072, 0.21017024, -0.21108161), (1257.8625, 827.2411, 450.9155)),
    )),
    "n015": Rig("n015", (
        SensorCalibration("LIDAR_TOP", (0.943713, 0.0, 1.84023),
                          (0.70779551, -0.00649224, 0.01064621, -0.70630731)),
        _cam("CAM_FRONT", (1.700791, 0.015946, 1.510958),
             (0.49980154, -0.50303162, 0.49977981, -0.49737084), (1266.4172, 816.267, 491.5071)),
        _cam("CAM_FRONT_RIGHT", (1.550848, -0.493405, 1.495748),
             (0.2060348, -0.20269406, 0.68245078, -0.67136109), (1260.8474, 807.9682, 495.3344)),
        _cam("CAM_BACK_RIGHT", (1.014878, -0.480568, 1.562395),
             (0.1228098, -0.13240084, -0.70043058, 0.69049603), (1259.5137, 807.2529, 501.1958)),
        _cam("CAM_BACK", (0.028326, 0.003451, 1.579103),
             (0.50378727, -0.4974025, -0.49418502, 0.50454961), (809.221, 829.2196, 481.7784)),
        _cam("CAM_BACK_LEFT", (1.035691, 0.484795, 1.59097),
             (0.69241856, -0.70316194, -0.11648343, 0.11203318), (1256.7415, 792.1126, 492.7757)),
        _cam("CAM_FRONT_LEFT", (1.523878, 0.494631, 1.509328),
             (0.6757265, -0.67362665, 0.21214015, -0.21122827), (1272.5979, 826.6155, 479.7517)),
    )),
}  # fmt: skip


@dataclass(frozen=True)
class LidarModel:
    """A spinning multi-beam LiDAR: ``rings`` beams × ``azimuth_steps`` firings per revolution.

    Beams are evenly spaced from ``elevation_min_deg`` in ``elevation_step_deg`` steps, unless
    ``elevation_table_deg`` lists them (ring 0 first: the lowest).
    """

    rings: int
    elevation_min_deg: float
    elevation_step_deg: float
    azimuth_steps: int
    max_range: float  # metres; no return beyond
    range_noise: float  # metres, standard deviation along the beam
    elevation_table_deg: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.elevation_table_deg and len(self.elevation_table_deg) != self.rings:
            raise ValueError(f"{len(self.elevation_table_deg)} beam elevations for {self.rings} rings")

    def elevations(self) -> np.ndarray:
        """``(rings,)`` beam elevations in radians, ring 0 lowest."""
        if self.elevation_table_deg:
            return np.radians(np.asarray(self.elevation_table_deg, dtype=np.float64))
        return np.radians(self.elevation_min_deg + self.elevation_step_deg * np.arange(self.rings))

    def directions(self, azimuth_phase: float) -> np.ndarray:
        """Unit beam directions in the sensor frame, ``(rings, azimuth_steps, 3)`` float64; firing ``j``
        points at azimuth ``azimuth_phase + 2πj / azimuth_steps`` (counter-clockwise from x)."""
        elevation = self.elevations()[:, None]
        azimuth = azimuth_phase + 2 * np.pi * np.arange(self.azimuth_steps) / self.azimuth_steps
        cos_e = np.cos(elevation)
        return np.stack(
            np.broadcast_arrays(cos_e * np.cos(azimuth), cos_e * np.sin(azimuth), np.sin(elevation)), axis=-1
        )


#: nuScenes LIDAR_TOP (HDL-32E at 20 Hz). 80 m: the real sweeps' returns thin out beyond ~70 m.
HDL32E = LidarModel(
    rings=32,
    elevation_min_deg=-30.67,
    elevation_step_deg=4 / 3,
    azimuth_steps=1085,
    max_range=80.0,
    range_noise=0.01,
)

#: A KITTI-like Velodyne HDL-64E S2 at 10 Hz (the sensor of KITTI and SemanticKITTI): 64 beams in
#: two blocks, the lower from -24.33° to -8.83° in 0.5° steps and the upper from -8.33° to +2°
#: in 1/3° steps, 0.1728° between firings (2,083 per revolution): four times the returns of the
#: HDL-32E, and denser rings on the ground. It is mounted where the nuScenes rig has LIDAR_TOP
#: (1.84 m; KITTI's is at 1.73 m), so that the data set keeps the nuScenes calibration tables.
HDL64E = LidarModel(
    rings=64,
    elevation_min_deg=-24.33,
    elevation_step_deg=0.0,
    azimuth_steps=2083,
    max_range=80.0,
    range_noise=0.015,
    elevation_table_deg=tuple(
        [round(-24.33 + 0.5 * i, 4) for i in range(32)] + [round(-8.33 + i / 3, 4) for i in range(32)]
    ),
)

#: The LiDAR models the generator can simulate, by the name its ``--lidar`` option takes.
LIDARS: dict[str, LidarModel] = {"hdl32e": HDL32E, "hdl64e": HDL64E}

#: The ego vehicle (a Renault Zoe, ~4.1 × 1.7 m) as two boxes in the ego frame, ``(x0, x1, y0, y1, z0, z1)``.
#: Only the LiDAR sees it: the roof sits 0.39 m under LIDAR_TOP and the bonnet 1 m, so rings 0–7
#: return from the ego in most directions (~5k points), about what real sweeps show (ring 0 has ~900
#: near returns). The roof ends behind the cameras, which are not drawn over it.
EGO_BOXES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (0.1, 1.5, -0.72, 0.72, 0.85, 1.45),  # cabin and roof
    (-0.75, 3.3, -0.87, 0.87, 0.3, 0.85),  # body: bonnet, boot
)


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """``(w, x, y, z)`` of a rotation by ``yaw`` radians about z."""
    return (float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2)))
