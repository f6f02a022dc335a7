"""One unit of a labelling job, and what became of it. Both are plain records: they travel to worker
processes (pickled) and through Ray Data (as rows of strings and numbers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

__all__ = ["Outcome", "Task", "TaskResult"]


@dataclass(frozen=True)
class Task:
    """Label one point file: ``source`` read as ``fmt`` (a `seg3d.points.PointFormat` value), the
    labels written to ``output`` (relative to the job's output folder). ``key`` names the scan in
    the job's records (a nuScenes sample_data token, ``08/000123``, a file's relative path)."""

    key: str
    source: str
    fmt: str
    output: str

    def as_row(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(str(row["key"]), str(row["source"]), str(row["fmt"]), str(row["output"]))


class Outcome(str, Enum):
    WRITTEN = "written"
    SKIPPED = "skipped"  # --resume: the output was there and verified
    FAILED = "failed"


@dataclass(frozen=True)
class TaskResult:
    key: str
    source: str
    outcome: Outcome
    points: int = 0
    reason: str = ""  # why it failed, or why an existing output was redone
    seconds: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskResult:
        return cls(
            str(row["key"]),
            str(row["source"]),
            Outcome(str(row["outcome"])),
            int(row["points"]),
            str(row["reason"]),
            float(row["seconds"]),
        )
