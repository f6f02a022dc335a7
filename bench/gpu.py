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
4. spconv on CUDA against the `table` encoder on CUDA (same weights): argmax agreement, max |Δ|;
5. the `table` encoder itself on CUDA, on every real nuScenes sweep, for the bundled demo model
   (trained) and a random-init nuscenes_full (BatchNorm statistics randomised): float32 (TF32 off)
   against the same weights on the CPU; bf16 and fp16 weights (`seg3d.model.precision.to_half`)
   against CUDA float32 (argmax agreement, max |Δ|, ‖Δ‖/‖ref‖); the dense-gather convolution the
   service runs on CUDA against the present-tap one the CPU runs; p50 of the forward pass and of a
   whole in-process request; and a CUDA graph of one sweep's forward (same logits, replay time:
   what launches cost);
6. the torch backend through a real uvicorn server on CUDA, 8 concurrent clients.

A check whose runtime is not installed (TensorRT, ONNX Runtime's CUDA provider, a CUDA build of
spconv) is *skipped* with the reason, not failed: the report says plainly what did not run.
Exit codes: 0 every check that ran passed, 1 a check failed (the report says which), 2 no CUDA
device.
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
#: Half-precision torch weights against float32 on the GPU: the CPU bf16 gate's threshold.
HALF_AGREEMENT_MIN = 0.995
DEMO = ROOT / "models" / "demo"


class Skipped(Exception):
    """A check that cannot run on this host (its runtime is not installed): reported, not failed."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/gpu.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="nuscenes_full", help="bundled model config (default nuscenes_full)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="export precision")
    p.add_argument("--iterations", type=int, default=5, help="timed inferences per backend and cloud")
    p.add_argument("--skip-training", action="store_true", help="skip the training steps")
    p.add_argument("--http-clients", type=int, default=8, help="concurrent clients of the server check")
    p.add_argument("--http-requests", type=int, default=4, help="requests per client")
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
        except Skipped as exc:
            print(f"   skipped: {exc}", flush=True)
            self.results[name] = {"ok": None, "skipped": str(exc)}
            return None
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
        return [name for name, r in self.results.items() if r.get("ok") is False]

    @property
    def skipped(self) -> list[str]:
        return [name for name, r in self.results.items() if r.get("ok") is None]


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


def _by_path(relative: str) -> Any:
    """A script of this repository loaded by path (``tests`` and ``bench`` are not installed
    packages)."""
    import importlib.util

    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"bench_gpu_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_step(mode: str, config_name: str, steps: int = 3) -> dict[str, Any]:
    """``steps`` training steps of ``mode`` on the encoder backend a training run would pick here
    (`training.backend.choose_backend`): the first is cold (CUDA context, kernel selection), the
    rest are timed as the steady state."""
    import torch

    from seg3d.config import load_config
    from seg3d.preprocess.device import move_to
    from seg3d.scans import real_scans, synthetic_sweep
    from training.backend import choose_backend
    from training.data.batch import collate
    from training.model import BranchConfig, build_training_model

    make_sample = _by_path("tests/training/model/samples.py").make_sample  # the CPU test's full step
    torch.manual_seed(0)
    config = load_config(config_name)
    scans = real_scans(("nuscenes",))
    cloud, source = (scans[0].points, "real") if scans else (synthetic_sweep(34_000), "synthetic")
    batch = move_to(
        collate([make_sample("full", cloud, config, 240, 400, num_boxes=5, seed=0)], config), "cuda"
    )
    choice = choose_backend("auto", torch.device("cuda"))
    model = build_training_model(config, BranchConfig(mode=mode), backend=choice.backend).cuda()  # type: ignore[arg-type]
    model.encoder3d.present_taps = choice.present_taps
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    losses: list[float] = []
    finite = True
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(batch)
        out.loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(float(out.loss.detach()))
        finite = finite and all(
            bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None
        )
    return {
        "ok": finite and all(loss == loss for loss in losses),
        "backend": choice.describe(),
        "cloud": source,
        "points": int(batch.points.shape[0]),
        "first_step_s": round(times[0], 3),
        "step_s": round(statistics.median(times[1:]), 3) if len(times) > 1 else None,
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "losses": [round(loss, 4) for loss in losses],
        "grads_finite": finite,
    }


def export_with_engine(config_name: str, precision: str, out: Path, scan_file: Path | None) -> dict[str, Any]:
    import importlib.util

    import export.to_trt as to_trt
    from seg3d.manifest import load_manifest

    for module, what in (("tensorrt", "TensorRT"), ("spconv", "spconv (the export's parity reference)")):
        if importlib.util.find_spec(module) is None:
            raise Skipped(f"{what} is not installed on this host (pip install -e '.[gpu]')")
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


def spconv_parity(config_name: str, iterations: int) -> dict[str, Any]:
    import torch

    from training.backend import spconv_cuda_available

    if not spconv_cuda_available():
        raise Skipped("no CUDA build of spconv is installed on this host (pip install spconv-cu126)")
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
    with torch.inference_mode():
        spconv_ms = _ms(lambda: reference(inputs), iterations, "cuda")
        table_ms = _ms(lambda: table(inputs), iterations, "cuda")
    return {
        "ok": agreement >= AGREEMENT_MIN["fp32"],
        "cloud": source,
        "points": int(cloud.shape[0]),
        "argmax_agreement": agreement,
        "max_abs_diff": float((a - b).abs().max()),
        "max_abs_logit": float(b.abs().max()),
        # TF32 as the process has it (off in this script): both backends in true fp32.
        "forward_ms_spconv": spconv_ms,
        "forward_ms_table": table_ms,
    }


def matmul_ceiling() -> dict[str, Any]:
    """TFLOP/s of the encoder's own MatMul shape (``16384×256 @ 256×256``, a C = 256 layer over a
    sweep's voxels) and of a large square one, per dtype: the GPU's ceiling for this model."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    figures: dict[str, Any] = {}
    for label, (m, k, n) in {
        "16384x256x256": (16384, 256, 256),
        "8192x8192x8192": (8192, 8192, 8192),
    }.items():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            a = torch.randn(m, k, device="cuda").to(dtype)  # random data: zeros run faster
            b = torch.randn(k, n, device="cuda").to(dtype)
            repeats = 200 if m * n * k < 1e10 else 10
            ms = _ms(lambda a=a, b=b, r=repeats: [a @ b for _ in range(r)], 3, "cuda") / repeats
            figures[f"{label} {name} TFLOP/s"] = round(2 * m * k * n / ms / 1e9, 1)
    return figures


def preprocessing_profile(config_name: str) -> dict[str, Any]:
    """`prepare_inputs` on the GPU under the PyTorch profiler, one real sweep: per stage, how many
    kernels it launches and how often the host waits for the device (a ``nonzero``, an ``int()`` of
    a device value), and the ops that take the most host time — where its milliseconds go."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from seg3d.config import load_config
    from seg3d.preprocess import prepare_inputs

    config = load_config(config_name)
    cloud, source = _cloud(config)
    points = cloud.cuda()
    prepare_inputs(points, config)  # warm-up
    torch.cuda.synchronize()
    stages: dict[str, float] = {}
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        prepare_inputs(points, config, timings=stages)
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    waits = sum(e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"))
    copies = sum(e.count for e in events if e.key.startswith("cudaMemcpy"))
    top = sorted(
        (e for e in events if e.device_type == torch.autograd.DeviceType.CPU and e.key.startswith("aten::")),
        key=lambda e: e.self_cpu_time_total,
        reverse=True,
    )[:10]
    return {
        "cloud": source,
        "stages_ms": {k: round(v, 2) for k, v in stages.items()},
        "cuda_kernels": kernels,
        "host_waits": waits,
        "memcpy_calls": copies,
        "top_host_ops": {e.key: [e.count, round(e.self_cpu_time_total / 1e3, 2)] for e in top},
    }


def _ms(run: Callable[[], Any], iterations: int, device: str) -> float:
    """p50 wall time of ``run`` in ms, the device synchronised around each call (one warm-up)."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    run()
    times = []
    for _ in range(iterations):
        sync()
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 2)


def _compare(reference: Any, other: Any, ignore_index: int) -> dict[str, float]:
    """Argmax agreement (the service's rule), max |Δ| and ‖Δ‖/‖ref‖ of two ``(N, K)`` logits."""
    from seg3d.model import labels_from_logits

    a, b = reference.float().cpu(), other.float().cpu()
    agree = (labels_from_logits(a, ignore_index) == labels_from_logits(b, ignore_index)).float().mean()
    return {
        "agreement": round(float(agree), 5),
        "max_abs_diff": float(f"{float((a - b).abs().max()):.3g}"),
        "relative_error": float(f"{float((a - b).norm() / a.norm()):.3g}"),
    }


def _graph_replay(model: Any, inputs: Any, eager: Any, iterations: int) -> dict[str, Any]:
    """One sweep's forward captured as a CUDA graph: its logits against eager, and its replay time.

    The graph is shape-specific (each sweep has its own voxel counts), so this measures what kernel
    launches cost the eager path rather than a serving mode. Its logits are compared with a
    tolerance: the pools' ``index_add`` accumulates with atomics, in a different order per run."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up on a side stream, as capture requires
            model(inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = model(inputs)
    graph.replay()
    torch.cuda.synchronize()
    return {
        "max_abs_diff_vs_eager": float(f"{float((static - eager).abs().max()):.3g}"),
        "replay_ms": _ms(graph.replay, iterations, "cuda"),
    }


def torch_encoder(label: str, checkpoint: Path, iterations: int, device: str = "cuda") -> dict[str, Any]:
    """The `table` encoder on ``device`` against the same weights on the CPU, in every precision
    ``device`` serves, on every real nuScenes sweep (see the module docstring, check 5)."""
    import torch

    from seg3d.checkpoint import load_checkpoint, load_encoder
    from seg3d.model.precision import CUDA_ONLY, PRECISIONS
    from seg3d.preprocess import crop_mask, prepare_inputs
    from seg3d.scans import real_scans
    from serve.backends import TorchBackend
    from serve.segmenter import Segmenter

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 parity means float32 arithmetic
    torch.backends.cudnn.allow_tf32 = False
    loaded = load_checkpoint(checkpoint)
    config = loaded.model_config
    scans = real_scans(("nuscenes",), config.input.intensity_max)
    if not scans:
        raise Skipped("no real nuScenes sweep at hand ($SEG3D_REAL_DATA or ../shared/data/real)")
    precisions = [p for p in PRECISIONS if device == "cuda" or p not in CUDA_ONLY]
    cpu = load_encoder(loaded, "table", device="cpu", fold=True)
    models = {p: load_encoder(loaded, "table", device=device, fold=True, precision=p) for p in precisions}
    present = load_encoder(loaded, "table", device=device, fold=True)
    present.present_taps = True  # the CPU's convolution form, on this device
    figures: dict[str, Any] = {
        "model": label,
        "config": config.name,
        "dense_gather_on_device": not models["fp32"].present_taps,
        "sweeps": {},
    }
    ok = True
    for scan in scans:
        cloud = scan.points[crop_mask(scan.points[:, :3], config.grid)]
        host = prepare_inputs(cloud, config)
        inputs = host.to(device)
        row: dict[str, Any] = {"points": int(cloud.shape[0])}
        with torch.inference_mode():
            reference = cpu(host)
            logits = {p: models[p](inputs) for p in precisions}
            row["fp32_vs_cpu"] = _compare(reference, logits["fp32"], config.ignore_index)
            row["present_taps_vs_dense"] = _compare(logits["fp32"], present(inputs), config.ignore_index)
            ok = ok and row["fp32_vs_cpu"]["agreement"] >= AGREEMENT_MIN["fp32"]
            ok = ok and row["present_taps_vs_dense"]["agreement"] >= AGREEMENT_MIN["fp32"]
            for p in precisions[1:]:
                row[f"{p}_vs_fp32"] = _compare(logits["fp32"], logits[p], config.ignore_index)
                ok = ok and row[f"{p}_vs_fp32"]["agreement"] >= HALF_AGREEMENT_MIN
            row["forward_p50_ms"] = {
                p: _ms(lambda m=models[p], x=inputs: m(x), iterations, device) for p in precisions
            }
            row["forward_p50_ms"]["fp32_present_taps"] = _ms(lambda x=inputs: present(x), iterations, device)
            row["cpu_forward_p50_ms"] = _ms(lambda h=host: cpu(h), max(1, iterations // 2), "cpu")
            if device == "cuda":
                for p in ("fp32", "fp16"):
                    try:
                        row[f"cuda_graph_{p}"] = _graph_replay(models[p], inputs, logits[p], iterations)
                    except Exception as exc:  # capture can refuse an op; report it, keep going
                        row[f"cuda_graph_{p}"] = {"error": f"{type(exc).__name__}: {exc}"}
        raw = scan.path.read_bytes()
        # preprocessing where the service runs it for this backend (`serve.segmenter`) against the CPU
        on_device = Segmenter(
            config, TorchBackend(models["fp32"], config, device, "torch", "fp32"), 10_000_000
        )
        on_cpu = Segmenter(on_device.config, on_device.backend, 10_000_000, preprocess_on="cpu")
        points = on_device.decode(raw, "nuscenes")
        row["preprocess_on"] = on_device.preprocess_on
        row["labels_device_vs_cpu_preprocessing"] = round(
            float((on_device.segment(points).labels == on_cpu.segment(points).labels).mean()), 5
        )
        row["preprocess_p50_ms"] = {
            where: statistics.median([seg.segment(points).timing_ms["preprocess"] for _ in range(iterations)])
            for where, seg in (("cpu", on_cpu), (on_device.preprocess_on, on_device))
        }
        ok = ok and row["labels_device_vs_cpu_preprocessing"] >= AGREEMENT_MIN["fp32"]
        stages: dict[str, float] = {}
        prepare_inputs(cloud.to(on_device.preprocess_on), config, timings=stages)
        row["device_preprocess_stages_ms"] = {k: round(v, 2) for k, v in stages.items()}
        row["request_p50_ms"] = {}
        for p in precisions:
            segmenter = Segmenter(config, TorchBackend(models[p], config, device, "torch", p), 10_000_000)
            row["request_p50_ms"][p] = _ms(
                lambda s=segmenter, r=raw: s.handle(r, "nuscenes"), iterations, device
            )
            stages = segmenter.handle(raw, "nuscenes").timing_ms
            row.setdefault("request_stages_ms", {})[p] = {k: round(v, 2) for k, v in stages.items()}
        figures["sweeps"][scan.name] = row
        print(f"   {label} {scan.name}: {json.dumps(row)}", flush=True)
    figures["ok"] = ok
    return figures


def http_serving(
    checkpoint: Path, precisions: tuple[str, ...], clients: int, requests: int
) -> dict[str, Any]:
    """The torch backend behind a real uvicorn server on this host's device (``bench/run.py``'s
    clients and memory sampler): one request alone, then ``clients`` concurrent clients sending a
    real nuScenes sweep, once per precision. The model folder is a real export (ONNX only)."""
    import export.to_trt as to_trt
    from seg3d.scans import real_scans

    scans = real_scans(("nuscenes",))
    if not scans:
        raise Skipped("no real nuScenes sweep at hand ($SEG3D_REAL_DATA or ../shared/data/real)")
    run = _by_path("bench/run.py")
    figures: dict[str, Any] = {"sweep": scans[0].name}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        start = time.perf_counter()
        code = to_trt.main(
            ["--checkpoint", str(checkpoint), "--out", str(model_dir), "--onnx-only", "--skip-parity"]
        )
        if code:
            return {"ok": False, "error": f"export/to_trt.py exited {code}"}
        figures["export_s"] = round(time.perf_counter() - start, 1)
        raw = scans[0].path.read_bytes()
        for precision in precisions:
            result = run.bench_http(
                model_dir, "torch", None, raw, clients, requests, ["--torch-precision", precision]
            )
            result["ok"] = set(result["statuses"]) == {"200"}
            figures[precision] = result
            print(f"   http {precision}: {json.dumps(result, default=str)}", flush=True)
    figures["ok"] = all(figures[p]["ok"] for p in precisions)
    return figures


def _encoder_table(result: dict[str, Any]) -> list[str]:
    """check 5 as a table: one row per sweep."""
    sweeps = result.get("sweeps", {})
    if not sweeps:
        return []
    halves = [p for p in ("bf16", "fp16") if any(f"{p}_vs_fp32" in r for r in sweeps.values())]
    head = ["sweep", "points", "fp32 vs CPU: agree / max Δ", "present taps vs dense"]
    head += [f"{p} vs fp32: agree / rel. err" for p in halves]
    head += ["forward p50 ms (fp32 / present taps / " + " / ".join(halves) + ")", "CPU forward ms"]
    head += [
        "CUDA graph replay ms (fp32 / fp16)",
        "preprocess p50 ms (CPU / device)",
        "labels, device vs CPU preprocessing",
    ]
    head += ["request p50 ms (fp32 / " + " / ".join(halves) + ")"]
    lines = [
        "",
        f"### {result.get('model')} ({result.get('config')}): the `table` encoder on the GPU",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def graph(row: dict[str, Any], p: str) -> str:
        g = row.get(f"cuda_graph_{p}", {})
        return "error" if "error" in g else f"{g.get('replay_ms', '')}"

    for name, row in sweeps.items():
        forward = row["forward_p50_ms"]
        cells = [
            name.split("__")[-1],
            f"{row['points']:,}",
            f"{row['fp32_vs_cpu']['agreement']:.4%} / {row['fp32_vs_cpu']['max_abs_diff']:.1e}",
            f"{row['present_taps_vs_dense']['agreement']:.4%}",
            *(
                f"{row[f'{p}_vs_fp32']['agreement']:.3%} / {row[f'{p}_vs_fp32']['relative_error']:.1e}"
                for p in halves
            ),
            " / ".join(str(forward[k]) for k in ("fp32", "fp32_present_taps", *halves)),
            str(row["cpu_forward_p50_ms"]),
            f"{graph(row, 'fp32')} / {graph(row, 'fp16')}",
            " / ".join(f"{v:.1f}" for v in row.get("preprocess_p50_ms", {}).values()),
            f"{row.get('labels_device_vs_cpu_preprocessing', float('nan')):.4%}",
            " / ".join(str(row["request_p50_ms"][k]) for k in ("fp32", *halves)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU checks: {report['machine_name']}",
        "",
        f"{report['date']}; `python bench/gpu.py {report['args']}`; {report['total_seconds']} s",
        "",
        "| what | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in report["machine"].items()]
    lines += ["", "| check | ok | seconds | figures |", "|---|---|---|---|"]
    for name, result in report["checks"].items():
        ok = {True: "yes", False: "**NO**", None: "skipped"}[result.get("ok")]
        figures = {k: v for k, v in result.items() if k not in ("ok", "seconds", "sweeps")}
        lines.append(
            f"| {name} | {ok} | {result.get('seconds', '')} | `{json.dumps(figures, default=str)}` |"
        )
    for result in report["checks"].values():
        lines += _encoder_table(result)
    failed = [n for n, r in report["checks"].items() if r.get("ok") is False]
    skipped = [n for n, r in report["checks"].items() if r.get("ok") is None]
    lines += ["", f"Failed: {', '.join(failed)}." if failed else "Every check that ran passed."]
    if skipped:
        lines.append(f"Not run (runtime not installed on this host): {', '.join(skipped)}.")
    lines.append("")
    return "\n".join(lines)


def _report(
    args: argparse.Namespace, argv: list[str] | None, info: dict[str, Any], checks: Checks, started: float
) -> dict[str, Any]:
    import torch

    return {
        "machine_name": args.machine or _slug(info),
        "machine": {**info, "cuda": torch.version.cuda},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "total_seconds": round(time.perf_counter() - started, 1),
        "checks": checks.results,
    }


def _slug(info: dict[str, Any]) -> str:
    from seg3d.sysinfo import machine_slug

    return machine_slug(info)


def _write(report: dict[str, Any], out: Path) -> Path:
    """The report as .json and .md, rewritten after every check: a run cut short keeps what it did."""
    from seg3d.io import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    stem = out / str(report["machine_name"])
    write_atomic(stem.with_suffix(".json"), json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(stem.with_suffix(".md"), render(report))
    return stem


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

    from seg3d.sysinfo import machine_info

    info = machine_info()
    info["runtimes"] = _runtimes()
    checks = Checks()
    started = time.perf_counter()

    def record(name: str, check: Callable[[], dict[str, Any]]) -> None:
        checks.run(name, check)
        torch.cuda.empty_cache()
        _write(_report(args, argv, info, checks, started), args.out)

    with tempfile.TemporaryDirectory() as tmp:
        full = _by_path("bench/bf16.py").random_full_export(Path(tmp)) / "encoder3d.pt"
        record("MatMul ceiling", matmul_ceiling)
        record("preprocessing on the GPU, profiled", lambda: preprocessing_profile(args.config))
        record(
            "torch encoder, demo model", lambda: torch_encoder("demo", DEMO / "encoder3d.pt", args.iterations)
        )
        record("torch encoder, nuscenes_full", lambda: torch_encoder("full", full, args.iterations))
        if not args.skip_training:
            for mode in MODES:
                record(f"training step {mode}", lambda mode=mode: training_step(mode, args.config))
        record(
            "torch backend through the server",
            lambda: http_serving(full, ("fp32", "fp16"), args.http_clients, args.http_requests),
        )
        from seg3d.config import load_config

        config = load_config(args.config)
        cloud, _ = _cloud(config)
        scan_file = Path(tmp) / "parity.pcd.bin"  # one cloud keeps the CPU spconv reference short
        rows = cloud.numpy().astype(np.float32)
        np.concatenate([rows, np.zeros((rows.shape[0], 1), np.float32)], axis=1).tofile(scan_file)
        model_dir = Path(tmp) / "model"
        record(
            "export + engine build + engine parity",
            lambda: export_with_engine(args.config, args.precision, model_dir, scan_file),
        )
        if (model_dir / "manifest.json").is_file():
            record("serving backends", lambda: serving(model_dir, args.iterations, args.precision))
    record("spconv CUDA vs table CUDA", lambda: spconv_parity(args.config, args.iterations))
    report = _report(args, argv, info, checks, started)
    stem = _write(report, args.out)
    print(f"wrote {stem}.md and {stem}.json ({report['total_seconds']} s)")
    if checks.skipped:
        print(f"skipped (not installed here): {', '.join(checks.skipped)}", file=sys.stderr)
    if checks.failed:
        print(f"FAILED: {', '.join(checks.failed)}", file=sys.stderr)
        return 1
    return 0


def _runtimes() -> dict[str, str | None]:
    """Versions of the optional GPU runtimes (None: not installed), and ONNX Runtime's providers."""
    import importlib.metadata

    found: dict[str, str | None] = {}
    for dist in ("tensorrt", "onnxruntime", "onnxruntime-gpu", "spconv-cu126", "spconv"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    try:
        import onnxruntime

        found["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        found["onnxruntime providers"] = None
    return found


if __name__ == "__main__":
    sys.exit(main())
