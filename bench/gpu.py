"""The checks that need a CUDA GPU, in one run of a few minutes (target: under 8 on one H100/H200).

    python bench/gpu.py                      # everything; writes bench/results/<gpu>.md and .json
    python bench/gpu.py --skip-training      # only export, engine and serving

No GPU has run this project's GPU paths before; this script is where they are first checked:
1. one training step (forward, backward, optimiser step) of each mode (3d, 2dpass, 2ddata) at the
   full config (nuscenes_full, C = 256) on CUDA, on a real nuScenes sweep when one is at hand
   ($SEG3D_REAL_DATA or ../shared/data/real), else on a synthetic sweep: time, peak GPU memory,
   finite loss and gradients;
2. the export of nuscenes_full (random init) with its TensorRT engine: build time, the engine's
   layer types (ProfilingVerbosity.DETAILED) and its own parity gate against spconv (TF32 off);
3. the three GPU serving backends (tensorrt, onnxruntime on CUDA, torch on CUDA) on the same
   clouds: label agreement with the torch backend, the device each really ran on (ONNX Runtime
   can fall back to CPU), p50 inference time; and a cloud above the engine's maximum (refused with
   413 too_many_points) and a one-point cloud (served);
4. spconv on CUDA against the `table` encoder on CUDA (same weights): argmax agreement, max |Δ|.

Exit codes: 0 every check passed, 1 a check failed (the report says which), 2 no CUDA device.
Why these are not CPU tests: each needs a CUDA device (TensorRT, ONNX Runtime's CUDA provider,
spconv's CUDA kernels, the CUDA stream of the TensorRT backend); tests/serve/test_gpu_paths.py
and tests/export/test_gpu_paths.py check the same code paths on CPU with fakes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

MODES = ("3d", "2dpass", "2ddata")
GPU_BACKENDS = ("tensorrt", "onnxruntime", "torch")
AGREEMENT_MIN = {"fp32": 0.999, "fp16": 0.99}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/gpu.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="nuscenes_full", help="bundled model config (default nuscenes_full)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="export precision")
    p.add_argument("--iterations", type=int, default=5, help="timed inferences per backend and cloud")
    p.add_argument("--skip-training", action="store_true", help="skip the training steps")
    p.add_argument("--machine", help="name of the output files (default from the GPU)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p


class Checks:
    """Runs each check, keeps its figures or its error, and never lets one failure stop the rest."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def run(self, name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            figures = check()
        except Exception as exc:
            traceback.print_exc()
            self.results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return None
        figures.setdefault("ok", True)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        self.results[name] = figures
        print(f"   {json.dumps(figures, default=str)}", flush=True)
        return figures

    @property
    def failed(self) -> list[str]:
        return [name for name, r in self.results.items() if not r.get("ok")]


def _cloud(config: Any) -> tuple[Any, str]:
    from seg3d.preprocess import crop_mask
    from seg3d.scans import real_scans, synthetic_sweep

    scans = real_scans(("nuscenes",), config.input.intensity_max)
    points, source = (
        (scans[0].points, f"real {scans[0].name}")
        if scans
        else (synthetic_sweep(34_000, intensity_max=config.input.intensity_max), "synthetic")
    )
    return points[crop_mask(points[:, :3], config.grid)], source


def _test_samples() -> Any:
    """``tests/training/model/samples.py``, loaded by path: the tests are not an installed package."""
    import importlib.util

    path = ROOT / "tests" / "training" / "model" / "samples.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_samples", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_step(mode: str, config_name: str) -> dict[str, Any]:
    import torch

    from seg3d.config import load_config
    from seg3d.preprocess.device import move_to
    from seg3d.scans import real_scans, synthetic_sweep
    from training.data.batch import collate
    from training.model import BranchConfig, build_training_model

    make_sample = _test_samples().make_sample  # the full-config step of the CPU test
    torch.manual_seed(0)
    config = load_config(config_name)
    scans = real_scans(("nuscenes",))
    cloud, source = (scans[0].points, "real") if scans else (synthetic_sweep(34_000), "synthetic")
    batch = move_to(
        collate([make_sample("full", cloud, config, 240, 400, num_boxes=5, seed=0)], config), "cuda"
    )
    model = build_training_model(config, BranchConfig(mode=mode)).cuda()  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = model(batch)
    out.loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    loss = float(out.loss.detach())
    return {
        "ok": finite and loss == loss,
        "cloud": source,
        "points": int(batch.points.shape[0]),
        "step_s": round(seconds, 3),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss": round(loss, 4),
        "grads_finite": finite,
    }


def export_with_engine(config_name: str, precision: str, out: Path, scan_file: Path | None) -> dict[str, Any]:
    import export.to_trt as to_trt
    from seg3d.manifest import load_manifest

    args = ["--config", config_name, "--random-init", "--out", str(out), "--precision", precision, "--strict"]
    if scan_file is not None:
        args += ["--parity-scans", str(scan_file)]
    start = time.perf_counter()
    code = to_trt.main(args)
    seconds = time.perf_counter() - start
    if code != 0:
        return {"ok": False, "error": f"export/to_trt.py exited {code}", "seconds_export": round(seconds, 1)}
    manifest = load_manifest(out)
    engine = manifest.engine
    figures: dict[str, Any] = {
        "export_and_build_s": round(seconds, 1),
        "onnx_parity_min_agreement": manifest.parity.min_argmax_agreement,
        "engine": engine is not None,
    }
    if engine is None:
        figures["ok"] = False
        figures["error"] = "no engine was built (is TensorRT importable?)"
        return figures
    figures.update(
        tensorrt=engine.tensorrt,
        layers=engine.layers,
        layer_types=engine.layer_types,
        profile_points=engine.profile_points,
        engine_mb=round((out / engine.file).stat().st_size / 1e6, 1),
    )
    parity = getattr(engine, "parity", None)
    if parity is not None:
        figures["engine_parity_min_agreement"] = parity.min_argmax_agreement
    figures["ok"] = bool(engine.layer_types) and not any("plugin" in t.lower() for t in engine.layer_types)
    return figures


def serving(model_dir: Path, iterations: int, precision: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from seg3d.manifest import load_manifest
    from serve.backends import load_backend
    from serve.errors import ServiceError
    from serve.segmenter import Segmenter

    config = load_manifest(model_dir).config
    cloud, source = _cloud(config)
    points = cloud.numpy()
    figures: dict[str, Any] = {"cloud": source, "points": int(points.shape[0]), "backends": {}}
    labels: dict[str, Any] = {}
    for name in GPU_BACKENDS:
        entry: dict[str, Any] = {}
        figures["backends"][name] = entry
        try:
            backend = load_backend(name, model_dir, config)
        except Exception as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            continue
        segmenter = Segmenter(config, backend, 2_000_000)
        segmenter.segment(points)  # warm-up
        times = []
        for _ in range(iterations):
            torch.cuda.synchronize()
            result = segmenter.segment(points)
            times.append(result.timing_ms["inference"])
        labels[name] = result.labels
        entry.update(
            ok=backend.device == "cuda", device=backend.device, inference_p50_ms=statistics.median(times)
        )
        if name == "tensorrt":
            entry["profile_points"] = [backend.min_points, backend.max_points]  # type: ignore[attr-defined]
            entry["one_point_label"] = int(segmenter.segment(points[:1]).labels[0])
            limit = backend.max_points  # type: ignore[attr-defined]
            if limit is not None:
                rng = np.random.default_rng(0)
                big = points[rng.integers(0, points.shape[0], limit + 1)]
                big[:, :3] += rng.normal(scale=0.01, size=(limit + 1, 3)).astype(np.float32)
                try:
                    segmenter.segment(big)
                    entry["above_max"] = "served (expected 413)"
                    entry["ok"] = False
                except ServiceError as exc:
                    entry["above_max"] = f"{exc.status} {exc.code}"
                    entry["ok"] = entry["ok"] and exc.status == 413
    if "torch" in labels:
        threshold = AGREEMENT_MIN[precision]
        for name, values in labels.items():
            agreement = float((values == labels["torch"]).mean())
            figures["backends"][name]["agreement_vs_torch"] = agreement
            if agreement < threshold:
                figures["backends"][name]["ok"] = False
    figures["ok"] = all(e.get("ok") for e in figures["backends"].values())
    return figures


def spconv_parity(config_name: str) -> dict[str, Any]:
    import torch

    from seg3d.config import load_config
    from seg3d.model import Encoder3D
    from seg3d.preprocess import prepare_inputs

    config = load_config(config_name)
    cloud, source = _cloud(config)
    torch.manual_seed(0)
    table = Encoder3D(config, "table").eval().cuda()
    reference = Encoder3D(config, "spconv")
    reference.load_state_dict(table.state_dict())
    reference = reference.eval().cuda()
    inputs = prepare_inputs(cloud, config).to("cuda")
    with torch.inference_mode():
        a, b = table(inputs), reference(inputs)
    agreement = float((a.argmax(1) == b.argmax(1)).float().mean())
    return {
        "ok": agreement >= AGREEMENT_MIN["fp32"],
        "cloud": source,
        "points": int(cloud.shape[0]),
        "argmax_agreement": agreement,
        "max_abs_diff": float((a - b).abs().max()),
        "max_abs_logit": float(b.abs().max()),
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU checks: {report['machine_name']}",
        "",
        f"{report['date']}; `python bench/gpu.py {report['args']}`",
        "",
        "| what | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in report["machine"].items()]
    lines += ["", "| check | ok | seconds | figures |", "|---|---|---|---|"]
    for name, result in report["checks"].items():
        figures = {k: v for k, v in result.items() if k not in ("ok", "seconds")}
        lines.append(
            f"| {name} | {'yes' if result.get('ok') else '**NO**'} | {result.get('seconds', '')} | "
            f"`{json.dumps(figures, default=str)}` |"
        )
    failed = [n for n, r in report["checks"].items() if not r.get("ok")]
    lines += ["", f"Failed: {', '.join(failed)}" if failed else "Every check passed.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "bench/gpu.py needs CUDA: no CUDA device is visible to torch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU host.",
            file=sys.stderr,
        )
        return 2
    import numpy as np

    from seg3d.io import write_atomic
    from seg3d.sysinfo import machine_info, machine_slug

    info = machine_info()
    checks = Checks()
    started = time.perf_counter()
    if not args.skip_training:
        for mode in MODES:
            checks.run(f"training step {mode}", lambda mode=mode: training_step(mode, args.config))
            torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory() as tmp:
        from seg3d.config import load_config

        config = load_config(args.config)
        cloud, _ = _cloud(config)
        scan_file = Path(tmp) / "parity.pcd.bin"  # one cloud keeps the CPU spconv reference short
        rows = cloud.numpy().astype(np.float32)
        np.concatenate([rows, np.zeros((rows.shape[0], 1), np.float32)], axis=1).tofile(scan_file)
        model_dir = Path(tmp) / "model"
        built = checks.run(
            "export + engine build + engine parity",
            lambda: export_with_engine(args.config, args.precision, model_dir, scan_file),
        )
        if built is not None and (model_dir / "manifest.json").is_file():
            checks.run("serving backends", lambda: serving(model_dir, args.iterations, args.precision))
    checks.run("spconv CUDA vs table CUDA", lambda: spconv_parity(args.config))
    report = {
        "machine_name": args.machine or machine_slug(info),
        "machine": {**info, "cuda": torch.version.cuda},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "total_seconds": round(time.perf_counter() - started, 1),
        "checks": checks.results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / str(report["machine_name"])
    write_atomic(stem.with_suffix(".json"), json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(stem.with_suffix(".md"), render(report))
    print(f"wrote {stem}.md and {stem}.json ({report['total_seconds']} s)")
    if checks.failed:
        print(f"FAILED: {', '.join(checks.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
