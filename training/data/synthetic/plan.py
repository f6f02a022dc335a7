"""What to generate: scene names and splits, logs, timing, and where each scene lies on its map.

nuScenes facts used here:

- scene names come from the devkit's own split lists (`nuscenes.utils.splits`): ``v1.0-mini`` has 10
  scenes (``mini_train`` 8, ``mini_val`` 2), ``v1.0-trainval`` 850 (``train`` 700, ``val`` 150), so
  the devkit's splits apply to the generated tables unchanged;
- the four locations and the two vehicles: ``boston-seaport`` (vehicle ``n008``, UTC−4, right-hand
  traffic) and the three Singapore maps (vehicle ``n015``, UTC+8, left-hand traffic); log names are
  ``<vehicle>-<local date and time>`` as in ``n015-2018-10-08-15-36-50+0800``;
- keyframes come at 2 Hz (0.5 s apart, a few ms of jitter) and each sensor has its own timestamp
  (`sensors.CAMERA_OFFSETS_US`); every ``sample_data`` has an ``ego_pose`` at its own timestamp.

The ego drives straight along its scene's x axis at a constant speed of a few m/s; a scene frame is
placed on the map of its location by a yaw and an origin (global = origin + R(yaw) · scene).
Scenes of one location overlap on the map (like real drives through the same streets), but
each has its own world.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from training.data.synthetic.sensors import CAMERA_CHANNELS, CAMERA_OFFSETS_US

__all__ = [
    "LOCATIONS",
    "SAMPLE_INTERVAL_US",
    "VERSIONS",
    "GenerationError",
    "Location",
    "SampleTimes",
    "ScenePlan",
    "map_size",
    "plan_scenes",
    "scene_rng",
]

VERSIONS = ("v1.0-mini", "v1.0-trainval")
SAMPLE_INTERVAL_US = 500_000


@dataclass(frozen=True)
class Location:
    name: str
    vehicle: str
    utc_offset_hours: int
    left_hand_traffic: bool


LOCATIONS: tuple[Location, ...] = (
    Location("boston-seaport", "n008", -4, False),
    Location("singapore-onenorth", "n015", 8, True),
    Location("singapore-queenstown", "n015", 8, True),
    Location("singapore-hollandvillage", "n015", 8, True),
)
SPEED_RANGE = (3.0, 7.0)  # m/s
#: Scene origins lie within 60 m of their location's map centre; the map mask is a square of side
#: `map_size` around it (0.1 m pixels, the devkit's native map resolution).
MAP_MARGIN = 150.0  # m


def map_size(samples_per_scene: int) -> float:
    """Side (m) of the square map of every location: the longest possible drive plus margins."""
    longest = SPEED_RANGE[1] * (samples_per_scene - 1) * SAMPLE_INTERVAL_US / 1e6
    return 2 * MAP_MARGIN + longest


class GenerationError(ValueError):
    """The requested dataset cannot be made: bad counts, too many scenes for the version, or a
    destination in the way."""


def scene_rng(seed: int, scene: int, *stream: int) -> np.random.Generator:
    """The random stream of one scene (and optionally one sample, one sensor): the same numbers
    whichever worker draws them."""
    return np.random.default_rng(np.random.SeedSequence([seed, scene, *stream]))


@dataclass(frozen=True)
class SampleTimes:
    """Timestamps (µs) of one keyframe: the LiDAR (= the sample's) and each camera."""

    lidar: int
    cameras: dict[str, int]


@dataclass(frozen=True)
class ScenePlan:
    """One scene: its name and split, log, timing and drive, and its placement on the map."""

    index: int
    name: str
    split: str  # "train" or "val"
    location: Location
    logfile: str
    date_captured: str
    start_us: int  # timestamp of the first keyframe's LiDAR
    num_samples: int
    speed: float  # m/s along the scene's x axis
    heading: float  # yaw of the scene frame in the global frame
    origin: tuple[float, float]  # global xy of the scene frame's origin
    times: tuple[SampleTimes, ...]

    @property
    def path_x(self) -> tuple[float, float]:
        """Ego x at the first and last keyframe LiDAR timestamps (the drive is centred on x = 0)."""
        length = self.speed * (self.times[-1].lidar - self.start_us) / 1e6
        return (-length / 2, length / 2)

    def ego_x(self, timestamp: int) -> float:
        return self.path_x[0] + self.speed * (timestamp - self.start_us) / 1e6

    def to_global(self, xyz: np.ndarray) -> np.ndarray:
        """Scene-frame points ``(N, 3)`` in the global frame."""
        cos, sin = np.cos(self.heading), np.sin(self.heading)
        x, y = xyz[:, 0], xyz[:, 1]
        return np.stack(
            [self.origin[0] + cos * x - sin * y, self.origin[1] + sin * x + cos * y, xyz[:, 2]], axis=1
        )


def _scene_names(version: str, count: int) -> list[tuple[str, str]]:
    from nuscenes.utils import splits  # the devkit is a training extra

    if version == "v1.0-mini":
        train, val = splits.mini_train, splits.mini_val
    else:
        train, val = splits.train, splits.val
    if count > len(train) + len(val):
        raise GenerationError(
            f"{version} has {len(train) + len(val)} scenes in the devkit's splits "
            f"({len(train)} train, {len(val)} val); asked for {count}"
        )
    # About a fifth for validation, at least one when there are two scenes or more.
    num_val = 0 if count < 2 else min(len(val), max(1, round(0.2 * count)))
    num_train = count - num_val
    if num_train > len(train):
        num_train, num_val = len(train), count - len(train)
    names = [(n, "train") for n in train[:num_train]] + [(n, "val") for n in val[:num_val]]
    return sorted(names)


def plan_scenes(seed: int, version: str, num_scenes: int, samples_per_scene: int) -> list[ScenePlan]:
    """The scenes of a dataset: names from the devkit splits, everything else drawn from ``seed``."""
    if version not in VERSIONS:
        raise GenerationError(f"unknown version {version!r}; choose one of {', '.join(VERSIONS)}")
    if num_scenes < 1:
        raise GenerationError(f"--scenes must be at least 1, got {num_scenes}")
    if samples_per_scene < 1:
        raise GenerationError(f"--samples-per-scene must be at least 1, got {samples_per_scene}")
    plans = []
    epoch = datetime(2018, 7, 23, tzinfo=timezone.utc)
    for index, (name, split) in enumerate(_scene_names(version, num_scenes)):
        rng = scene_rng(seed, index, 0)
        location = LOCATIONS[index % len(LOCATIONS)]
        tz = timezone(timedelta(hours=location.utc_offset_hours))
        log_start = epoch + timedelta(days=int(rng.integers(0, 110)), hours=float(rng.uniform(0, 10)))
        log_start = log_start.replace(microsecond=0) + timedelta(hours=8 - location.utc_offset_hours)
        local = log_start.astimezone(tz)
        logfile = f"{location.vehicle}-{local:%Y-%m-%d-%H-%M-%S}{local:%z}"
        start_us = int((log_start + timedelta(seconds=float(rng.uniform(30, 900)))).timestamp() * 1e6)
        times = []
        for k in range(samples_per_scene):
            lidar = start_us + k * SAMPLE_INTERVAL_US + (int(rng.integers(-3000, 3001)) if k else 0)
            cameras = {
                ch: lidar + CAMERA_OFFSETS_US[ch] + int(rng.integers(-800, 801)) for ch in CAMERA_CHANNELS
            }
            times.append(SampleTimes(lidar, cameras))
        speed = float(rng.uniform(*SPEED_RANGE))
        heading = float(rng.uniform(-np.pi, np.pi))
        centre = map_size(samples_per_scene) / 2
        jitter = rng.uniform(-60.0, 60.0, size=2)
        plans.append(
            ScenePlan(
                index=index,
                name=name,
                split=split,
                location=location,
                logfile=logfile,
                date_captured=f"{local:%Y-%m-%d}",
                start_us=start_us,
                num_samples=samples_per_scene,
                speed=speed,
                heading=heading,
                origin=(centre + float(jitter[0]), centre + float(jitter[1])),
                times=tuple(times),
            )
        )
    return plans
