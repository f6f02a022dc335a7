"""Time the synthetic nuScenes dataset (10 scenes × 5 keyframes by default) and record what it holds.

    python bench/synthetic.py                  # writes bench/results/synthetic-<machine>.{md,json}
    python bench/synthetic.py --workers 1

Runs `training.data.synthetic.generate` into a temporary folder (``--keep DIR`` keeps the dataset
there instead), timed end to end on the wall clock: worker start-up, the keyframes (LiDAR sweep,
lidarseg labels, six 1600×900 JPEGs each), tables and map masks. Then loads the dataset with
nuscenes-devkit and reports points per sweep, the 16 training classes' point counts, the fully
visible 2D boxes per class and the share of the LiDAR points in them that carry the box's class
(`training.data.synthetic.checks.box_purity`). Target: ≤ 60 s for 10 × 5 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from seg3d.classes import NUSCENES_TRAIN_CLASSES, nuscenes_train_id
from seg3d.io import write_atomic
from seg3d.sysinfo import machine_info, machine_slug
from training.data.synthetic import generate
from training.data.synthetic.checks import INTEREST_CATEGORIES, box_purity

TARGET_S = 60.0  # Data issue: 10 scenes × 5 keyframes on the 2-core machine


def measure(root: Path, version: str) -> dict[str, object]:
    """What the devkit sees in the dataset at ``root``."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
    purity = box_purity(nusc)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {
        "scenes": len(nusc.scene),
        "samples": len(nusc.sample),
        "instances": len(nusc.instance),
        "annotations": len(nusc.sample_annotation),
        "size_mb": round(size / 2**20, 1),
        "purity": purity.table(),
    }


def render_markdown(report: dict) -> str:
    info, run, data = report["machine"], report["run"], report["dataset"]
    points, load = report["points_per_sweep"], report["load_average_1min"]
    lines = [
        f"# Synthetic nuScenes dataset benchmark — {report['machine_name']}",
        "",
        f"Run {report['date']} with `{' '.join(['python bench/synthetic.py', report['command']]).strip()}`.",
        f"Machine: {info['cpu']}, {info['logical_cores']} logical cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}.",
        "",
        f"`generate(scenes={run['scenes']}, samples_per_scene={run['samples_per_scene']}, seed={run['seed']}, "
        f"version={run['version']!r}, workers={run['workers']})`, wall clock end to end.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| generation time | **{report['seconds']:.1f} s** (target ≤ {TARGET_S:.0f} s for 10 × 5 on 2 cores) |",
        f"| load average (1 min) before / after | {load['before']} / {load['after']} |",
        f"| per keyframe, one worker (sweep + 6 images + files) | {report['keyframe_seconds_mean']:.2f} s |",
        f"| samples / instances / annotations | {data['samples']} / {data['instances']} / {data['annotations']} |",
        f"| points per sweep, mean (min–max) | {points['mean']:,.0f} ({points['min']:,}–{points['max']:,}) |",
        f"| training classes with points | {report['classes_present']} of 16 |",
        f"| size on disk | {data['size_mb']} MB |",
        "",
        "Points per training class (all sweeps):",
        "",
        "| class | points |",
        "|---|---|",
        *(f"| {name} | {count:,} |" for name, count in report["train_class_points"].items()),
        "",
        "LiDAR points in fully visible 2D boxes that carry the box's class (a point in several boxes goes "
        "to the box whose centre depth is nearest; interest classes in bold):",
        "",
        "| category | fully visible boxes (box × camera) | points | purity |",
        "|---|---|---|---|",
    ]
    for name, row in data["purity"].items():
        label = f"**{name}**" if name in INTEREST_CATEGORIES else name
        lines.append(f"| {label} | {row['boxes']} | {row['points']:,} | {row['purity']:.1%} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=10, help="scenes (default 10)")
    parser.add_argument("--samples-per-scene", type=int, default=5, help="keyframes per scene (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)"
    )
    parser.add_argument("--version", default="v1.0-mini", help="table version (default v1.0-mini)")
    parser.add_argument("--keep", type=Path, default=None, help="write the dataset here and keep it")
    parser.add_argument("--machine", default=None, help="name in the output file (default from the CPU)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]  # other work on the machine skews the wall clock: record it
    scratch = None
    if args.keep is None:
        scratch = Path(tempfile.mkdtemp(prefix="synthetic-bench-"))
        root = scratch / "nuscenes"
    else:
        root = args.keep
    try:
        result = generate(
            root,
            scenes=args.scenes,
            samples_per_scene=args.samples_per_scene,
            seed=args.seed,
            version=args.version,
            workers=args.workers,
            overwrite=args.keep is not None,
            progress=True,
        )
        dataset = measure(root, args.version)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    train = np.zeros(len(NUSCENES_TRAIN_CLASSES), dtype=np.int64)
    for name, count in result.label_counts.items():
        train[nuscenes_train_id(name)] += count
    points = np.asarray(result.points_per_sweep)
    info = machine_info()
    report = {
        "machine_name": args.machine or machine_slug(info),
        "machine": info,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(argv if argv is not None else sys.argv[1:]),
        "run": {
            "scenes": args.scenes,
            "samples_per_scene": args.samples_per_scene,
            "seed": args.seed,
            "version": args.version,
            "workers": result.workers,
        },
        "target_s": TARGET_S,
        "seconds": round(result.seconds, 2),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "keyframe_seconds_mean": round(result.keyframe_seconds / result.samples, 3),
        "points_per_sweep": {
            "mean": float(points.mean()),
            "min": int(points.min()),
            "max": int(points.max()),
        },
        "train_class_points": {NUSCENES_TRAIN_CLASSES[i]: int(train[i]) for i in range(1, len(train))},
        "classes_present": int((train[1:] > 0).sum()),
        "raw_class_points": result.label_counts,
        "dataset": dataset,
    }
    print(result.summary())
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"synthetic-{report['machine_name']}"
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", render_markdown(report))):
        write_atomic(stem.with_suffix(suffix), text)
    print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
