"""``python -m training.data.synthetic``: write a procedural nuScenes-lidarseg dataset."""

from __future__ import annotations

import argparse
import os
import sys

from training.data.synthetic.generator import LIDAR_CHOICES, generate
from training.data.synthetic.plan import VERSIONS, GenerationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.synthetic",
        description="Write a procedural dataset in the exact nuScenes-lidarseg layout (tables, LIDAR_TOP "
        "sweeps, lidarseg labels, six 1600x900 camera images per keyframe, map masks) that "
        "nuscenes-devkit loads with NuScenes(version=VERSION, dataroot=OUT).",
    )
    parser.add_argument(
        "--out", required=True, help="destination folder; must be absent or empty (see --overwrite)"
    )
    parser.add_argument(
        "--scenes",
        type=int,
        default=10,
        help="number of scenes (default 10; at most 10 for v1.0-mini, 850 for v1.0-trainval)",
    )
    parser.add_argument(
        "--samples-per-scene", type=int, default=5, help="keyframes per scene, 0.5 s apart (default 5)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed and options, same bytes (default 0)"
    )
    parser.add_argument(
        "--version",
        choices=VERSIONS,
        default="v1.0-trainval",
        help="table folder and scene names: v1.0-trainval uses the devkit's train/val names with about "
        "20%% of the scenes (whole scenes) in val, as the bundled training configs read it; v1.0-mini "
        "its mini_train/mini_val names (at most 10 scenes; train with data.nuscenes.version v1.0-mini, "
        "split mini_train, data.val_split mini_val) (default v1.0-trainval)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes simulating keyframes; the output does not depend on it (default: CPU count, "
        f"{os.cpu_count()} here)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists and is not empty"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument(
        "--render-scale",
        type=float,
        default=0.5,
        help="camera ray-casting resolution relative to 1600x900; images are resized to full size "
        "(default 0.5)",
    )
    parser.add_argument(
        "--lidar",
        choices=LIDAR_CHOICES,
        default="hdl32e",
        help="the LIDAR_TOP sensor simulated: hdl32e (nuScenes' Velodyne HDL-32E, 32 beams, ~34k points), "
        "hdl64e (KITTI's HDL-64E, 64 beams, ~4x the points) or mixed (alternating by scene, for models "
        "that must work on both) (default hdl32e)",
    )
    parser.add_argument(
        "--camera-cues",
        action="store_true",
        help="a setting where the camera carries what the LiDAR lacks: truck and construction vehicle, "
        "and bicycle and motorcycle, look alike in the LiDAR (one box shape, size distribution and "
        "reflectivity per pair, placed alike) and differ only in the images (blue-cabbed trucks with light "
        "cargo vs yellow construction vehicles with dark tracks; green bicycles vs red motorcycles); "
        "plus 3-6 pedestrians and cycles per scene in the oncoming lane 35-70 m beyond the drive (few "
        "LiDAR returns, many pixels). Recorded in synthetic.json (default off: the data sets of before, "
        "byte for byte)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = generate(
            args.out,
            scenes=args.scenes,
            samples_per_scene=args.samples_per_scene,
            seed=args.seed,
            version=args.version,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.quiet,
            render_scale=args.render_scale,
            lidar=args.lidar,
            camera_cues=args.camera_cues,
        )
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
