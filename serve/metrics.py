"""Prometheus metrics, recorded in one place: `RecordedRoute` times every ``POST /segment``.

`Metrics` owns the registry and the instruments; `RecordedRoute` (the segment router's route class,
the pattern of FastAPI's "Custom APIRoute class") counts each request by status and refusal code and,
for a 200, observes latency, per-stage times and the point count. Handlers never touch a counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serve.errors import ServiceError, validation_error
from serve.segmenter import Segmentation

__all__ = ["STAGES", "Metrics", "RecordedRoute"]

STAGES = ("parse", "preprocess", "inference", "postprocess")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "seg_requests", "POST /segment requests by HTTP status", ["status"], registry=r
        )
        self.errors = Counter(
            "seg_errors", "refused or failed requests by status and code", ["status", "code"], registry=r
        )
        self.latency = Histogram(
            "seg_request_seconds",
            "POST /segment end to end",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.stage = Histogram(
            "seg_stage_seconds",
            "time per stage",
            ["stage"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.points = Histogram(
            "seg_points",
            "points per request",
            registry=r,
            buckets=(0, 1_000, 10_000, 35_000, 100_000, 300_000, 1_000_000, 2_000_000),
        )
        self.inflight = Gauge("seg_inflight", "requests admitted (running or waiting)", registry=r)
        self.info = Gauge(
            "seg_model_info", "the served model", ["name", "backend", "device", "precision"], registry=r
        )

    def refused(self, status: int, code: str) -> None:
        self.requests.labels(str(status)).inc()
        self.errors.labels(str(status), code).inc()

    def served(self, result: Segmentation, total_s: float) -> None:
        for stage in STAGES:
            if stage in result.timing_ms:
                self.stage.labels(stage).observe(result.timing_ms[stage] / 1e3)
        self.latency.observe(total_s)
        self.points.observe(result.labels.size)
        self.requests.labels("200").inc()


class RecordedRoute(APIRoute):
    """A route whose every request is counted in `Metrics` (``request.app.state.seg.metrics``).

    The endpoint leaves its `Segmentation` in ``request.state.segmentation`` for the histograms.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def recorded(request: Request) -> Response:
            metrics: Metrics = request.app.state.seg.metrics
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ServiceError as exc:
                metrics.refused(exc.status, exc.code)
                raise
            except RequestValidationError as exc:
                error = validation_error(exc)
                metrics.refused(error.status, error.code)
                raise
            except Exception:
                metrics.refused(500, "internal")
                raise
            result: Segmentation | None = getattr(request.state, "segmentation", None)
            if response.status_code == 200 and result is not None:
                metrics.served(result, time.perf_counter() - started)
            else:
                metrics.requests.labels(str(response.status_code)).inc()
            return response

        return recorded
