"""Every backend side by side, in one process, on the same weights and real scans.

    python bench/run.py                                   # nuscenes_full + tiny; ~10 min on 2 CPU cores
    python bench/run.py --configs tiny --iterations 2     # quick

For each config a random-init model is exported (export/to_trt.py, --onnx-only). Then:
1. In process, per backend and real scan (nuScenes sweeps, KITTI scans): p50/p95 of each stage of a
   request (parse, preprocess, inference, postprocess) and of the total. The `spconv` reference
   runs with ONE torch thread throughout, which is how its CPU build gives correct results; the
   others use every core.
2. Through a real uvicorn server: `--http-clients` concurrent clients send a real sweep; client-side
   end-to-end p50/p95, throughput, and the server's peak resident memory sampled every 20 ms. This
   is done for the spconv reference and for the fastest in-process backend.
Results go to bench/results/<machine>.md and .json, with ratios to the spconv reference and the
Performance issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import torch

import export.to_trt as to_trt
from seg3d.io import write_atomic
from seg3d.manifest import load_manifest
from seg3d.scans import RealScan, real_scans
from seg3d.sysinfo import machine_info, machine_slug
from serve.backends import ORDER, BackendUnavailable, load_backend
from serve.local import start_local_server
from serve.segmenter import Segmenter

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = tuple(reversed(ORDER))  # the spconv reference first, the fastest candidates last
STAGES = ("parse", "preprocess", "inference", "postprocess")
FORMAT = {"nuscenes": "nuscenes", "kitti": "kitti", "semantickitti": "kitti"}
TARGETS = {
    "cpu_speedup_vs_spconv": 2.0,
    "overhead_share_max": 0.10,
    "server_rss_gib_max": 3.0,
    "gpu_inference_ms_max": 10.0,
    "gpu_preprocess_ms_max": 2.0,
    "gpu_end_to_end_ms_max": 25.0,
}


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def export_model(config: str, out: Path) -> Path:
    code = to_trt.main(
        ["--config", config, "--random-init", "--out", str(out), "--skip-parity", "--onnx-only"]
    )
    if code:
        raise RuntimeError(f"export of {config} failed with exit code {code}")
    return out


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


def bench_in_process(model_dir: Path, scans: list[RealScan], iterations: int, warmup: int) -> dict[str, Any]:
    config = load_manifest(model_dir).config
    results: dict[str, Any] = {}
    default_threads = torch.get_num_threads()
    for name in BACKENDS:
        try:
            backend = load_backend(name, model_dir, config)
        except BackendUnavailable as exc:
            results[name] = {"available": False, "reason": str(exc)}
            print(f"  {name}: unavailable ({exc})", flush=True)
            continue
        threads = 1 if name == "spconv" and backend.device == "cpu" else default_threads
        torch.set_num_threads(threads)
        segmenter = Segmenter(config, backend, 10_000_000)
        per_scan = {}
        for scan in scans:
            per_scan[scan.name] = time_requests(
                segmenter, scan.path.read_bytes(), FORMAT[scan.kind], iterations, warmup
            )
            print(
                f"  {name:<12} {scan.name:<80} total p50 {per_scan[scan.name]['total']['p50']:8.1f} ms",
                flush=True,
            )
        torch.set_num_threads(default_threads)
        results[name] = {
            "available": True,
            "device": backend.device,
            "torch_threads": threads,
            "scans": per_scan,
            "process_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
        del backend, segmenter
    return results


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


def render(report: dict[str, Any]) -> str:
    info = report["machine"]
    lines = [
        f"# Backends side by side — {report['machine_name']}",
        "",
        f"Run {report['date']}: `python bench/run.py {report['args']}`.",
        f"Machine: {info['cpu']}, {info['logical_cores']} logical cores, {info['memory_gib']} GiB, "
        f"GPU: {info['gpu'] or 'none lent'}; torch {info['torch']}.",
        "Random-init exports; real scans from ../shared/data/real. The spconv reference runs with one torch "
        "thread (its multi-threaded CPU path gives wrong rows); the other backends use every core.",
        "",
    ]
    for config, section in report["configs"].items():
        lines += [
            f"## {config}",
            "",
            "In process, p50 ms per stage (p95 of the total in brackets); ratio = spconv total / backend total.",
            "",
        ]
        lines += [
            "| backend | scan | parse | preprocess | inference | postprocess | total | ratio vs spconv |",
            "|---|---|---|---|---|---|---|---|",
        ]
        backends = section["in_process"]
        reference = backends.get("spconv", {})
        for name, result in backends.items():
            if not result.get("available"):
                lines.append(f"| {name} | — | unavailable: {result['reason']} | | | | | |")
                continue
            for scan, st in result["scans"].items():
                ref = (
                    reference.get("scans", {}).get(scan, {}).get("total", {}).get("p50")
                    if reference.get("available")
                    else None
                )
                ratio = f"{ref / st['total']['p50']:.2f}×" if ref else "—"
                cells = " | ".join(f"{st[s]['p50']:.1f}" for s in STAGES)
                lines.append(
                    f"| {name} | {scan.split('/')[-1][-24:]} | {cells} | {st['total']['p50']:.1f} ({st['total']['p95']:.1f}) | {ratio} |"
                )
        lines += [
            "",
            "Peak process RSS after each backend (cumulative high-water mark, GiB): "
            + ", ".join(
                f"{n} {r['process_peak_rss_gib']:.2f}" for n, r in backends.items() if r.get("available")
            ),
            "",
        ]
        http = section.get("http", [])
        if http:
            lines += ["Through the HTTP server (real sweep, octet-stream in and out):", ""]
            lines += [
                "| backend | threads | single request p50 ms | of which inference | overhead share | concurrent p50 / p95 ms | throughput req/s | server RSS idle → peak GiB | statuses |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for h in http:
                lines.append(
                    f"| {h['backend']} | {h['threads']} | {h['single_request_p50_ms']:.0f} | {h['single_request_inference_ms']:.0f} | "
                    f"{h['overhead_share']:.1%} | {h['concurrent_p50_ms']:.0f} / {h['concurrent_p95_ms']:.0f} | {h['throughput_rps']:.2f} | "
                    f"{h['server_idle_rss_gib']:.2f} → {h['server_peak_rss_gib']:.2f} | {h['statuses']} |"
                )
            lines.append("")
    lines += ["## Targets", ""] + [f"- {t}" for t in report["targets"]] + [""]
    return "\n".join(lines)


def judge(report: dict[str, Any]) -> list[str]:
    full = report["configs"].get("nuscenes_full", {})
    http = {h["backend"]: h for h in full.get("http", [])}
    verdicts = []
    if "spconv" in http and len(http) > 1:
        best = min((h for n, h in http.items() if n != "spconv"), key=lambda h: h["single_request_p50_ms"])
        speedup = http["spconv"]["single_request_p50_ms"] / best["single_request_p50_ms"]
        ok = speedup >= TARGETS["cpu_speedup_vs_spconv"]
        verdicts.append(
            f"CPU end-to-end p50 vs spconv reference: {speedup:.2f}× with {best['backend']} (target ≥ 2×): {'met' if ok else 'NOT met'}"
        )
        share = best["overhead_share"]
        verdicts.append(
            f"preprocessing + HTTP + parsing + postprocessing share: {share:.1%} (target ≤ 10 %): {'met' if share <= 0.10 else 'NOT met'}"
        )
        rss = max(h["server_peak_rss_gib"] for h in http.values())
        verdicts.append(
            f"server peak RSS with {best['clients']} concurrent clients: {rss:.2f} GiB (target ≤ 3 GiB): {'met' if rss <= 3 else 'NOT met'}"
        )
    if report["machine"]["gpu"] is None:
        verdicts.append(
            "GPU targets (inference ≤ 10 ms, GPU preprocessing ≤ 2 ms, end-to-end ≤ 25 ms): no GPU was lent, not measured"
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="nuscenes_full,tiny", help="comma-separated bundled configs")
    parser.add_argument("--iterations", type=int, default=3, help="timed requests per backend and scan")
    parser.add_argument("--warmup", type=int, default=1, help="untimed requests first")
    parser.add_argument("--http-clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--http-requests", type=int, default=2, help="requests per HTTP client")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    parser.add_argument("--machine", help="name in the output files (default from the CPU or GPU)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
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
        "configs": {},
    }
    sweep = next(s for s in scans if s.kind == "nuscenes").path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs.split(","):
            print(f"== {config}", flush=True)
            model_dir = export_model(config, Path(tmp) / config)
            in_process = bench_in_process(model_dir, scans, args.iterations, args.warmup)
            section: dict[str, Any] = {"in_process": in_process, "http": []}
            if not args.no_http:
                candidates = {n: r for n, r in in_process.items() if r.get("available") and n != "spconv"}
                fastest = min(
                    candidates,
                    key=lambda n: statistics.median(
                        s["total"]["p50"] for s in candidates[n]["scans"].values()
                    ),
                )
                runs = (
                    [("spconv", 1), (fastest, None)]
                    if in_process.get("spconv", {}).get("available")
                    else [(fastest, None)]
                )
                for backend, threads in runs:
                    print(f"  http {backend} ({args.http_clients} clients)", flush=True)
                    section["http"].append(
                        bench_http(model_dir, backend, threads, sweep, args.http_clients, args.http_requests)
                    )
            report["configs"][config] = section
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
