"""``python -m training.data.synthetic.sample``: one synthetic LiDAR sweep as a point file.

The README's examples post a nuScenes ``.pcd.bin`` or a KITTI ``.bin``; real scans cannot be shipped
(their licences are non-commercial), so this writes a legal one: a random street (`world`) ray-cast
with the HDL-32E geometry of LIDAR_TOP (`lidar`), as the synthetic data set's sweeps are, but a
single sweep with no cameras, images or tables (about a second). The drive is drawn like a data set's
scene (a location, its rig and traffic side, a speed, a keyframe along a 2 s drive) from random streams
of its own, so a sample is not a sweep of any generated data set, the demo model's training set
included.

The sweep is written in any `seg3d.points.PointFormat` by `seg3d.points.write_points` (the layouts and
intensity scales are defined there once); ``--labels`` writes the truth, one uint8 per point: the
16-class nuScenes-lidarseg training id (`seg3d.classes`, 0 = ignore: noise and the ego vehicle), the
ids the service answers, so the two can be compared point by point. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.classes import NUSCENES_RAW_CLASSES, nuscenes_train_id
from seg3d.io import write_atomic
from seg3d.points import PointFormat, write_points
from training.data.synthetic.lidar import LidarSweep, sweep
from training.data.synthetic.plan import LOCATIONS, SAMPLE_INTERVAL_US, SPEED_RANGE
from training.data.synthetic.sensors import HDL32E, LIDAR_CHANNEL, RIGS
from training.data.synthetic.world import build_world

__all__ = ["NUSCENES_INTENSITY_MAX", "RAW_TO_TRAIN", "SampleSweep", "main", "sample_sweep"]

#: The sweep's intensity scale: nuScenes' raw 0-255 (`lidar`).
NUSCENES_INTENSITY_MAX = 255.0
#: Raw lidarseg index (what `lidar.sweep` labels) → 16-class training id (0 = ignore).
RAW_TO_TRAIN = np.array([nuscenes_train_id(name) for name in NUSCENES_RAW_CLASSES], dtype=np.uint8)
#: Keyframes of the drive a sample is taken from (the demo data set's scenes have 5).
DRIVE_SAMPLES = 5
#: First entry of every random stream of a sample, so none coincides with a data set's (`plan.scene_rng`
#: seeds ``[seed, scene, ...]`` with small scene indices).
_STREAM = 0x5A3B1E


@dataclass(frozen=True)
class SampleSweep:
    """One sample: the sweep, its truth as training ids, and where it was taken."""

    sweep: LidarSweep
    train_labels: npt.NDArray[np.uint8]  # (N,) uint8, 16-class training id, 0 = ignore
    location: str

    @property
    def num_points(self) -> int:
        return int(self.sweep.points.shape[0])


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_STREAM, seed, *stream]))


def sample_sweep(seed: int = 0) -> SampleSweep:
    """The sweep of sample ``seed``: a random street and one LIDAR_TOP revolution (no cameras)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rng = _rng(seed, 0)
    location = LOCATIONS[int(rng.integers(len(LOCATIONS)))]
    speed = float(rng.uniform(*SPEED_RANGE))
    keyframe = int(rng.integers(DRIVE_SAMPLES))
    length = speed * (DRIVE_SAMPLES - 1) * SAMPLE_INTERVAL_US / 1e6
    path_x = (-length / 2, length / 2)
    world = build_world(_rng(seed, 1), path_x, location.left_hand_traffic)
    # The ego drives along the scene x axis (yaw 0), as in `keyframe.sensor_pose`.
    ego = np.array([path_x[0] + speed * keyframe * SAMPLE_INTERVAL_US / 1e6, world.ego_lane_y(), 0.0])
    lidar = RIGS[location.vehicle][LIDAR_CHANNEL]
    origin = ego + np.asarray(lidar.translation)
    scan = sweep(
        world, origin, lidar.rotation_matrix(), (float(ego[0]), float(ego[1])), 0.0, HDL32E, _rng(seed, 2)
    )
    return SampleSweep(scan, RAW_TO_TRAIN[scan.labels], location.name)


def write_sample(
    out: str | Path,
    fmt: PointFormat | str = PointFormat.NUSCENES,
    seed: int = 0,
    labels: str | Path | None = None,
) -> SampleSweep:
    """Write sample ``seed`` to ``out`` in format ``fmt`` (and its training labels to ``labels``),
    each atomically, replacing what is there."""
    fmt = PointFormat(fmt)
    sample = sample_sweep(seed)
    points = sample.sweep.points
    ring = points[:, 4] if fmt is PointFormat.NUSCENES else None
    write_points(out, points[:, :4], fmt, NUSCENES_INTENSITY_MAX, ring=ring)
    if labels is not None:
        write_atomic(labels, sample.train_labels.astype(np.uint8).tobytes())
    return sample


def _parser() -> argparse.ArgumentParser:
    formats = "; ".join(f"{f.value}: {f.description}" for f in PointFormat)
    parser = argparse.ArgumentParser(
        prog="python -m training.data.synthetic.sample",
        description="Write one synthetic LiDAR sweep as a point file, e.g. to post to the service "
        "(python -m serve). The sweep is a procedurally generated street ray-cast with the nuScenes "
        "HDL-32E geometry by this project's synthetic generator: no real recording is involved, so the "
        "file is free to use and share (no nuScenes or KITTI licence applies). Same seed, same bytes.",
        epilog="example: python -m training.data.synthetic.sample --out scan.pcd.bin --labels labels.bin; "
        'then curl -s -X POST --data-binary @scan.pcd.bin "http://127.0.0.1:8000/segment?format=nuscenes"',
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="the point file to write (e.g. scan.pcd.bin or 000000.bin)"
    )
    parser.add_argument(
        "--format",
        choices=[f.value for f in PointFormat],
        default=PointFormat.NUSCENES.value,
        help=f"point layout, little-endian float32 records (default nuscenes). {formats}. "
        "Post the file with the same ?format=",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="which sample: each seed is another street (default 0)"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="also write the ground truth here: one uint8 per point, in the file's point order, the "
        "16-class nuScenes-lidarseg training id (1 barrier ... 16 vegetation, the ids the service "
        "answers; 0 ignore for noise and the ego vehicle's own roof, which the service never answers: "
        "leave those points out of a comparison)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out and --labels if they exist")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    targets = [("--out", args.out)] + ([("--labels", args.labels)] if args.labels is not None else [])
    if args.labels is not None and args.labels.resolve() == args.out.resolve():
        print("error: --labels and --out are the same file", file=sys.stderr)
        return 2
    for flag, path in targets:
        if path.is_dir():
            print(f"error: {flag} {path} is a folder; give a file name", file=sys.stderr)
            return 2
        if path.exists() and not args.overwrite:
            print(f"error: {flag} {path} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    for _, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
    fmt = PointFormat(args.format)
    sample = write_sample(args.out, fmt, args.seed, args.labels)
    labels = f", labels {args.labels}" if args.labels is not None else ""
    print(
        f"{args.out}: {sample.num_points} points, format {fmt} ({fmt.description}){labels}; "
        f"synthetic street, seed {args.seed}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
