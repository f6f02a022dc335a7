"""Every way to run the encoder side by side, in one run, on the same weights and real scans.

    python bench/run.py --full-checkpoint runs/full-synthetic/best.pt \\
        --calibrate /data/nuscenes/sweeps/LIDAR_TOP   # the issue's table: ~30 min on 2 idle cores
    python bench/run.py --models demo --iterations 1 --warmup 0   # quick

Models (--models): ``full`` is nuscenes_full with the trained weights of --full-checkpoint (random
init without it), ``demo`` the bundled demo model (config tiny, --demo-checkpoint). Each is exported
with export/to_trt.py (ONNX only) as the dense fp32 graph, the sparse fp32 graph and, with trained
weights and --calibrate, the sparse int8 graph. Trained weights go through the real parity gate
against the spconv reference; a graph it refuses is reported as refused, not run. Random-init
exports skip the gate (their near-tied logits say nothing about a graph), and int8 is not run.

Rows, per model: ``spconv`` (the reference, ONE torch thread: its CPU build is only correct
single-threaded), ``torch fp32`` and ``torch bf16`` (the table encoder, present taps), ``onnxruntime
dense fp32``, ``onnxruntime sparse fp32`` and ``onnxruntime sparse int8``; the others use every core.

1. In process, per row and real scan (nuScenes sweeps, KITTI scans): p50/p95 of each stage of a
   request through `serve.segmenter.Segmenter` (parse, preprocess, inference, postprocess) and of
   the total.
2. Multiply-adds of one forward pass per scan (`seg3d.model.cost.multiply_adds`): all 27 taps per
   voxel for the dense graph, the centre tap plus the present neighbour pairs for the others, with
   each row's own schedule of the linear layers. Achieved GFLOP/s = 2 × MACs / inference p50, beside
   this CPU's peak measured in the same run: a 16384×256 @ 256×256 MatMul in torch fp32 (every
   thread and one), torch bf16 and ONNX Runtime fp32.
3. Through a real uvicorn server: --http-clients concurrent clients (8) send a real sweep;
   client-side end-to-end p50/p95, throughput, and the server's peak resident memory sampled every
   20 ms; for the spconv reference and for the fastest in-process row.
Results go to bench/results/<machine>.md and .json, with the Performance issue's targets.

    python bench/run.py --batching --models demo                     # models/demo, ~4 min
    python bench/run.py --batching --models full --full-export /tmp/full-export   # ~15 min

--batching measures the service's micro-batching instead (`serve.batching`, ``--max-batch``): a
real ``python -m serve`` process on the ONNX Runtime backend, 1, 8 and 32 concurrent clients
(--batching-clients) each sending the same real nuScenes sweep, batching off (``--max-batch 1``)
then on (``--max-batch`` --batching-max-batch); throughput, client-side latency p50/p95, the
server's peak RSS, and whether every answer has the labels of the unbatched server. ``demo`` is the
bundled export models/demo (--demo-export), ``full`` an export of nuscenes_full (--full-export, or
exported here with random-init weights unless --full-checkpoint). Results go to
bench/results/batching-<machine>.md and .json, with the default they call for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import psutil
import torch

import export.to_trt as to_trt
from seg3d.config import ModelConfig, bundled_configs, load_config
from seg3d.io import write_atomic
from seg3d.manifest import GraphForm, load_manifest
from seg3d.model.cost import Schedule, multiply_adds, present_taps
from seg3d.model.precision import TorchPrecision
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import RealScan, real_scans
from seg3d.sysinfo import machine_info, machine_slug
from serve.backends import BackendLoadError, BackendUnavailable, load_backend
from serve.local import start_local_server
from serve.segmenter import Segmenter

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("parse", "preprocess", "inference", "postprocess")
FORMAT = {"nuscenes": "nuscenes", "kitti": "kitti", "semantickitti": "kitti"}
TARGETS = {
    "full_end_to_end_ms_max": 250.0,
    "full_throughput_rps_min": 4.0,
    "demo_end_to_end_ms_max": 25.0,
    "cpu_speedup_vs_spconv": 2.0,
    "overhead_share_max": 0.10,
    "server_rss_gib_max": 3.0,
    "gpu_inference_ms_max": 10.0,
    "gpu_preprocess_ms_max": 2.0,
    "gpu_end_to_end_ms_max": 25.0,
}
#: The MatMul of the peak measurement: (M, K) @ (K, N).
PEAK_SHAPE = (16384, 256, 256)


class ModelSpec(NamedTuple):
    """A model of the run: its bundled config and where its weights come from."""

    name: str
    config: str
    checkpoint: Path | None  # None: random init


class Export(NamedTuple):
    """One exported graph of a model: a folder of export/to_trt.py."""

    key: str
    form: str
    precision: str


EXPORTS = (Export("dense-fp32", "dense", "fp32"), Export("sparse-fp32", "sparse", "fp32"))
INT8_EXPORT = Export("sparse-int8", "sparse", "int8")


class Row(NamedTuple):
    """A backend with its precision or graph: one line of the table.

    ``export``: the folder it runs (None: the PyTorch backends, which read the checkpoint any
    export folder holds). ``form``/``schedule``: its multiply-adds (`seg3d.model.cost`); ``peak``:
    the MatMul peak it is compared with."""

    name: str
    backend: str
    export: str | None
    form: GraphForm
    schedule: Schedule
    peak: str
    torch_precision: TorchPrecision = "fp32"

    @property
    def server_args(self) -> list[str]:
        return ["--torch-precision", self.torch_precision] if self.backend == "torch" else []


ROWS = (
    Row("spconv", "spconv", None, "sparse", "spconv", "torch fp32, 1 thread"),
    Row("torch fp32", "torch", None, "sparse", "table", "torch fp32"),
    Row("torch bf16", "torch", None, "sparse", "table", "torch bf16", "bf16"),
    Row("onnxruntime dense fp32", "onnxruntime", "dense-fp32", "dense", "graph", "onnxruntime fp32"),
    Row("onnxruntime sparse fp32", "onnxruntime", "sparse-fp32", "sparse", "graph", "onnxruntime fp32"),
    Row("onnxruntime sparse int8", "onnxruntime", "sparse-int8", "sparse", "graph", "onnxruntime fp32"),
)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (reports read the same on every clone)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- exports -------------------------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy (export's error lines become the rows' reasons)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def _to_trt(argv: list[str]) -> tuple[int, str]:
    """export/to_trt.py's exit code and its last ``error:`` line."""
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        code = to_trt.main(argv)
    errors = [
        line[len("error: ") :] for line in tee.copy.getvalue().splitlines() if line.startswith("error: ")
    ]
    return code, errors[-1] if errors else ""


def export_variant(model: ModelSpec, variant: Export, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export one graph of ``model`` into ``out``; the result says what ran and what the gate said."""
    result: dict[str, Any] = {"form": variant.form, "precision": variant.precision}
    argv = ["--out", str(out), "--onnx-only", "--graph", variant.form, "--precision", variant.precision]
    if model.checkpoint is None:
        argv += ["--config", model.config, "--random-init", "--skip-parity"]
        result["parity"] = "skipped (random init)"
    else:  # the checkpoint's own config
        argv += ["--checkpoint", str(model.checkpoint)]
    if variant.precision == "int8":
        argv += ["--calibrate", *map(str, args.calibrate)]
        argv += ["--calibrate-clouds", str(args.calibrate_clouds), "--int8-target", str(args.int8_target)]
    print(f"  export {variant.key}: export/to_trt.py {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    try:
        code, error = _to_trt(argv)
    except Exception as exc:  # an export bug is one failed row, not a lost run
        traceback.print_exc()
        code, error = 1, f"{type(exc).__name__}: {exc}"
    result["export_s"] = round(time.perf_counter() - start, 1)
    result["exit_code"] = code
    if code == 3:
        result["refused"] = (
            f"refused by the gate (exit 3): {error}" if error else "refused by the gate (exit 3)"
        )
        return result
    if code:
        result["failed"] = (
            f"export failed (exit {code}): {error}" if error else f"export failed (exit {code})"
        )
        return result
    manifest = load_manifest(out)
    result["dir"] = str(out)
    result["parity"] = manifest.parity.status if model.checkpoint is not None else result["parity"]
    result["min_agreement"] = manifest.parity.min_argmax_agreement
    layers = manifest.graph.layers
    result["int8_layers"] = sum(p == "int8" for p in layers.values())
    result["layers"] = len(layers)
    return result


def int8_not_run(model: ModelSpec, args: argparse.Namespace) -> str | None:
    """Why the int8 graph of ``model`` is not exported in this run (None: it is)."""
    needs = []
    if model.checkpoint is None:
        flag = {"full": "--full-checkpoint", "demo": "--demo-checkpoint"}.get(model.name, "a checkpoint")
        needs.append(f"{flag} (trained weights: random-init logits are near-tied)")
    if not args.calibrate:
        needs.append("--calibrate (real sweeps of the deployed sensor)")
    return f"not run: needs {' and '.join(needs)}" if needs else None


def export_all(model: ModelSpec, folder: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every graph of ``model`` (int8 where it can be calibrated), each in its own folder."""
    exports = {v.key: export_variant(model, v, folder / v.key, args) for v in EXPORTS}
    reason = int8_not_run(model, args)
    if reason:
        exports[INT8_EXPORT.key] = {"form": "sparse", "precision": "int8", "not_run": reason}
    else:
        exports[INT8_EXPORT.key] = export_variant(model, INT8_EXPORT, folder / INT8_EXPORT.key, args)
    if not any("dir" in e for e in exports.values()):
        # every graph refused: the PyTorch rows still need a folder with the checkpoint
        print("  every graph was refused; exporting the weights once more, ungated, for torch/spconv")
        ungated = ["--out", str(folder / "weights"), "--onnx-only", "--skip-parity"]
        ungated += (
            ["--checkpoint", str(model.checkpoint)]
            if model.checkpoint
            else ["--config", model.config, "--random-init"]
        )
        code, error = _to_trt(ungated)
        exports["weights"] = {"dir": str(folder / "weights")} if code == 0 else {"failed": error}
    return exports


def row_folder(row: Row, exports: dict[str, dict[str, Any]]) -> tuple[Path | None, str]:
    """The export folder ``row`` runs, or None and why not."""
    if row.export is None:  # the PyTorch backends read the checkpoint of any export folder
        folder = next((e["dir"] for e in exports.values() if "dir" in e), None)
        return (Path(folder), "") if folder else (None, "no export folder holds the weights")
    export = exports[row.export]
    if "dir" in export:
        return Path(export["dir"]), ""
    return None, export.get("not_run") or export.get("refused") or export.get("failed", "not exported")


# -- peak ----------------------------------------------------------------------------------------


def _best_of(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) seconds of ``run`` over ``repeats`` timed calls after two untimed ones."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def measure_peak(repeats: int) -> dict[str, dict[str, Any]]:
    """GFLOP/s of a ``16384×256 @ 256×256`` MatMul in torch fp32 (every thread, then one), torch
    bf16 and ONNX Runtime fp32 (a one-node graph): the best and the median of ``repeats`` runs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx_graph import IR_VERSION, OPSET
    from seg3d.ort_options import session_options

    m, k, n = PEAK_SHAPE
    flops = 2 * m * k * n
    generator = torch.Generator().manual_seed(0)
    a = torch.randn((m, k), generator=generator)
    b = torch.randn((k, n), generator=generator)
    threads = torch.get_num_threads()
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, run: Callable[[], object], used: int) -> None:
        best, median = _best_of(run, repeats)
        results[name] = {
            "gflops": flops / best / 1e9,
            "median_gflops": flops / median / 1e9,
            "threads": used,
        }
        print(f"  peak {name}: {results[name]['gflops']:.1f} GFLOP/s", flush=True)

    with torch.inference_mode():
        record("torch fp32", lambda: a @ b, threads)
        torch.set_num_threads(1)
        try:
            record("torch fp32, 1 thread", lambda: a @ b, 1)
        finally:
            torch.set_num_threads(threads)
        a16, b16 = a.bfloat16(), b.bfloat16()
        record("torch bf16", lambda: a16 @ b16, threads)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b.numpy(), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(None), providers=["CPUExecutionProvider"]
    )
    feeds = {"a": a.numpy()}
    record("onnxruntime fp32", lambda: session.run(["c"], feeds), threads)
    return results


# -- multiply-adds -------------------------------------------------------------------------------


def count_macs(config: ModelConfig, scans: list[RealScan]) -> dict[str, Any]:
    """Per scan: the multiply-adds of each row's forward pass, the dense and present-tap forms by
    part, and the voxel and present-tap counts behind them."""
    forms: set[tuple[GraphForm, Schedule]] = {(row.form, row.schedule) for row in ROWS}
    forms |= {("dense", "table"), ("sparse", "table")}
    per_scan: dict[str, Any] = {}
    for scan in scans:
        points = scan.points[crop_mask(scan.points[:, :3], config.grid)]
        inputs = prepare_inputs(points, config)
        counts = {f: multiply_adds(inputs, config, *f) for f in sorted(forms)}
        levels = {s: inputs.conv[s].neighbours for s in sorted(inputs.conv)}
        per_scan[scan.name] = {
            "points_in_crop": inputs.num_points,
            "voxels": {str(s): int(t.shape[0]) for s, t in levels.items()},
            "present_taps_per_voxel": {
                str(s): present_taps(t) / max(1, t.shape[0]) for s, t in levels.items()
            },
            "dense": counts[("dense", "table")].as_dict(),
            "sparse": counts[("sparse", "table")].as_dict(),
            "rows": {row.name: counts[(row.form, row.schedule)].total for row in ROWS},
        }
    return per_scan


# -- timing --------------------------------------------------------------------------------------


def time_requests(segmenter: Segmenter, raw: bytes, fmt: str, iterations: int, warmup: int) -> dict[str, Any]:
    stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    for i in range(warmup + iterations):
        start = time.perf_counter()
        result = segmenter.handle(raw, fmt)
        total_ms = (time.perf_counter() - start) * 1e3
        if i >= warmup:
            for stage, ms in {**result.timing_ms, "total": total_ms}.items():
                stages[stage].append(ms)
    return {s: {"p50": statistics.median(v), "p95": _p(v, 95)} for s, v in stages.items() if v}


def bench_row(
    row: Row, model_dir: Path, scans: list[RealScan], iterations: int, warmup: int
) -> dict[str, Any]:
    """One row in process: every stage of a request on every scan."""
    config = load_manifest(model_dir).config
    default_threads = torch.get_num_threads()
    try:
        backend = load_backend(row.backend, model_dir, config, torch_precision=row.torch_precision)
    except (BackendUnavailable, BackendLoadError) as exc:
        print(f"  {row.name}: unavailable ({exc})", flush=True)
        return {"available": False, "reason": f"unavailable: {exc}"}
    threads = 1 if row.backend == "spconv" and backend.device == "cpu" else default_threads
    torch.set_num_threads(threads)
    try:
        segmenter = Segmenter(config, backend, 10_000_000)
        per_scan = {}
        for scan in scans:
            per_scan[scan.name] = time_requests(
                segmenter, scan.path.read_bytes(), FORMAT[scan.kind], iterations, warmup
            )
            print(
                f"  {row.name:<24} {scan.name[-40:]:<40} total p50 {per_scan[scan.name]['total']['p50']:8.1f} ms",
                flush=True,
            )
    finally:
        torch.set_num_threads(default_threads)
    return {
        "available": True,
        "backend": row.backend,
        "device": backend.device,
        "torch_threads": threads,
        "model_dir": str(model_dir),
        "scans": per_scan,
        "process_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def add_rates(result: dict[str, Any], row: Row, macs: dict[str, Any], peak: dict[str, Any]) -> None:
    """Per scan (``result["rates"]``): the row's multiply-adds, achieved GFLOP/s (2 × MACs /
    inference p50) and their share of the row's MatMul peak."""
    result["peak"] = row.peak
    result["rates"] = {}
    for name, stages in result["scans"].items():
        count = macs[name]["rows"][row.name]
        gflops = 2 * count / (stages["inference"]["p50"] / 1e3) / 1e9
        share = gflops / peak[row.peak]["gflops"] if row.peak in peak else None
        result["rates"][name] = {"macs": count, "gflops": gflops, "peak_share": share}


def bench_http(
    model_dir: Path,
    backend: str,
    threads: int | None,
    raw: bytes,
    clients: int,
    requests: int,
    server_args: list[str] | None = None,
) -> dict[str, Any]:
    """Concurrent clients against a real server; latency, throughput and the server's peak RSS.
    ``server_args``: more options of ``python -m serve`` (e.g. ``--torch-precision fp16``)."""
    args = ["--backend", backend, "--max-queue", str(clients), "--log-level", "warning", *(server_args or [])]
    if threads:
        args += ["--threads", str(threads)]
    server = start_local_server(model_dir, *args, ready_timeout=300)
    url = server.url
    try:
        process = psutil.Process(server.process.pid)
        peak = [process.memory_info().rss]
        idle_rss = peak[0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
        latencies: list[float] = []
        inference: list[float] = []
        statuses: dict[int, int] = {}

        async def client(http: httpx.AsyncClient) -> None:
            for _ in range(requests):
                start = time.perf_counter()
                response = await http.post("/segment", content=raw, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - start) * 1e3)
                    inference.append(float(response.headers["x-inference-ms"]))

        async def run() -> float:
            async with httpx.AsyncClient(
                base_url=url, timeout=600, limits=httpx.Limits(max_connections=clients)
            ) as http:
                await http.post("/segment", content=raw, headers=headers)  # one warm request
                start = time.perf_counter()
                await asyncio.gather(*(client(http) for _ in range(clients)))
                return time.perf_counter() - start

        wall = asyncio.run(run())
        stop.set()
        sampler.join()
        # one request alone, for end-to-end latency without queueing
        solo = []
        with httpx.Client(base_url=url, timeout=600) as http:
            for _ in range(3):
                start = time.perf_counter()
                response = http.post("/segment", content=raw, headers=headers)
                solo.append(((time.perf_counter() - start) * 1e3, float(response.headers["x-inference-ms"])))
    finally:
        server.stop(timeout=30)
    e2e = statistics.median(t for t, _ in solo)
    infer = statistics.median(i for _, i in solo)
    return {
        "backend": backend,
        "threads": threads or "all",
        "clients": clients,
        "requests": clients * requests,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "single_request_p50_ms": e2e,
        "single_request_inference_ms": infer,
        "overhead_share": 1 - infer / e2e,
        "concurrent_p50_ms": statistics.median(latencies) if latencies else None,
        "concurrent_p95_ms": _p(latencies, 95),
        "throughput_rps": len(latencies) / wall,
        "server_idle_rss_gib": idle_rss / 2**30,
        "server_peak_rss_gib": peak[0] / 2**30,
    }


def _nuscenes(scans: dict[str, Any]) -> dict[str, Any]:
    """The nuScenes sweeps of a row's per-scan results (every scan when there are none)."""
    picked = {n: s for n, s in scans.items() if n.startswith("nuscenes/")}
    return picked or scans


def typical_total_ms(result: dict[str, Any]) -> float:
    """A row's median total p50 over the nuScenes sweeps: what "fastest" compares."""
    return float(statistics.median(s["total"]["p50"] for s in _nuscenes(result["scans"]).values()))


def fastest_row(rows: dict[str, Any], exclude: tuple[str, ...] = ("spconv",)) -> str | None:
    timed = {n: r for n, r in rows.items() if r.get("available") and n not in exclude}
    return min(timed, key=lambda n: typical_total_ms(timed[n])) if timed else None


def bench_model(
    model: ModelSpec,
    folder: Path,
    scans: list[RealScan],
    peak: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Exports, MACs, every row in process, then HTTP for the reference and the fastest row."""
    print(f"== {model.name} ({model.config}, {model.checkpoint or 'random init'})", flush=True)
    exports = export_all(model, folder, args)
    exported = next((Path(e["dir"]) for e in exports.values() if "dir" in e), None)
    config = load_manifest(exported).config if exported else load_config(model.config)
    macs = count_macs(config, scans)
    rows: dict[str, Any] = {}
    for row in ROWS:
        model_dir, reason = row_folder(row, exports)
        if model_dir is None:
            print(f"  {row.name}: {reason}", flush=True)
            rows[row.name] = {"available": False, "reason": reason}
            continue
        rows[row.name] = bench_row(row, model_dir, scans, args.iterations, args.warmup)
        if rows[row.name]["available"]:
            add_rates(rows[row.name], row, macs, peak)
    section: dict[str, Any] = {
        "config": config.name,
        "weights": _shown(model.checkpoint) if model.checkpoint else "random init (seed 0)",
        "exports": exports,
        "macs": macs,
        "rows": rows,
        "http": [],
    }
    if args.no_http:
        return section
    by_name = {row.name: row for row in ROWS}
    runs: list[tuple[Row, int | None]] = []
    if rows["spconv"].get("available"):
        runs.append((by_name["spconv"], 1))
    fastest = fastest_row(rows)
    if fastest is not None:
        runs.append((by_name[fastest], None))
    sweep = next((s for s in scans if s.kind == "nuscenes"), scans[0]).path.read_bytes()
    for row, threads in runs:
        print(f"  http {row.name} ({args.http_clients} clients)", flush=True)
        result = bench_http(
            Path(rows[row.name]["model_dir"]),
            row.backend,
            threads,
            sweep,
            args.http_clients,
            args.http_requests,
            row.server_args,
        )
        section["http"].append({"row": row.name, **result})
    return section


# -- report --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _export_line(key: str, export: dict[str, Any]) -> str:
    name = key.replace("-", " ")
    if "not_run" in export:
        return f"{name}: {export['not_run']}"
    if "refused" in export or "failed" in export:
        return f"{name}: {export.get('refused') or export['failed']}"
    parity = export.get("parity", "")
    if parity == "passed":
        parity = f"gate passed, worst argmax agreement {export['min_agreement']:.2%}"
    int8 = f", {export['int8_layers']} of {export['layers']} layers int8" if export.get("int8_layers") else ""
    return f"{name}: {parity}{int8} ({export['export_s']:.0f} s)"


def _row_cells(result: dict[str, Any]) -> list[str]:
    nusc = _nuscenes(result["scans"])
    kitti = [s for n, s in result["scans"].items() if not n.startswith("nuscenes/")]
    stages = [_ms(statistics.median(s[stage]["p50"] for s in nusc.values())) for stage in STAGES[1:]]
    totals = [s["total"]["p50"] for s in nusc.values()]
    total = _ms(min(totals)) if len(totals) == 1 else f"{_ms(min(totals))}–{_ms(max(totals))}"
    kitti_totals = " / ".join(_ms(s["total"]["p50"]) for s in kitti) or "—"
    rates = [result["rates"][n] for n in nusc]
    macs = statistics.median(r["macs"] for r in rates)
    gflops = statistics.median(r["gflops"] for r in rates)
    shares = [r["peak_share"] for r in rates if r["peak_share"] is not None]
    share = f"{statistics.median(shares):.0%} of {result['peak']}" if shares else "—"
    return [*stages, total, kitti_totals, f"{macs / 1e9:.2f}", f"{gflops:.1f}", share]


def render(report: dict[str, Any]) -> str:
    info = report["machine"]
    scans = report["scans"]
    kinds = {k: sum(1 for s in scans if s.startswith(f"{k}/")) for k in ("nuscenes", "kitti")}
    lines = [
        f"# Backends side by side — {report['machine_name']}",
        "",
        f"Run {report['date']}: `python bench/run.py {report['args']}`.",
        f"Machine: {info['cpu']}, {info['logical_cores']} logical cores, {info['memory_gib']} GiB, "
        f"GPU: {info['gpu'] or 'none lent'}; torch {info['torch']}.",
        f"Real scans from ../shared/data/real: {kinds['nuscenes']} nuScenes sweeps, {kinds['kitti']} KITTI "
        f"scans; {report['iterations']} timed request(s) per row and scan after {report['warmup']} "
        "untimed. The spconv reference runs with one torch thread (its multi-threaded CPU path gives "
        "wrong rows); the other rows use every core.",
        "",
        f"## This CPU's MatMul peak ({'×'.join(map(str, PEAK_SHAPE[:2]))} @ "
        f"{'×'.join(map(str, PEAK_SHAPE[1:]))}, best of {report['peak_repeats']})",
        "",
        "| kernel | threads | GFLOP/s (best) | GFLOP/s (median) |",
        "|---|---|---|---|",
    ]
    for name, p in report["peak"].items():
        lines.append(f"| {name} | {p['threads']} | {p['gflops']:.1f} | {p['median_gflops']:.1f} |")
    lines += [""]
    for name, section in report["models"].items():
        macs = section["macs"]
        nusc = _nuscenes(macs)
        dense = statistics.median(m["dense"]["total"] for m in nusc.values())
        sparse = statistics.median(m["sparse"]["total"] for m in nusc.values())
        taps = statistics.median(m["present_taps_per_voxel"]["1"] for m in nusc.values())
        lines += [
            f"## {name}: config {section['config']}, weights {section['weights']}",
            "",
            "Exports (ONNX only): "
            + "; ".join(_export_line(k, e) for k, e in section["exports"].items())
            + ".",
            "",
            f"Multiply-adds of one forward pass per nuScenes sweep (median): dense form {dense / 1e9:.2f} G "
            f"(27 taps per voxel), present-tap form {sparse / 1e9:.2f} G ({taps:.1f} of 27 taps present per "
            "scale-1 voxel); each row's own count below (`seg3d.model.cost`: the reference runs its output "
            "MLP and head per point, the graphs their head per point).",
            "",
            "| row | preprocess ms | inference ms | postprocess ms | total ms, nuScenes | total ms, KITTI | "
            "GMAC / sweep | GFLOP/s | of peak |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row, result in section["rows"].items():
            if not result.get("available"):
                lines.append(f"| {row} | {result['reason']} | | | | | | | |")
                continue
            lines.append(f"| {row} | " + " | ".join(_row_cells(result)) + " |")
        lines += [
            "",
            "p50 per scan over the timed requests; stage columns and GMAC, GFLOP/s, share of peak: the "
            "median over the nuScenes sweeps; total: the range over the sweeps; KITTI: each scan's "
            "total. GFLOP/s = 2 × MACs / inference p50 (the inference stage includes feeding the "
            "graph); int8 rows count int8 multiply-adds against the fp32 peak.",
            "",
            "Peak process RSS after each row (cumulative high-water mark, GiB): "
            + ", ".join(
                f"{n} {r['process_peak_rss_gib']:.2f}"
                for n, r in section["rows"].items()
                if r.get("available")
            ),
            "",
        ]
        http = section.get("http", [])
        if http:
            lines += [
                f"Through the HTTP server ({http[0]['clients']} concurrent clients, a real nuScenes sweep, "
                "octet-stream in and out):",
                "",
                "| row | threads | single request p50 ms | of which inference | overhead share | "
                "concurrent p50 / p95 ms | throughput req/s | server RSS idle → peak GiB | statuses |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for h in http:
                concurrent = (
                    f"{h['concurrent_p50_ms']:.0f} / {h['concurrent_p95_ms']:.0f}"
                    if h["concurrent_p50_ms"] is not None
                    else "—"
                )
                lines.append(
                    f"| {h['row']} | {h['threads']} | {h['single_request_p50_ms']:.0f} | "
                    f"{h['single_request_inference_ms']:.0f} | {h['overhead_share']:.1%} | {concurrent} | "
                    f"{h['throughput_rps']:.2f} | {h['server_idle_rss_gib']:.2f} → "
                    f"{h['server_peak_rss_gib']:.2f} | {h['statuses']} |"
                )
            lines.append("")
    lines += ["## Targets", ""] + [f"- {t}" for t in report["targets"]] + [""]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def judge(report: dict[str, Any]) -> list[str]:
    models = report.get("models", {})
    verdicts = []

    def best_http(name: str) -> dict[str, Any] | None:
        served = [h for h in models.get(name, {}).get("http", []) if h.get("row") != "spconv"]
        return min(served, key=lambda h: h["single_request_p50_ms"]) if served else None

    full = best_http("full")
    if full is None:
        verdicts.append("nuscenes_full targets (end-to-end ≤ 250 ms, ≥ 4 req/s): not measured in this run")
    else:
        e2e = full["single_request_p50_ms"]
        verdicts.append(
            f"nuscenes_full end-to-end through the server: {e2e:.0f} ms with {full['row']} (target ≤ "
            f"{TARGETS['full_end_to_end_ms_max']:.0f} ms): {_met(e2e <= TARGETS['full_end_to_end_ms_max'])}"
        )
        rps, clients = full["throughput_rps"], full["clients"]
        note = "" if clients == 8 else f" (measured with {clients} clients; the target is with 8)"
        verdicts.append(
            f"nuscenes_full throughput with {clients} concurrent clients: {rps:.2f} req/s with "
            f"{full['row']} (target ≥ {TARGETS['full_throughput_rps_min']:.0f} req/s with 8){note}: "
            f"{_met(rps >= TARGETS['full_throughput_rps_min'])}"
        )
    demo = best_http("demo")
    if demo is None:
        verdicts.append("demo end-to-end ≤ 25 ms: not measured in this run")
    else:
        e2e = demo["single_request_p50_ms"]
        verdicts.append(
            f"demo end-to-end through the server: {e2e:.1f} ms with {demo['row']} (target ≤ "
            f"{TARGETS['demo_end_to_end_ms_max']:.0f} ms): {_met(e2e <= TARGETS['demo_end_to_end_ms_max'])}"
        )
    for name, section in models.items():
        rows = section["rows"]
        fastest = fastest_row(rows, exclude=())
        graphs = {n: r for n, r in rows.items() if r.get("available") and r.get("backend") == "onnxruntime"}
        if fastest is None or not graphs:
            verdicts.append(
                f"{name}: the exported graph the fastest backend: not measured (no graph row ran)"
            )
            continue
        best_graph = min(graphs, key=lambda n: typical_total_ms(graphs[n]))
        verdicts.append(
            f"{name}: the exported graph the fastest backend: fastest row {fastest} "
            f"({typical_total_ms(rows[fastest]):.0f} ms nuScenes total p50), best graph {best_graph} "
            f"({typical_total_ms(rows[best_graph]):.0f} ms): {_met(rows[fastest].get('backend') == 'onnxruntime')}"
        )
    http = {h["row"]: h for h in models.get("full", {}).get("http", [])}
    if "spconv" in http and full is not None:
        speedup = http["spconv"]["single_request_p50_ms"] / full["single_request_p50_ms"]
        verdicts.append(
            f"nuscenes_full end-to-end vs the spconv reference: {speedup:.2f}× with {full['row']} (target ≥ "
            f"2×): {_met(speedup >= TARGETS['cpu_speedup_vs_spconv'])}"
        )
        share = full["overhead_share"]
        verdicts.append(
            f"preprocessing + HTTP + parsing + postprocessing share: {share:.1%} (target ≤ 10 %): "
            f"{_met(share <= TARGETS['overhead_share_max'])}"
        )
        rss = max(h["server_peak_rss_gib"] for h in http.values())
        verdicts.append(
            f"server peak RSS with {full['clients']} concurrent clients: {rss:.2f} GiB (target ≤ 3 GiB): "
            f"{_met(rss <= TARGETS['server_rss_gib_max'])}"
        )
    if report["machine"]["gpu"] is None:
        verdicts.append(
            "GPU targets (inference ≤ 10 ms, GPU preprocessing ≤ 2 ms, end-to-end ≤ 25 ms): not measured "
            "on this CPU machine; bench/gpu.py measures them on a GPU host (bench/results/<gpu>.md)"
        )
    return verdicts


# -- micro-batching ------------------------------------------------------------------------------

#: The server options of each batching mode (besides --max-batch).
BATCHING_MODES = ("off", "on")


class _PeakRss:
    """Samples a process's resident memory every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.idle = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_clients(
    url: str, raw: bytes, clients: int, requests: int, reference: bytes | None, warmup: int
) -> dict[str, Any]:
    """``clients`` concurrent clients, each sending ``raw`` ``requests`` times back to back after
    ``warmup`` concurrent untimed requests: throughput, end-to-end latency, the server's inference
    time, and whether every answer's labels equal ``reference`` (None: not compared)."""
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    latencies: list[float] = []
    inference: list[float] = []
    statuses: dict[int, int] = {}
    mismatched = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal mismatched
        for _ in range(requests):
            start = time.perf_counter()
            response = await http.post("/segment", content=raw, headers=headers)
            elapsed = (time.perf_counter() - start) * 1e3
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                latencies.append(elapsed)
                inference.append(float(response.headers["x-inference-ms"]))
                mismatched += reference is not None and response.content != reference

    async def run() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=1800, limits=limits) as http:
            await asyncio.gather(
                *(http.post("/segment", content=raw, headers=headers) for _ in range(warmup))
            )
            start = time.perf_counter()
            await asyncio.gather(*(client(http) for _ in range(clients)))
            return time.perf_counter() - start

    wall = asyncio.run(run())
    return {
        "clients": clients,
        "requests": clients * requests,
        "wall_s": wall,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "throughput_rps": len(latencies) / wall,
        "p50_ms": _p(latencies, 50),
        "p95_ms": _p(latencies, 95),
        "inference_p50_ms": _p(inference, 50),
        "labels_match": None if reference is None else mismatched == 0,
    }


def _requests_per_client(total: int, clients: int) -> int:
    """Requests each client sends so that a point of the run sends about ``total`` (at least one)."""
    return max(1, round(total / clients))


def bench_batching_model(model_dir: Path, raw: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Batching off, then on: one server each (``--max-queue`` the most clients, so none is
    refused), every client count against it."""
    clients = sorted(args.batching_clients)
    reference: bytes | None = None
    modes: dict[str, Any] = {}
    for mode in BATCHING_MODES:
        batch = ["--max-batch", "1"]
        if mode == "on":
            batch = ["--max-batch", str(args.batching_max_batch)]
            batch += ["--batch-window-ms", str(args.batching_window_ms)]
            batch += ["--max-batch-points", str(args.batching_max_points)]
        server_args = ["--backend", "onnxruntime", "--max-queue", str(max(clients))]
        server_args += ["--log-level", "warning", *batch]
        print(f"  batching {mode}: python -m serve {' '.join(server_args)}", flush=True)
        server = start_local_server(model_dir, *server_args, ready_timeout=600)
        try:
            if reference is None:
                with httpx.Client(base_url=server.url, timeout=1800) as http:
                    answer = http.post(
                        "/segment",
                        content=raw,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Accept": "application/octet-stream",
                        },
                    )
                    answer.raise_for_status()
                    reference = answer.content
            points = []
            with _PeakRss(server.process.pid) as rss:
                for count in clients:
                    requests = _requests_per_client(args.batching_requests, count)
                    warmup = min(count, args.batching_max_batch)
                    point = measure_clients(server.url, raw, count, requests, reference, warmup)
                    print(
                        f"    {count:>3} clients: {point['throughput_rps']:6.2f} req/s, p50 "
                        f"{point['p50_ms']:8.0f} ms, p95 {point['p95_ms']:8.0f} ms, labels "
                        f"{'match' if point['labels_match'] else 'DIFFER'}",
                        flush=True,
                    )
                    points.append(point)
        finally:
            server.stop(timeout=30)
        modes[mode] = {
            "server_args": server_args,
            "points": points,
            "server_idle_rss_gib": rss.idle / 2**30,
            "server_peak_rss_gib": rss.peak / 2**30,
        }
    return modes


def batching_model_dir(spec: ModelSpec, folder: Path, args: argparse.Namespace) -> Path:
    """The export folder a batching run serves: the given one, else ``spec`` exported into
    ``folder`` (the dense fp32 graph, as export/to_trt.py writes by default).

    Raises:
        SystemExit: the export failed.
    """
    given = {"demo": args.demo_export, "full": args.full_export}.get(spec.name)
    if given is not None:
        return Path(given)
    argv = ["--out", str(folder), "--onnx-only"]
    if spec.checkpoint is None:
        argv += ["--config", spec.config, "--random-init", "--skip-parity"]
    else:
        argv += ["--checkpoint", str(spec.checkpoint), "--skip-parity"]
    print(f"  export: export/to_trt.py {' '.join(argv)}", flush=True)
    code, error = _to_trt(argv)
    if code:
        raise SystemExit(f"error: export of {spec.name} failed (exit {code}): {error}")
    return folder


def main_batching(args: argparse.Namespace, argv: list[str] | None) -> int:
    """--batching: every model of --models, batching off then on; one report."""
    sweeps = real_scans(("nuscenes",))
    if not sweeps:
        print(
            "no real nuScenes sweep found: set SEG3D_REAL_DATA or place ../shared/data/real", file=sys.stderr
        )
        return 2
    sweep = sweeps[0]
    raw = sweep.path.read_bytes()
    info = machine_info()
    machine = args.machine or machine_slug(info)
    report: dict[str, Any] = {
        "machine_name": machine,
        "machine": info,
        "cpu_generation": cpu_generation(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "input": {"scan": sweep.name, "points": int(sweep.points.shape[0]), "bytes": len(raw)},
        "requests_per_point": args.batching_requests,
        "max_batch": args.batching_max_batch,
        "batch_window_ms": args.batching_window_ms,
        "max_batch_points": args.batching_max_points,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for spec in model_specs(args):
            print(f"== batching: {spec.name} ({spec.config})", flush=True)
            model_dir = batching_model_dir(spec, Path(tmp) / spec.name, args)
            manifest = load_manifest(model_dir)
            report["models"][spec.name] = {
                "config": manifest.config.name,
                "model_dir": _shown(model_dir),
                "graph": manifest.graph.form,
                "weights": "random init" if manifest.model.random_init else "trained",
                "modes": bench_batching_model(model_dir, raw, args),
            }
    report["verdict"] = batching_verdict(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"batching-{machine}"
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", render_batching(report))):
        write_atomic(stem.with_suffix(suffix), text)
    print("\n".join(report["verdict"]))
    print(f"wrote {stem}.md and {stem}.json")
    return 0


#: Batching is on by default only if it raises throughput by this factor at every client count
#: above one, on every model, without slowing a lone client's request by more than this factor.
BATCHING_GAIN_MIN = 1.05
BATCHING_SOLO_SLOWDOWN_MAX = 1.05


def _ratios(section: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """Per client count: (throughput on / off, p50 latency on / off)."""
    off = {p["clients"]: p for p in section["modes"]["off"]["points"]}
    ratios = {}
    for point in section["modes"]["on"]["points"]:
        base = off.get(point["clients"])
        if base and base["throughput_rps"] and base["p50_ms"]:
            ratios[point["clients"]] = (
                point["throughput_rps"] / base["throughput_rps"],
                point["p50_ms"] / base["p50_ms"],
            )
    return ratios


def batching_verdict(report: dict[str, Any]) -> list[str]:
    """What the figures say, per model, and the default they call for (`BATCHING_GAIN_MIN`)."""
    lines, helps = [], True
    for name, section in report["models"].items():
        ratios = _ratios(section)
        labels = all(p["labels_match"] is not False for m in section["modes"].values() for p in m["points"])
        shared = [c for c in ratios if c > 1]
        gains = all(ratios[c][0] >= BATCHING_GAIN_MIN for c in shared) and bool(shared)
        solo = ratios.get(1, (1.0, 1.0))[1] <= BATCHING_SOLO_SLOWDOWN_MAX
        helps = helps and gains and solo and labels
        each = ", ".join(
            f"{c} client{'s' if c > 1 else ''} {t:.2f}× throughput, {lat:.2f}× p50"
            for c, (t, lat) in sorted(ratios.items())
        )
        lines.append(f"{name}: batching on vs off: {each}; labels as unbatched: {'yes' if labels else 'NO'}")
    machine = report["machine"]["gpu"] or f"this {report['machine']['logical_cores']}-core CPU"
    lines.append(
        f"default on {machine}: "
        + (
            f"on (--max-batch {report['max_batch']}): it raised throughput by at least "
            f"{BATCHING_GAIN_MIN - 1:.0%} at every client count above one on every model"
            if helps
            else f"off (--max-batch 1): batching did not raise throughput by {BATCHING_GAIN_MIN - 1:.0%} at "
            f"every client count above one on every model without slowing a lone request by more "
            f"than {BATCHING_SOLO_SLOWDOWN_MAX - 1:.0%}"
        )
    )
    return lines


#: What a GPU host should use; written into the report (not measured by this run on a CPU).
BATCHING_ON_A_GPU = (
    "On a GPU host, use `--max-batch 8` (with the torch backend, or ONNX Runtime on its CUDA provider; "
    "a TensorRT engine cannot batch, its optimization profile bounds the points of one call, so it "
    "segments one cloud per call whatever the flag says). A sweep's work on a GPU is many small "
    "kernels: preprocessing alone launched 1,540 CUDA kernels with 97 host waits per sweep on an H200 "
    "(bench/results/nvidia-h200.md), and there the torch backend served 8 clients at 13.5 req/s "
    "with 21 ms of inference in a 140 ms request. A batch pays those launches and waits once for all "
    "its clouds and gives each kernel up to 8× the points, work that a GPU left mostly idle by one "
    "sweep can take on; on a CPU every core is already busy with one sweep, so its work grows with "
    "the points. Raise `--max-batch-points` with GPU memory. This was not measured on a GPU "
    "here: run `python bench/run.py --batching` on the GPU host before relying on it."
)


def cpu_generation() -> str | None:
    """An AMD CPU's core generation from /proc/cpuinfo (``Zen 4 (family 25, model 17)``), as the
    model name of a cloud VM (``AMD EPYC``) does not say it; None for other CPUs. Family 25 is Zen 3
    or Zen 4, told apart by AVX-512 (Zen 4 only)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fields = dict(re.findall(r"^(vendor_id|cpu family|model|flags)\s*:\s*(.*)$", text, re.MULTILINE))
    if fields.get("vendor_id") != "AuthenticAMD" or not fields.get("cpu family", "").isdigit():
        return None
    family = int(fields["cpu family"])
    avx512 = "avx512f" in fields.get("flags", "").split()
    name = {23: "Zen 1/2", 25: "Zen 4" if avx512 else "Zen 3", 26: "Zen 5"}.get(family, "AMD")
    return f"{name} (family {family}, model {fields.get('model', '?')})"


def render_batching(report: dict[str, Any]) -> str:
    info = report["machine"]
    generation = f" {report['cpu_generation']}" if report.get("cpu_generation") else ""
    lines = [
        f"# Micro-batching through the server — {report['machine_name']}",
        "",
        f"Run {report['date']}: `python bench/run.py {report['args']}`.",
        f"Machine: {info['cpu']}{generation}, {info['logical_cores']} logical cores, {info['memory_gib']} "
        f"GiB, GPU: {info['gpu'] or 'none lent'}; torch {info['torch']}.",
        f"Input: the real nuScenes sweep {report['input']['scan']} ({report['input']['points']:,} points), "
        "the same body from every client, octet-stream in and out.",
        f"Each client count: about {report['requests_per_point']} timed requests in all (each client "
        "sends its requests back to back), after an untimed concurrent round of up to --max-batch "
        f"requests. Batching on: `--max-batch {report['max_batch']} --batch-window-ms "
        f"{report['batch_window_ms']} --max-batch-points {report['max_batch_points']}`; off: "
        "`--max-batch 1`. The server runs the onnxruntime backend on every core, with `--max-queue` = "
        "the most clients, so no request is refused.",
        "",
    ]
    for name, section in report["models"].items():
        lines += [
            f"## {name}: config {section['config']}, {section['model_dir']} ({section['graph']} graph, "
            f"{section['weights']} weights)",
            "",
            "| clients | batching | throughput req/s | p50 ms | p95 ms | server inference p50 ms | "
            "labels as unbatched | statuses |",
            "|---|---|---|---|---|---|---|---|",
        ]
        by_clients: dict[int, dict[str, Any]] = {}
        for mode, results in section["modes"].items():
            for point in results["points"]:
                by_clients.setdefault(point["clients"], {})[mode] = point
        for clients in sorted(by_clients):
            for mode in BATCHING_MODES:
                point = by_clients[clients].get(mode)
                if point is None:
                    continue
                match = {True: "yes", False: "NO", None: "—"}[point["labels_match"]]
                lines.append(
                    f"| {clients} | {mode} | {point['throughput_rps']:.2f} | {_ms(point['p50_ms'])} | "
                    f"{_ms(point['p95_ms'])} | {_ms(point['inference_p50_ms'])} | {match} | "
                    f"{point['statuses']} |"
                )
        lines += [
            "",
            "Server RSS idle → peak (GiB): "
            + "; ".join(
                f"batching {mode} {s['server_idle_rss_gib']:.2f} → {s['server_peak_rss_gib']:.2f}"
                for mode, s in section["modes"].items()
            ),
            "",
        ]
    lines += [
        "Throughput: answered requests / wall time of the timed requests; latency: client-side, end "
        "to end; server inference: the `X-Inference-Ms` of the answers (with batching, the time of "
        "the whole batch's backend call).",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in report["verdict"]],
        "",
        "## On a GPU",
        "",
        BATCHING_ON_A_GPU,
        "",
    ]
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------

#: --configs (the former option) names configs: these two are the models of --models.
CONFIG_ALIASES = {"nuscenes_full": "full", "tiny": "demo"}


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    names = args.configs or args.models
    specs = []
    for raw in names.split(","):
        name = CONFIG_ALIASES.get(raw.strip(), raw.strip())
        if name == "full":
            specs.append(ModelSpec("full", "nuscenes_full", args.full_checkpoint))
        elif name == "demo":
            specs.append(ModelSpec("demo", "tiny", args.demo_checkpoint))
        elif name in bundled_configs():
            specs.append(ModelSpec(name, name, None))  # another bundled config: random init
        else:
            raise SystemExit(
                f"error: unknown model {raw!r}: full, demo or a bundled config ({', '.join(bundled_configs())})"
            )
    return specs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="full,demo",
        help="comma-separated: full (nuscenes_full), demo (the bundled demo model, config tiny), or any "
        "bundled config name (random init) (default full,demo)",
    )
    parser.add_argument(
        "--configs",
        help="the former option, an alias of --models: nuscenes_full means full, tiny means demo",
    )
    parser.add_argument(
        "--full-checkpoint",
        type=Path,
        metavar="PATH",
        help="trained nuscenes_full checkpoint (README: training/configs/full_synthetic.yaml); without "
        "it nuscenes_full runs with random-init weights, ungated, and its int8 graph is not run",
    )
    parser.add_argument(
        "--demo-checkpoint",
        type=Path,
        metavar="PATH",
        default=ROOT / "models" / "demo" / "encoder3d.pt",
        help="the demo model's checkpoint (default models/demo/encoder3d.pt)",
    )
    parser.add_argument(
        "--calibrate",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="int8 calibration clouds (export/to_trt.py --calibrate: files, folders of .pcd.bin sweeps, a "
        "nuScenes or SemanticKITTI root) from the deployed sensor. Use sweeps disjoint from the timed and "
        "gated scans (../shared/data/real) where you can: calibrating on the scans the gate then checks "
        "flatters int8. Without it the int8 rows are not run, with the reason",
    )
    parser.add_argument("--calibrate-clouds", type=int, default=16, help="export's --calibrate-clouds (16)")
    parser.add_argument("--int8-target", type=float, default=0.995, help="export's --int8-target (0.995)")
    parser.add_argument("--iterations", type=int, default=3, help="timed requests per row and scan (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed requests first (1)")
    parser.add_argument("--peak-repeats", type=int, default=10, help="timed runs of each peak MatMul (10)")
    parser.add_argument("--http-clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--http-requests", type=int, default=2, help="requests per HTTP client (2)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    parser.add_argument(
        "--batching",
        action="store_true",
        help="measure the service's micro-batching instead (see above): off vs on, --batching-clients "
        "concurrent clients, per model of --models; writes bench/results/batching-<machine>.md and .json",
    )
    parser.add_argument(
        "--batching-clients",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[1, 8, 32],
        metavar="N,N,...",
        help="--batching: the concurrent client counts (default 1,8,32)",
    )
    parser.add_argument(
        "--batching-requests",
        type=int,
        default=32,
        help="--batching: timed requests per client count, shared out among the clients (default 32)",
    )
    parser.add_argument(
        "--batching-max-batch", type=int, default=8, help="--batching: the server's --max-batch when on (8)"
    )
    parser.add_argument(
        "--batching-window-ms", type=float, default=2.0, help="--batching: --batch-window-ms when on (2)"
    )
    parser.add_argument(
        "--batching-max-points",
        type=int,
        default=300_000,
        help="--batching: --max-batch-points when on (300000)",
    )
    parser.add_argument(
        "--demo-export",
        type=Path,
        metavar="PATH",
        default=ROOT / "models" / "demo",
        help="--batching: the demo model's export folder (default models/demo)",
    )
    parser.add_argument(
        "--full-export",
        type=Path,
        metavar="PATH",
        help="--batching: an export folder of nuscenes_full (e.g. export/to_trt.py --config nuscenes_full "
        "--random-init --out /tmp/full-export --skip-parity); default: exported here",
    )
    parser.add_argument("--machine", help="name in the output files (default from the CPU or GPU)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="result folder (bench/results)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.batching:
        return main_batching(args, argv)
    specs = model_specs(args)
    for spec in specs:
        if spec.checkpoint is not None and not spec.checkpoint.is_file():
            print(f"error: {spec.name}: checkpoint {spec.checkpoint} not found", file=sys.stderr)
            return 2
    scans = real_scans(("nuscenes", "kitti"))
    if not scans:
        print("no real scans found: set SEG3D_REAL_DATA or place ../shared/data/real", file=sys.stderr)
        return 2
    info = machine_info()
    report: dict[str, Any] = {
        "machine_name": args.machine or machine_slug(info),
        "machine": info,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "scans": [s.name for s in scans],
        "calibrate": [str(c) for c in args.calibrate or []],
        "peak_repeats": args.peak_repeats,
        "models": {},
    }
    print("== MatMul peak", flush=True)
    report["peak"] = measure_peak(args.peak_repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            report["models"][spec.name] = bench_model(
                spec, Path(tmp) / spec.name, scans, report["peak"], args
            )
    report["targets"] = judge(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / report["machine_name"]
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", render(report))):
        write_atomic(stem.with_suffix(suffix), text)
    print("\n".join(report["targets"]))
    print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
