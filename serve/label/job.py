"""A labelling job's records in its output folder.

- ``label-job.json`` (`JobRecord`), written before any label: the model (folder, name, the SHA-256
  of its verified manifest, which pins every file of the export) and the inputs. ``--resume``
  refuses a folder whose record names another model or other inputs, so that no output folder
  mixes the labels of two models.
- ``label-summary.json`` (`JobSummary`), written at the end (and when interrupted): counts,
  points, throughput and every failed file with its reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from seg3d.io import write_atomic
from serve.label.tasks import Outcome, TaskResult

__all__ = ["JOB_RECORD", "SUMMARY", "Failure", "JobRecord", "JobSummary", "Tally", "read_record"]

JOB_RECORD = "label-job.json"
SUMMARY = "label-summary.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelRecord(_Strict):
    folder: str
    name: str
    manifest_sha256: str
    classes: str


class JobRecord(_Strict):
    model: ModelRecord
    inputs: dict[str, Any]
    encoding: str

    def mismatch(self, other: JobRecord) -> list[str]:
        """The fields in which ``other`` (an earlier run's record) differs from this one."""
        fields = []
        if self.model.manifest_sha256 != other.model.manifest_sha256:
            was, now = other.model.manifest_sha256[:12], self.model.manifest_sha256[:12]
            fields.append(f"model (manifest {was}…, now {now}…)")
        if self.inputs != other.inputs:
            fields.append(f"inputs ({other.inputs}, now {self.inputs})")
        if self.encoding != other.encoding:
            fields.append(f"encoding ({other.encoding}, now {self.encoding})")
        return fields


def read_record(out: Path) -> JobRecord | None:
    """The job record in ``out``, None when there is none.

    Raises:
        ValueError: a record that cannot be read.
    """
    path = out / JOB_RECORD
    if not path.is_file():
        return None
    try:
        return JobRecord.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a label job record: {exc}") from exc


class Failure(_Strict):
    key: str
    path: str
    reason: str


class JobSummary(_Strict):
    job: JobRecord
    engine: str
    workers: int
    threads_per_worker: int
    inputs: int
    written: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    points: int = 0
    seconds: float = 0.0
    scans_per_s: float = 0.0
    points_per_s: float = 0.0
    #: seconds to the first result (the model loading in every worker, Ray starting), and the
    #: rate from the first result to the last: what a long job runs at
    startup_s: float = 0.0
    steady_scans_per_s: float = 0.0
    failures: list[Failure] = []

    def write(self, out: Path) -> Path:
        path = out / SUMMARY
        write_atomic(path, json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


class Tally:
    """Counts the results as they come, into a `JobSummary`."""

    def __init__(self, summary: JobSummary) -> None:
        self.summary = summary
        self._start = time.perf_counter()
        self._first: float | None = None
        self._last = self._start

    def add(self, result: TaskResult) -> None:
        now = time.perf_counter()
        self._first = now if self._first is None else self._first
        self._last = now
        s = self.summary
        if result.outcome is Outcome.WRITTEN:
            s.written += 1
            s.points += result.points
        elif result.outcome is Outcome.SKIPPED:
            s.skipped += 1
        else:
            s.failed += 1
            s.failures.append(Failure(key=result.key, path=result.source, reason=result.reason))

    def close(self, interrupted: bool = False) -> JobSummary:
        """The summary, timed from this tally's creation to now."""
        s = self.summary
        seconds = time.perf_counter() - self._start
        s.seconds = round(seconds, 3)
        if self._first is not None:
            s.startup_s = round(self._first - self._start, 3)
            results = s.written + s.skipped + s.failed
            if results > 1 and self._last > self._first:
                s.steady_scans_per_s = round((results - 1) / (self._last - self._first), 3)
        s.interrupted = interrupted
        s.scans_per_s = round(s.written / seconds, 3) if seconds > 0 else 0.0
        s.points_per_s = round(s.points / seconds, 1) if seconds > 0 else 0.0
        s.failures.sort(key=lambda f: f.key)
        return s
