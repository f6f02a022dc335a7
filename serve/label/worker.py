"""The work of one labelling process or Ray actor: load the model once, then label files one by one.

A file is labelled by the service's own path: read by the one point reader (`seg3d.points`),
segmented by `serve.segmenter.Segmenter` (the crop, the backend, every point outside the crop
labelled as its nearest in-crop point), so a job's labels are the labels ``POST /segment`` answers
for the same file and model; one label per input point, in input order. The label file is written
atomically: it is complete or absent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.io import write_atomic
from seg3d.points import PointsError, read_points
from serve.errors import ServiceError
from serve.label.outputs import LabelEncoding
from serve.label.tasks import Outcome, Task, TaskResult
from serve.model import LoadedModel, load_model
from serve.segment import format_of
from serve.settings import BackendChoice, ServeSettings

__all__ = ["Labeller", "WorkerOptions"]

#: Points a labelled file may hold: far above any sweep (a KITTI HDL-64E scan has ~120,000), low
#: enough that a corrupt header cannot make a worker allocate without bound.
MAX_POINTS = 5_000_000


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker needs to start: picklable, sent once to each process or actor."""

    model: Path
    out: Path
    encoding: LabelEncoding
    backend: BackendChoice = "onnxruntime"
    threads: int = 1
    resume: bool = False
    #: the reader's options, as ``POST /segment``'s ``intensity_max`` and ``allow_missing_intensity``
    file_intensity_max: float | None = None
    allow_missing_intensity: bool = False


class Labeller:
    """One loaded model that labels `Task`s. Every failure of a task is caught and returned as its
    `TaskResult` (the job goes on); only the model's loading raises (`serve.model.ModelLoadError`)."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        settings = ServeSettings(
            model=options.model, backend=options.backend, threads=options.threads, max_points=MAX_POINTS
        )
        self.model: LoadedModel = load_model(settings)
        self.intensity_max = self.model.manifest.config.input.intensity_max

    def _read(self, task: Task) -> npt.NDArray[np.float32]:
        """``(N, 4)`` points in the model's intensity scale."""
        if not task.fmt:  # the source found none in the file's name, and no --format was given
            _, problem = format_of(Path(task.source), None)
            raise PointsError("unknown_format", problem or f"{task.source}: no point format")
        return read_points(
            task.source,
            task.fmt,
            self.intensity_max,
            max_points=MAX_POINTS,
            file_intensity_max=self.options.file_intensity_max,
            allow_missing_intensity=self.options.allow_missing_intensity,
        )

    def _existing(self, output: Path, points: int) -> str | None:
        """None when ``output`` holds this task's complete labels (``--resume`` keeps it), else why not."""
        if not output.is_file():
            return "absent"
        return self.options.encoding.check(output.read_bytes(), points)

    def label(self, task: Task) -> TaskResult:
        start = time.perf_counter()
        output = self.options.out / task.output
        redo = ""
        try:
            points = self._read(task)
            if self.options.resume:
                why = self._existing(output, points.shape[0])
                if why is None:
                    return TaskResult(task.key, task.source, Outcome.SKIPPED, points.shape[0])
                redo = "" if why == "absent" else f"the earlier output was redone: {why}"
            labels = self.model.segmenter.segment(points).labels
            data = self.options.encoding.encode(labels)
            output.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(output, data)
        except (OSError, PointsError, ServiceError, ValueError) as exc:
            reason = exc.message if isinstance(exc, ServiceError) else str(exc)
            return TaskResult(task.key, task.source, Outcome.FAILED, 0, reason or type(exc).__name__)
        except Exception as exc:  # a backend error on one file must not stop the job
            return TaskResult(task.key, task.source, Outcome.FAILED, 0, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - start
        return TaskResult(task.key, task.source, Outcome.WRITTEN, int(labels.shape[0]), redo, seconds)
