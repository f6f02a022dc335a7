"""Time the shared preprocessing (all scales and tables) on real scans and record it with machine info.

    python bench/preprocess.py                  # writes bench/results/preprocess-<machine>.{md,json}
    python bench/preprocess.py --iterations 200 --threads 2

Each scan is cropped to its config's range first (as training and serving do), then
`seg3d.preprocess.prepare_inputs` is timed end to end after warm-up, with its per-stage split.
The per-scale work runs on ``torch.get_num_threads()`` threads (`seg3d.preprocess.parallel`).
nuScenes sweeps use the nuScenes grid (`nuscenes_full`), KITTI/SemanticKITTI scans the
SemanticKITTI grid (`semantickitti_small`); both are 0.1 m grids with scales 1–16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from seg3d.config import ModelConfig, load_config
from seg3d.io import write_atomic
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import RealScan, real_scans
from seg3d.sysinfo import machine_info, machine_slug

TARGET_MS = 30.0  # Foundation issue: per nuScenes sweep on 2 cores


def time_scan(scan: RealScan, config: ModelConfig, iterations: int, warmup: int) -> dict[str, object]:
    points = scan.points[crop_mask(scan.points[:, :3], config.grid)].contiguous()
    for _ in range(warmup):
        prepare_inputs(points, config)
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(iterations):
        split: dict[str, float] = {}
        start = time.perf_counter()
        inputs = prepare_inputs(points, config, timings=split)
        totals.append((time.perf_counter() - start) * 1e3)
        for name, ms in split.items():
            stages.setdefault(name, []).append(ms)
    return {
        "scan": scan.name,
        "config": config.name,
        "points_in_file": int(scan.points.shape[0]),
        "points_in_crop": int(points.shape[0]),
        "voxels_per_scale": {str(s): v.num_voxels for s, v in inputs.voxels.items()},
        "p50_ms": statistics.median(totals),
        "p95_ms": float(np.percentile(totals, 95)),
        "min_ms": min(totals),
        "stage_p50_ms": {name: statistics.median(v) for name, v in stages.items()},
    }


def render_markdown(report: dict) -> str:
    info = report["machine"]
    lines = [
        f"# Preprocessing benchmark — {report['machine_name']}",
        "",
        f"Run {report['date']} with `python bench/preprocess.py --iterations {report['iterations']}`.",
        f"Machine: {info['cpu']}, {info['logical_cores']} logical cores, {info['memory_gib']} GiB; "
        f"torch {info['torch']} with {info['torch_threads']} threads; Python {info['python']}.",
        "",
        "`prepare_inputs` end to end (validation, voxelization at every scale, 10-D point features, "
        "neighbour tables, pooling tables) after cropping to the config's range.",
        f"Target: ≤ {TARGET_MS:.0f} ms per nuScenes sweep on 2 cores.",
        "",
        "| scan | config | points (crop) | voxels s=1 / 2 / 4 / 8 / 16 | p50 ms | p95 ms | min ms |"
        " voxelize | features | tables |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        v = r["voxels_per_scale"]
        st = r["stage_p50_ms"]
        voxels = " / ".join(f"{v[k]:,}" for k in sorted(v, key=int))
        lines.append(
            f"| {r['scan']} | {r['config']} | {r['points_in_crop']:,} | {voxels} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['min_ms']:.1f} | {st['voxelize']:.1f} | {st['features']:.1f} | "
            f"{st['tables']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=50, help="timed runs per scan (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per scan first (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--machine", default=None, help="name in the output file (default from the CPU)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    scans = real_scans(("nuscenes", "kitti", "semantickitti"))
    if not scans:
        print("no real scans found: set SEG3D_REAL_DATA or place ../shared/data/real", file=sys.stderr)
        return 2
    kitti_scans = [s for s in scans if s.kind != "nuscenes"]
    chosen = [s for s in scans if s.kind == "nuscenes"] + [
        s for s in kitti_scans if s.path.stem in ("000000",)
    ]
    configs = {"nuscenes": load_config("nuscenes_full"), "kitti": load_config("semantickitti_small")}
    info = machine_info()
    report = {
        "machine_name": args.machine or machine_slug(info),
        "machine": info,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "iterations": args.iterations,
        "target_ms_nuscenes": TARGET_MS,
        "results": [],
    }
    for scan in chosen:
        config = configs["nuscenes" if scan.kind == "nuscenes" else "kitti"]
        result = time_scan(scan, config, args.iterations, args.warmup)
        report["results"].append(result)
        print(f"{scan.name:<80} p50 {result['p50_ms']:6.1f} ms  p95 {result['p95_ms']:6.1f} ms", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"preprocess-{report['machine_name']}"
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", render_markdown(report))):
        write_atomic(stem.with_suffix(suffix), text)
    print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
