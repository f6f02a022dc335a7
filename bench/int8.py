"""The exported graph's forms and precisions side by side: same weights, same real sweeps.

    python bench/int8.py --checkpoint models/demo/encoder3d.pt --calibrate ../shared/data/real/semantickitti
    python bench/int8.py --checkpoint runs/full-synthetic/best.pt --calibrate /data/nuscenes
    python bench/int8.py --checkpoint models/demo/encoder3d.pt --calibrate ../shared/data/real/semantickitti \
        --int8-target 0.999 --miou-synthetic 16

Exports the checkpoint with export/to_trt.py (ONNX only, the real parity gate on) as the dense
fp32 graph, the sparse fp32 graph and the sparse int8 graph (calibrated on --calibrate, layers
chosen by --int8-target), then times ONNX Runtime through the service's own backend
(`serve.backends.OnnxRuntimeBackend`, the session options of `seg3d.ort_options`) on each real
nuScenes sweep: preprocessing and inference p50, and the share of layers in int8 with the gate's
worst agreement. An export the gate refuses is reported as refused. Results go to
bench/results/int8-<machine>.md and .json.

With --miou-synthetic N it also generates N labelled synthetic sweeps (`training.data.synthetic`,
one keyframe per scene, seed --miou-seed: not the demo model's training seed 0, and not the
calibration data) and reports each graph's mIoU on them (crop, one vote: the demo model card's
metric, `training.metrics`) and its difference from the sparse fp32 graph's in points. The helpers
(`synthetic_sweeps`, `labelled_sweeps`, `graph_miou`) are the ones the int8 accuracy test uses
(tests/export/test_int8_demo_miou.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import export.to_trt as to_trt
from seg3d.config import ModelConfig
from seg3d.io import write_atomic
from seg3d.manifest import load_manifest
from seg3d.ort_options import int8_kernels_exact
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans
from seg3d.sysinfo import machine_info, machine_slug
from serve.backends import OnnxRuntimeBackend

if TYPE_CHECKING:  # training (and the nuScenes devkit) is imported only for --miou-synthetic
    from training.data.sample import LidarSample
    from training.metrics import IoUReport

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = (("dense", "fp32"), ("sparse", "fp32"), ("sparse", "int8"))
#: Seed of the held-out synthetic sweeps: the demo model trained on the scenes of seed 0
#: (models/demo/MODEL_CARD.md), and a scene's world is drawn from (seed, scene index) alone.
HELD_OUT_SEED = 101
#: The synthetic data set's version: its devkit splits hold enough scene names for one scene per sweep.
SYNTHETIC_VERSION = "v1.0-trainval"


def synthetic_sweeps(out: Path, sweeps: int, seed: int = HELD_OUT_SEED, workers: int | None = None) -> Path:
    """Generate ``sweeps`` labelled synthetic LiDAR sweeps in the nuScenes layout at ``out`` and
    return ``out``: one keyframe per scene, so each sweep is its own street. The cameras, which
    nothing here reads, are ray cast at the generator's lowest resolution."""
    from training.data.synthetic import generate

    generate(out, sweeps, 1, seed, SYNTHETIC_VERSION, workers=workers, render_scale=0.1)
    return out


def labelled_sweeps(root: Path, config: ModelConfig) -> list[LidarSample]:
    """Every keyframe of the synthetic data set at ``root`` (all its devkit splits), as the
    evaluation reads it: the points inside ``config``'s crop, no augmentation, training-id labels."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.splits import create_splits_scenes

    from training.data.nuscenes import NuScenesDataset, NuScenesOptions

    nusc = NuScenes(version=SYNTHETIC_VERSION, dataroot=str(root), verbose=False)
    names = {scene["name"] for scene in nusc.scene}
    samples: list[LidarSample] = []
    for split in ("train", "val"):
        if names.isdisjoint(create_splits_scenes()[split]):
            continue
        options = NuScenesOptions(version=SYNTHETIC_VERSION, split=split, cameras="none")
        dataset = NuScenesDataset(root, config, options, nusc=nusc)
        samples += [dataset[i] for i in range(len(dataset))]
    return samples


def graph_miou(model_dir: Path, samples: Sequence[LidarSample], threads: int | None = None) -> IoUReport:
    """Per-class IoU and mIoU (fractions, `training.metrics`) of the exported graph in ``model_dir``,
    run by the service's ONNX Runtime backend on each labelled sample."""
    from training.metrics import ConfusionMatrix

    config = load_manifest(model_dir).config
    backend = OnnxRuntimeBackend.load(model_dir, config, threads)
    matrix = ConfusionMatrix(config.num_classes)
    for sample in samples:
        if sample.labels is None:
            raise ValueError(f"sample {sample.name} has no labels")
        predicted = backend.predict(prepare_inputs(sample.points, config))
        matrix.update(torch.from_numpy(predicted), sample.labels)
    return matrix.report(config.class_names)


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
    p.add_argument(
        "--miou-synthetic",
        type=int,
        default=0,
        metavar="N",
        help="also report each graph's mIoU on N generated held-out synthetic sweeps (default 0: off)",
    )
    p.add_argument(
        "--miou-seed",
        type=int,
        default=HELD_OUT_SEED,
        help=f"seed of the --miou-synthetic sweeps ({HELD_OUT_SEED}; the demo model trained on seed 0)",
    )
    p.add_argument("--out", type=Path, help="result stem (default bench/results/int8-<machine>)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.miou_synthetic < 0:
        p.error(f"--miou-synthetic must be at least 0, got {args.miou_synthetic}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        held_out = None
        if args.miou_synthetic:
            print(
                f"generate {args.miou_synthetic} held-out synthetic sweeps (seed {args.miou_seed})",
                flush=True,
            )
            held_out = synthetic_sweeps(Path(tmp) / "held-out", args.miou_synthetic, args.miou_seed)
        samples: list[LidarSample] | None = None
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
            if held_out is not None:
                if samples is None:
                    samples = labelled_sweeps(held_out, manifest.config)
                iou = graph_miou(folder, samples, args.threads)
                row["miou"] = iou.miou
                row["iou"] = iou.as_dict()["iou"]
            results.append(row)
    info = machine_info()
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "checkpoint": str(args.checkpoint),
        "calibrate": [str(c) for c in args.calibrate],
        "int8_target": args.int8_target,
        # how the service runs the int8 layers here (seg3d.ort_options): integer kernels, or emulated
        "int8_kernels_exact": int8_kernels_exact(),
        "miou_synthetic": (
            {"sweeps": args.miou_synthetic, "seed": args.miou_seed, "version": SYNTHETIC_VERSION}
            if args.miou_synthetic
            else None
        ),
        "results": results,
    }
    stem = args.out or ROOT / "bench" / "results" / f"int8-{machine_slug(info)}"
    write_atomic(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_atomic(stem.with_suffix(".md"), render(report))
    print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    miou = report.get("miou_synthetic")
    lines = [
        f"# Graph forms and precisions: {report['checkpoint']}",
        "",
        f"{report['created']}, {report['machine'].get('cpu', '?')}; ONNX Runtime through the service's "
        "backend; p50 over the timed runs of each real nuScenes sweep. Agreement: the export gate's worst "
        "argmax agreement with the spconv fp32 reference over every real scan.",
        "",
        (
            "The int8 layers ran on ONNX Runtime's integer kernels (this CPU has VNNI)."
            if report.get("int8_kernels_exact", True)
            else "This CPU has no VNNI, where ONNX Runtime's integer kernels saturate: the service ran the "
            "int8 layers emulated in float32 (exact labels, no int8 speed-up; `seg3d.ort_options`)."
        ),
    ]
    header = (
        "| graph | int8 layers | worst agreement | preprocess ms | inference ms | inference vs sparse fp32 |"
    )
    if miou:
        lines += [
            "",
            f"mIoU: on {miou['sweeps']} held-out synthetic sweeps ({miou['version']}, seed {miou['seed']}, "
            "one keyframe per scene), points in the crop, one vote (the demo model card's metric); "
            "Δ: points of mIoU against the sparse fp32 graph.",
        ]
        header += " synthetic mIoU % | mIoU Δ vs sparse fp32 |"
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    base = next((r for r in report["results"] if r["form"] == "sparse" and r["precision"] == "fp32"), None)
    base_ms = (
        statistics.median(s["inference_ms"] for s in base["scans"]) if base and "scans" in base else None
    )
    base_miou = base.get("miou") if base else None
    for r in report["results"]:
        name = f"{r['form']} {r['precision']}"
        if "refused" in r:
            lines.append(
                f"| {name} | | refused by the gate ({r['refused']}) | | | |" + (" | |" if miou else "")
            )
            continue
        prep = statistics.median(s["preprocess_ms"] for s in r["scans"])
        infer = statistics.median(s["inference_ms"] for s in r["scans"])
        ratio = f"{base_ms / infer:.2f}×" if base_ms else ""
        row = (
            f"| {name} | {r['int8_layers']} of {r['layers']} | {r['min_agreement']:.4%} | {prep:.0f} | "
            f"{infer:.0f} | {ratio} |"
        )
        if miou:
            delta = f"{100 * (r['miou'] - base_miou):+.2f}" if base_miou is not None else ""
            row += f" {100 * r['miou']:.2f} | {delta} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
