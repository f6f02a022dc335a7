"""Throughput of the offline labelling job (python -m serve.label) per engine and model.

    python bench/label.py                                   # generates 8 scenes × 4 sweeps
    python bench/label.py --data-root runs/demo-data --version v1.0-trainval --split val

Runs the command as a user would (a subprocess each time, the summary it writes read back) on the
LIDAR_TOP key frames of a generated nuScenes-format data set, for each model (the bundled demo
export; the full nuScenes config, 45.6 M parameters, exported with random weights: its speed does
not depend on them) and each engine: local with 1 and 2 worker processes, Ray Data with 2 actors
on a local cluster. Reports the job's wall rate (model loading and Ray's start included) and its
steady rate (first result to last). Writes ``bench/results/label-<machine>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seg3d.io import write_atomic
from seg3d.sysinfo import machine_info, machine_slug

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = (  # (engine, workers)
    ("local", 1),
    ("local", 2),
    ("ray", 2),
)


def _run(
    model: Path, root: Path, version: str, split: str | None, engine: str, workers: int, out: Path
) -> dict[str, Any]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    command = [
        sys.executable, "-m", "serve.label", "--model", str(model), "--out", str(out),
        "--nuscenes", str(root), "--version", version, *(["--split", split] if split else []), "--engine", engine,
        "--workers", str(workers), "--threads", str(threads), "--cpus-per-worker", str(threads), "--no-progress",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "label-summary.json").read_text())
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} sweeps failed: {summary['failures'][:2]}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root", type=Path, default=None, help="nuScenes-layout root (default: generate)"
    )
    parser.add_argument("--version", default="v1.0-trainval")
    parser.add_argument("--split", default=None, help="devkit split to label (default: every scene)")
    parser.add_argument("--models", nargs="+", default=["demo", "full"], choices=["demo", "full"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = args.data_root
        if root is None:
            from training.data.synthetic import generate

            root = work / "nuscenes"
            generate(root, scenes=8, samples_per_scene=4, seed=0, version="v1.0-trainval", workers=2)
        models = {"demo": ROOT / "models" / "demo"}
        if "full" in args.models:
            full = work / "full"
            export = [sys.executable, "-m", "export.to_trt", "--config", "nuscenes_full", "--random-init"]
            subprocess.run(
                [*export, "--out", str(full), "--skip-parity"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            models["full"] = full
        for name in args.models:
            for engine, workers in SETTINGS:
                out = work / f"{name}-{engine}-{workers}"
                summary = _run(models[name], root, args.version, args.split, engine, workers, out)
                rows.append(
                    {
                        "model": name,
                        "engine": engine,
                        "workers": workers,
                        "threads_per_worker": summary["threads_per_worker"],
                        "sweeps": summary["written"],
                        "points": summary["points"],
                        "seconds": summary["seconds"],
                        "startup_s": summary["startup_s"],
                        "sweeps_per_s": summary["scans_per_s"],
                        "steady_sweeps_per_s": summary["steady_scans_per_s"],
                    }
                )
                print(rows[-1], flush=True)
    info = machine_info()
    data = "generated: 8 scenes × 4 key frames, seed 0" if args.data_root is None else str(args.data_root)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "data": f"{data}; {args.version}, {f'split {args.split}' if args.split else 'every scene'}",
        "rows": rows,
    }
    slug = machine_slug(info)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"label-{slug}.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Offline labelling throughput (python -m serve.label) on {info['cpu']}, {info['logical_cores']} cores",
        "",
        f"{result['when']}; {result['data']}; backend onnxruntime, threads per worker = CPUs / workers.",
        "",
        "| model | engine | workers | sweeps | wall sweeps/s | steady sweeps/s | start-up s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['engine']} | {r['workers']} | {r['sweeps']} | {r['sweeps_per_s']:.2f} "
            f"| {r['steady_sweeps_per_s']:.2f} | {r['startup_s']:.1f} |"
        )
    write_atomic(args.out / f"label-{slug}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
