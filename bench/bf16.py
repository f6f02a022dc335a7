"""BF16 against float32 on the torch CPU backend: speed, agreement, and whether oneDNN's bf16 kernels run.

    python bench/bf16.py [--iterations 7] [--out bench/results/bf16-<machine>.json]

1. MatMul ``16384×256 @ 256×256`` in float32 and bf16 (GFLOP/s), and whether this CPU has native bf16.
2. The bundled demo model (``models/demo``, tiny config, trained weights) and a random-init
   ``nuscenes_full`` encoder (BatchNorm statistics randomised, folded), each loaded the way the
   service loads it (`serve.backends.TorchBackend.load`) in fp32 and in bf16.
3. On every real nuScenes sweep: argmax agreement of bf16 with fp32 over the points in the crop,
   and p50 of ``backend.predict`` (prepared inputs → labels) and of `Segmenter.segment` (raw
   points → labels, everything in process), fp32 and bf16 timed alternately so drift hits both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seg3d.checkpoint import ENCODER_PREFIX, Checkpoint, save_checkpoint
from seg3d.config import load_config
from seg3d.manifest import load_manifest
from seg3d.model import Encoder3D
from seg3d.model.precision import TorchPrecision, native_bf16_cpu
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans
from seg3d.sysinfo import machine_info, machine_slug
from serve.backends import TorchBackend
from serve.segmenter import Segmenter

ROOT = Path(__file__).resolve().parent.parent
CPU_PRECISIONS: tuple[TorchPrecision, ...] = ("fp32", "bf16")


def matmul_gflops(dtype: torch.dtype, rows: int = 16384, width: int = 256, repeats: int = 30) -> float:
    a = torch.randn(rows, width).to(dtype)
    b = torch.randn(width, width).to(dtype)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * width * width * repeats / (time.perf_counter() - start) / 1e9


def random_full_export(out: Path) -> Path:
    """``out/encoder3d.pt``: a random-init nuscenes_full encoder with non-trivial BatchNorm statistics."""
    torch.manual_seed(2024)
    model = Encoder3D(load_config("nuscenes_full"), "table")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.8, 1.2, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
    state = {ENCODER_PREFIX + k: v for k, v in model.state_dict().items()}
    save_checkpoint(out / "encoder3d.pt", Checkpoint("3d", model.config, state))
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def bench_model(label: str, model_dir: Path, iterations: int) -> dict[str, Any]:
    manifest = model_dir / "manifest.json"
    config = load_manifest(model_dir).config if manifest.is_file() else load_config("nuscenes_full")
    backends: dict[TorchPrecision, TorchBackend] = {
        precision: TorchBackend.load(model_dir, config, "torch", precision) for precision in CPU_PRECISIONS
    }
    rows = []
    for scan in real_scans(("nuscenes",), intensity_max=config.input.intensity_max):
        raw = scan.points
        points = raw[crop_mask(raw[:, :3], config.grid)]
        inputs = prepare_inputs(points, config)
        labels = {p: b.predict(inputs) for p, b in backends.items()}
        agreement = float((labels["fp32"] == labels["bf16"]).mean())
        segmenters = {p: Segmenter(config, b, 2_000_000) for p, b in backends.items()}
        predict: dict[TorchPrecision, list[float]] = {p: [] for p in backends}
        segment: dict[TorchPrecision, list[float]] = {p: [] for p in backends}
        raw_np = raw.numpy()
        for p in backends:  # warm-up
            segmenters[p].segment(raw_np)
        for _ in range(iterations):
            for p, backend in backends.items():
                start = time.perf_counter()
                backend.predict(inputs)
                predict[p].append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()
                segmenters[p].segment(raw_np)
                segment[p].append((time.perf_counter() - start) * 1e3)
        row = {
            "scan": scan.path.name,
            "points_in_crop": int(points.shape[0]),
            "agreement": agreement,
            "predict_p50_ms": {p: p50(v) for p, v in predict.items()},
            "segment_p50_ms": {p: p50(v) for p, v in segment.items()},
        }
        rows.append(row)
        print(
            f"{label:>14} {scan.path.name[-24:]}: {row['points_in_crop']:,} pts, agreement "
            f"{agreement:.4%}, predict p50 fp32 {row['predict_p50_ms']['fp32']:.0f} / bf16 "
            f"{row['predict_p50_ms']['bf16']:.0f} ms, segment p50 fp32 {row['segment_p50_ms']['fp32']:.0f}"
            f" / bf16 {row['segment_p50_ms']['bf16']:.0f} ms",
            flush=True,
        )
    return {"model": label, "scans": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=7)
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the results as JSON (default bench/results/bf16-<machine>.json)",
    )
    parser.add_argument("--skip-full", action="store_true", help="the demo model only")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "native_bf16": native_bf16_cpu(),
        "matmul_gflops": {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)},
        "models": [],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "models"}), flush=True)
    report["models"].append(bench_model("demo (tiny)", ROOT / "models" / "demo", args.iterations))
    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            report["models"].append(
                bench_model("nuscenes_full", random_full_export(Path(tmp)), args.iterations)
            )
    out = args.out or ROOT / "bench" / "results" / f"bf16-{machine_slug(report['machine'])}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
