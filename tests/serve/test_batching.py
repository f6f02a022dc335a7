"""Micro-batching (`serve.batching`, `Segmenter.segment_batch`): a batch gives every cloud the labels
it gets alone, the batcher really runs waiting requests together, each waiter gets its own result or
error, and a server with ``--max-batch`` answers concurrent clients as an unbatched one does.

How fast batching is belongs to the benchmark (bench/run.py --batching), not here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from seg3d.config import ModelConfig
from seg3d.manifest import load_manifest
from seg3d.preprocess import EncoderInputs
from seg3d.scans import real_scans, synthetic_sweep
from serve.backends import Backend, load_backend
from serve.batching import MicroBatcher
from serve.local import start_local_server
from serve.segmenter import Segmentation, Segmenter
from tests.serve.conftest import MAX_POINTS, Server

SCANS = real_scans(("nuscenes", "kitti"))
FORMAT = {"nuscenes": "nuscenes", "kitti": "kitti", "semantickitti": "kitti"}


@pytest.fixture(scope="module")
def config(tiny_export: Path) -> ModelConfig:
    return load_manifest(tiny_export).config


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def segmenter(request: pytest.FixtureRequest, tiny_export: Path, config: ModelConfig) -> Segmenter:
    return Segmenter(config, load_backend(request.param, tiny_export, config), MAX_POINTS)


def _clouds(config: ModelConfig) -> list[npt.NDArray[np.float32]]:
    return [s.points.numpy() for s in real_scans(("nuscenes", "kitti"), config.input.intensity_max)]


def _edge_clouds(config: ModelConfig) -> list[npt.NDArray[np.float32]]:
    """An empty cloud, one wholly outside the crop, one of three points, and two synthetic sweeps of
    different sizes, in between real scans in the tests."""
    far = synthetic_sweep(500, seed=1, intensity_max=config.input.intensity_max).numpy()
    far[:, 0] += 10_000.0  # every point far outside the crop: segmented clamped onto its bounds
    return [
        np.zeros((0, 4), dtype=np.float32),
        far,
        synthetic_sweep(3, seed=2, intensity_max=config.input.intensity_max).numpy(),
        synthetic_sweep(20_000, seed=3, intensity_max=config.input.intensity_max).numpy(),
        synthetic_sweep(1_000, seed=4, intensity_max=config.input.intensity_max).numpy(),
    ]


def _assert_same(alone: Segmentation, batched: Segmentation) -> None:
    """The same labels byte for byte; the same logits to rounding.

    The logits are not always bitwise equal: the ONNX graph sums a voxel's overflowing pool
    fragments with a ReduceSum as wide as the batch's deepest voxel, and a small cloud's MatMuls in
    torch take another kernel than the batch's, so the float order of some sums follows the batch
    (measured: at most 4e-6 apart, no label changed on any real scan)."""
    assert batched.labels.dtype == alone.labels.dtype
    assert batched.labels.tobytes() == alone.labels.tobytes()
    assert batched.points_in_crop == alone.points_in_crop
    if alone.logits is None:
        assert batched.logits is None
        return
    assert batched.logits is not None and batched.logits.shape == alone.logits.shape
    np.testing.assert_allclose(batched.logits, alone.logits, rtol=0, atol=1e-4)


@pytest.mark.skipif(not SCANS, reason="real scans not found")
def test_a_batch_of_real_scans_labels_each_as_alone(segmenter: Segmenter, config: ModelConfig) -> None:
    clouds = _clouds(config)
    alone = [segmenter.segment(c) for c in clouds]
    batched = segmenter.segment_batch(clouds, [False] * len(clouds))
    assert len(batched) == len(clouds)
    for a, b in zip(alone, batched, strict=True):
        _assert_same(a, b)
        assert b.batch_size == len(clouds)


def test_edge_cases_in_a_batch_follow_segment(segmenter: Segmenter, config: ModelConfig) -> None:
    real = _clouds(config)[:2]
    clouds = [*_edge_clouds(config), *real]
    clouds = clouds[::2] + clouds[1::2]  # mixed sizes, the empty cloud not first
    wants = [i % 2 == 0 for i in range(len(clouds))]  # logits for some clouds only
    alone = [segmenter.segment(c, w) for c, w in zip(clouds, wants, strict=True)]
    batched = segmenter.segment_batch(clouds, wants)
    for cloud, a, b in zip(clouds, alone, batched, strict=True):
        assert b.labels.shape == (cloud.shape[0],)
        _assert_same(a, b)
    assert min(int(b.labels.min()) for b in batched if b.labels.size) >= 1  # never the ignore class


def test_a_batch_of_nothing_to_segment(segmenter: Segmenter) -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    results = segmenter.segment_batch([empty, empty], [True, False])
    assert [r.labels.size for r in results] == [0, 0]
    assert results[0].logits is not None and results[0].logits.shape == (0, segmenter.config.num_classes)
    assert results[1].logits is None
    assert segmenter.segment_batch([], []) == []
    with pytest.raises(ValueError, match="logits flags"):
        segmenter.segment_batch([empty], [])


# -- the batcher ---------------------------------------------------------------------------------


@dataclass
class HeldBackend:
    """Wraps a backend: records the clouds of every call, and holds the first call until released
    (so that the requests submitted meanwhile queue up behind it)."""

    inner: Backend
    calls: list[int] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def device(self) -> str:
        return self.inner.device

    def check_points(self, points: int) -> None:
        self.inner.check_points(points)

    def _hold(self, inputs: EncoderInputs) -> None:
        self.calls.append(inputs.batch_size)
        self.entered.set()
        assert self.release.wait(60), "the test never released the backend"

    def predict(self, inputs: EncoderInputs) -> npt.NDArray[np.int64]:
        self._hold(inputs)
        return self.inner.predict(inputs)

    def predict_logits(self, inputs: EncoderInputs) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        self._hold(inputs)
        return self.inner.predict_logits(inputs)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-infer")
    yield pool
    pool.shutdown(wait=True)


def _held(tiny_export: Path, config: ModelConfig) -> tuple[HeldBackend, Segmenter]:
    backend = HeldBackend(load_backend("onnxruntime", tiny_export, config))
    return backend, Segmenter(config, backend, MAX_POINTS)


def _sweeps(config: ModelConfig, count: int) -> list[npt.NDArray[np.float32]]:
    return [
        synthetic_sweep(2_000 + 500 * i, seed=10 + i, intensity_max=config.input.intensity_max).numpy()
        for i in range(count)
    ]


def test_requests_waiting_behind_a_call_run_as_one_batch(
    tiny_export: Path, config: ModelConfig, executor: ThreadPoolExecutor
) -> None:
    backend, segmenter = _held(tiny_export, config)
    batcher = MicroBatcher(segmenter, executor, max_batch=8, max_batch_points=1_000_000, window_ms=0)
    clouds = _sweeps(config, 5)
    first = batcher.submit(clouds[0])
    assert backend.entered.wait(60)
    rest = [batcher.submit(c, logits=i == 1) for i, c in enumerate(clouds[1:])]
    backend.release.set()
    results = [first.result(60), *(f.result(60) for f in rest)]
    assert backend.calls == [1, 4]
    assert [r.batch_size for r in results] == [1, 4, 4, 4, 4]
    reference = Segmenter(config, backend.inner, MAX_POINTS)
    for i, (cloud, result) in enumerate(zip(clouds, results, strict=True)):
        _assert_same(reference.segment(cloud, logits=i == 2), result)


def test_batches_stop_at_max_batch_and_max_batch_points(
    tiny_export: Path, config: ModelConfig, executor: ThreadPoolExecutor
) -> None:
    backend, segmenter = _held(tiny_export, config)
    clouds = _sweeps(config, 7)  # 2,000 to 5,000 points
    big = synthetic_sweep(30_000, seed=99, intensity_max=config.input.intensity_max).numpy()
    batcher = MicroBatcher(segmenter, executor, max_batch=3, max_batch_points=10_000, window_ms=0)
    futures = [batcher.submit(clouds[0])]
    assert backend.entered.wait(60)
    # queued: 2,500 + 3,000 + 3,500 | 4,000 + 4,500 | 5,000 | 30,000 (above the points bound: alone)
    futures += [batcher.submit(c) for c in clouds[1:]] + [batcher.submit(big)]
    backend.release.set()
    for future in futures:
        future.result(60)
    assert backend.calls == [1, 3, 2, 1, 1]


def test_the_window_gathers_requests_that_arrive_after_the_first(
    tiny_export: Path, config: ModelConfig, executor: ThreadPoolExecutor
) -> None:
    backend, segmenter = _held(tiny_export, config)
    backend.release.set()  # nothing held: the window alone makes the batch
    # A window far longer than the test: the batch runs once max_batch clouds have arrived.
    batcher = MicroBatcher(segmenter, executor, max_batch=2, max_batch_points=1_000_000, window_ms=600_000)
    clouds = _sweeps(config, 2)
    first = batcher.submit(clouds[0])
    second = batcher.submit(clouds[1])
    assert first.result(60).batch_size == second.result(60).batch_size == 2
    assert backend.calls == [2]


def test_each_waiter_gets_its_own_error(
    tiny_export: Path, config: ModelConfig, executor: ThreadPoolExecutor
) -> None:
    backend, segmenter = _held(tiny_export, config)
    batcher = MicroBatcher(segmenter, executor, max_batch=8, max_batch_points=1_000_000, window_ms=0)
    clouds = _sweeps(config, 3)
    broken = np.full((10, 4), np.nan, dtype=np.float32)  # decode refuses NaN; here preprocessing does
    first = batcher.submit(clouds[0])
    assert backend.entered.wait(60)
    waiting = [batcher.submit(clouds[1]), batcher.submit(broken), batcher.submit(clouds[2])]
    backend.release.set()
    assert first.result(60).labels.shape == (clouds[0].shape[0],)
    with pytest.raises(ValueError):
        waiting[1].result(60)
    reference = Segmenter(config, backend.inner, MAX_POINTS)
    for cloud, future in ((clouds[1], waiting[0]), (clouds[2], waiting[2])):
        _assert_same(reference.segment(cloud), future.result(60))


def test_a_waiter_that_gave_up_is_not_segmented(
    tiny_export: Path, config: ModelConfig, executor: ThreadPoolExecutor
) -> None:
    backend, segmenter = _held(tiny_export, config)
    batcher = MicroBatcher(segmenter, executor, max_batch=8, max_batch_points=1_000_000, window_ms=0)
    clouds = _sweeps(config, 3)
    first = batcher.submit(clouds[0])
    assert backend.entered.wait(60)
    gone, kept = batcher.submit(clouds[1]), batcher.submit(clouds[2])
    assert gone.cancel()
    backend.release.set()
    first.result(60)
    assert kept.result(60).batch_size == 1
    assert backend.calls == [1, 1]


def test_bad_limits_are_refused(tiny_export: Path, config: ModelConfig) -> None:
    _, segmenter = _held(tiny_export, config)
    pool = ThreadPoolExecutor(1)
    try:
        for kwargs in (
            {"max_batch": 0, "max_batch_points": 1, "window_ms": 0},
            {"max_batch": 2, "max_batch_points": 0, "window_ms": 0},
            {"max_batch": 2, "max_batch_points": 1, "window_ms": -1},
        ):
            with pytest.raises(ValueError):
                MicroBatcher(segmenter, pool, **kwargs)  # type: ignore[arg-type]
    finally:
        pool.shutdown()


# -- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batching_server(tiny_export: Path) -> Iterator[Server]:
    local = start_local_server(
        tiny_export,
        "--backend",
        "onnxruntime",
        "--max-points",
        str(MAX_POINTS),
        "--max-queue",
        "16",
        "--max-batch",
        "4",
        "--batch-window-ms",
        "20",
        "--log-level",
        "warning",
    )
    yield Server(local.url, local.process, tiny_export)
    local.stop()


def _post(http: httpx.Client, body: bytes, fmt: str) -> bytes:
    response = http.post(
        f"/segment?format={fmt}",
        content=body,
        headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.skipif(not SCANS, reason="real scans not found")
def test_concurrent_clients_of_a_batching_server_get_the_unbatched_labels(
    server: Server, batching_server: Server
) -> None:
    bodies = [(s.path.read_bytes(), FORMAT[s.kind]) for s in SCANS]
    bodies = [bodies[i % len(bodies)] for i in range(10)]
    with server.client() as http:  # the unbatched server of the same export
        expected = [_post(http, body, fmt) for body, fmt in bodies]

    async def clients() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(base_url=batching_server.url, timeout=120) as http:
            headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
            calls = [
                http.post(f"/segment?format={fmt}", content=body, headers=headers) for body, fmt in bodies
            ]
            # one malformed body among them: its own 422, the others unharmed
            bad = http.post("/segment?format=nuscenes", content=b"\x00" * 7, headers=headers)
            *answers, refused = await asyncio.gather(*calls, bad)
            return answers, refused

    answers, refused = asyncio.run(clients())
    assert refused.status_code == 422
    assert refused.json()["error"]["code"]
    for answer, labels in zip(answers, expected, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.content == labels


def test_batching_settings_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from serve.__main__ import EXIT_BAD_SETTINGS, main
    from serve.settings import ServeSettings

    settings = ServeSettings(max_batch=8, batch_window_ms=5, max_batch_points=1_000)
    assert (settings.max_batch, settings.batch_window_ms, settings.max_batch_points) == (8, 5.0, 1_000)
    assert ServeSettings().max_batch == 1  # off by default (bench/results/batching-cpu2-amd-epyc.md)
    assert main(["--max-batch", "0"]) == EXIT_BAD_SETTINGS
    assert "--max-batch / SEG_MAX_BATCH" in capsys.readouterr().err
    assert main(["--batch-window-ms", "-1"]) == EXIT_BAD_SETTINGS
    assert main(["--max-batch-points", "0"]) == EXIT_BAD_SETTINGS


def _report(on_rps: dict[int, float], on_p50: dict[int, float]) -> dict:
    """A bench/run.py --batching report with made-up figures: off runs 1 req/s at 100 ms."""

    def points(rps: dict[int, float], p50: dict[int, float]) -> list[dict]:
        return [
            {
                "clients": c,
                "throughput_rps": rps[c],
                "p50_ms": p50[c],
                "p95_ms": p50[c],
                "inference_p50_ms": 1.0,
                "labels_match": True,
                "statuses": {"200": 1},
            }
            for c in sorted(rps)
        ]

    off = {c: 1.0 for c in on_rps}
    modes = {
        mode: {"points": points(rps, p50), "server_idle_rss_gib": 0.5, "server_peak_rss_gib": 0.6}
        for mode, rps, p50 in (("off", off, {c: 100.0 for c in on_rps}), ("on", on_rps, on_p50))
    }
    return {
        "machine_name": "test",
        "machine": {"cpu": "x", "logical_cores": 2, "memory_gib": 1, "gpu": None, "torch": "t"},
        "date": "today",
        "args": "--batching",
        "input": {"scan": "nuscenes/a.pcd.bin", "points": 10, "bytes": 200},
        "requests_per_point": 32,
        "max_batch": 8,
        "batch_window_ms": 2.0,
        "max_batch_points": 300_000,
        "models": {
            "demo": {
                "config": "tiny",
                "model_dir": "models/demo",
                "graph": "dense",
                "weights": "trained",
                "modes": modes,
            }
        },
    }


def test_the_benchmark_turns_batching_on_only_where_it_helps() -> None:
    from tests.bench.conftest import load_bench_script

    bench = load_bench_script("run")
    helps = _report({1: 1.0, 8: 1.5, 32: 1.6}, {1: 101.0, 8: 90.0, 32: 80.0})
    assert "on (--max-batch 8)" in bench.batching_verdict(helps)[-1]
    flat = _report({1: 1.0, 8: 1.02, 32: 1.5}, {1: 100.0, 8: 100.0, 32: 80.0})  # 8 clients: +2 %
    assert "off (--max-batch 1)" in bench.batching_verdict(flat)[-1]
    slow_alone = _report({1: 0.8, 8: 1.5, 32: 1.6}, {1: 120.0, 8: 90.0, 32: 80.0})
    assert "off (--max-batch 1)" in bench.batching_verdict(slow_alone)[-1]
    helps["verdict"] = bench.batching_verdict(helps)
    text = bench.render_batching(helps)
    assert "| 8 | on | 1.50 |" in text and "not measured on a GPU here" in text
