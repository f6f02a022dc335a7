"""The exported graph's forms and precisions side by side: same weights, same real sweeps.

    python bench/int8.py --checkpoint models/demo/encoder3d.pt --calibrate ../shared/data/real/semantickitti
    python bench/int8.py --checkpoint runs/full-synthetic/best.pt --calibrate /data/nuscenes

Exports the checkpoint with export/to_trt.py (ONNX only, the real parity gate on) as the dense
fp32 graph, the sparse fp32 graph and the sparse int8 graph (calibrated on --calibrate, layers
chosen by --int8-target), then times ONNX Runtime through the service's own backend
(`serve.backends.OnnxRuntimeBackend`, the session options of `seg3d.ort_options`) on each real
nuScenes sweep: preprocessing and inference p50, and the share of layers in int8 with the gate's
worst agreement. An export the gate refuses is reported as refused. Results go to
bench/results/int8-<machine>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import export.to_trt as to_trt
from seg3d.io import write_atomic
from seg3d.manifest import load_manifest
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans
from seg3d.sysinfo import machine_info, machine_slug
from serve.backends import OnnxRuntimeBackend

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = (("dense", "fp32"), ("sparse", "fp32"), ("sparse", "int8"))


def _export(checkpoint: Path, out: Path, form: str, precision: str, args: argparse.Namespace) -> int:
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--graph", form, "--precision", precision]
    argv += ["--onnx-only"]
    if precision == "int8":
        argv += ["--int8-target", str(args.int8_target), "--calibrate-clouds", str(args.calibrate_clouds)]
        argv += ["--calibrate", *map(str, args.calibrate)]
    return to_trt.main(argv)


def _time(model_dir: Path, threads: int | None, iterations: int) -> list[dict[str, Any]]:
    manifest = load_manifest(model_dir)
    config = manifest.config
    backend = OnnxRuntimeBackend.load(model_dir, config, threads)
    rows = []
    for scan in real_scans(("nuscenes",), config.input.intensity_max):
        points = scan.points[crop_mask(scan.points[:, :3], config.grid)]
        prep, infer = [], []
        for i in range(iterations + 1):
            start = time.perf_counter()
            inputs = prepare_inputs(points, config)
            mid = time.perf_counter()
            backend.predict(inputs)
            end = time.perf_counter()
            if i:  # the first run warms the session up
                prep.append((mid - start) * 1e3)
                infer.append((end - mid) * 1e3)
        rows.append(
            {
                "scan": scan.name,
                "points": int(points.shape[0]),
                "preprocess_ms": statistics.median(prep),
                "inference_ms": statistics.median(infer),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint to export")
    p.add_argument(
        "--calibrate",
        type=Path,
        nargs="+",
        required=True,
        help="int8 calibration clouds (export's --calibrate)",
    )
    p.add_argument("--calibrate-clouds", type=int, default=16, help="export's --calibrate-clouds (16)")
    p.add_argument("--int8-target", type=float, default=0.995, help="export's --int8-target (0.995)")
    p.add_argument("--iterations", type=int, default=3, help="timed runs per sweep (3)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: every core)")
    p.add_argument("--out", type=Path, help="result stem (default bench/results/int8-<machine>)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for form, precision in VARIANTS:
            folder = Path(tmp) / f"{form}-{precision}"
            print(f"export {form} {precision}", flush=True)
            start = time.perf_counter()
            code = _export(args.checkpoint, folder, form, precision, args)
            row: dict[str, Any] = {
                "form": form,
                "precision": precision,
                "export_s": time.perf_counter() - start,
            }
            if code != 0:
                row["refused"] = f"export exit code {code}"
                results.append(row)
                continue
            manifest = load_manifest(folder)
            layers = manifest.graph.layers
            row["int8_layers"] = sum(p == "int8" for p in layers.values())
            row["layers"] = len(layers)
            row["min_agreement"] = manifest.parity.min_argmax_agreement
            row["scans"] = _time(folder, args.threads, args.iterations)
            results.append(row)
    info = machine_info()
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "checkpoint": str(args.checkpoint),
        "calibrate": [str(c) for c in args.calibrate],
        "int8_target": args.int8_target,
        "results": results,
    }
    stem = args.out or ROOT / "bench" / "results" / f"int8-{machine_slug(info)}"
    write_atomic(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_atomic(stem.with_suffix(".md"), render(report))
    print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# Graph forms and precisions: {report['checkpoint']}",
        "",
        f"{report['created']}, {report['machine'].get('cpu', '?')}; ONNX Runtime through the service's "
        "backend; p50 over the timed runs of each real nuScenes sweep. Agreement: the export gate's worst "
        "argmax agreement with the spconv fp32 reference over every real scan.",
        "",
        "| graph | int8 layers | worst agreement | preprocess ms | inference ms | inference vs sparse fp32 |",
        "|---|---|---|---|---|---|",
    ]
    base = next((r for r in report["results"] if r["form"] == "sparse" and r["precision"] == "fp32"), None)
    base_ms = (
        statistics.median(s["inference_ms"] for s in base["scans"]) if base and "scans" in base else None
    )
    for r in report["results"]:
        name = f"{r['form']} {r['precision']}"
        if "refused" in r:
            lines.append(f"| {name} | | refused by the gate ({r['refused']}) | | | |")
            continue
        prep = statistics.median(s["preprocess_ms"] for s in r["scans"])
        infer = statistics.median(s["inference_ms"] for s in r["scans"])
        ratio = f"{base_ms / infer:.2f}×" if base_ms else ""
        lines.append(
            f"| {name} | {r['int8_layers']} of {r['layers']} | {r['min_agreement']:.4%} | {prep:.0f} | "
            f"{infer:.0f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
