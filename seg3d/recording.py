"""Rerun recordings (``.rrd``) of a labelled point cloud, for the Rerun viewer (``rerun scan.rrd``).

A recording holds, under one application id (`APPLICATION_ID`):

- at ``/`` (static): an annotation context with every class of the model's table — its index as
  the class id, its name as the label, its colour from `seg3d.classes` — and the view coordinates
  (right-handed, z up: the sensor frame of nuScenes and KITTI);
- at `ENTITY` (``lidar/points``): the points' ``x, y, z`` with one class id per point, in input order.

The viewer colours and names each point through the context, so the recording carries the labels
themselves, not colours baked from them, and selecting a point shows its class name.

``rerun-sdk`` is an optional extra (``pip install -e .[viz]``): it is imported only when a
recording is made, and `RerunMissingError` says how to install it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from seg3d.classes import ClassTable
from seg3d.io import write_atomic

__all__ = [
    "APPLICATION_ID",
    "ENTITY",
    "RecordingContent",
    "RerunMissingError",
    "import_rerun",
    "recording_bytes",
    "recording_content",
    "write_recording",
]

APPLICATION_ID = "seg3d"
ENTITY = "lidar/points"


class RerunMissingError(ImportError):
    """``rerun-sdk`` is not installed; the message says how to install it."""


def import_rerun() -> Any:
    """The ``rerun`` module (untyped: its API moves between releases; the calls made here work with
    0.22 and 0.41, not with 0.23 under numpy 1, which drops annotation contexts: refused loudly).

    Raises:
        RerunMissingError: rerun-sdk is not installed.
    """
    try:
        return importlib.import_module("rerun")
    except ImportError as exc:
        raise RerunMissingError(
            "writing a .rrd recording needs rerun-sdk, an optional extra: pip install -e '.[viz]' "
            "(or pip install rerun-sdk)"
        ) from exc


@dataclass(frozen=True)
class RecordingContent:
    """What a recording logs: ``positions`` ``(N, 3)`` float32, ``class_ids`` ``(N,)`` uint16 and the
    annotation context's ``(id, label, (r, g, b))`` per class."""

    positions: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.uint16]
    classes: tuple[tuple[int, str, tuple[int, int, int]], ...]


def recording_content(points: npt.ArrayLike, labels: npt.ArrayLike, classes: ClassTable) -> RecordingContent:
    """The arrays and class descriptions `recording_bytes` logs.

    Raises:
        ValueError: points not ``(N, >=3)``, labels not one per point, or a label outside the table.
    """
    xyz = np.asarray(points, dtype=np.float32)
    label = np.asarray(labels)
    if xyz.ndim != 2 or xyz.shape[1] < 3 or label.shape != (xyz.shape[0],):
        raise ValueError(f"need (N, >=3) points and (N,) labels, got {xyz.shape} and {label.shape}")
    label = label.astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= len(classes)):
        raise ValueError(f"labels span {label.min()}..{label.max()}, outside the {len(classes)} classes")
    described = tuple((i, name, classes.colours[i]) for i, name in enumerate(classes.names))
    return RecordingContent(np.ascontiguousarray(xyz[:, :3]), label.astype(np.uint16), described)


def recording_bytes(
    points: npt.ArrayLike, labels: npt.ArrayLike, classes: ClassTable, name: str = "scan"
) -> bytes:
    """The ``.rrd`` bytes of one labelled cloud (module docstring); ``name`` becomes the recording id.

    Raises:
        RerunMissingError: rerun-sdk is not installed.
        ValueError: as `recording_content`.
        RuntimeError: rerun failed to record (its error included).
    """
    content = recording_content(points, labels, classes)
    rr = import_rerun()
    strict = importlib.import_module("rerun.error_utils")
    was_strict = strict.strict_mode()
    # Strict: a value rerun cannot convert raises here instead of being dropped with a warning
    # (rerun 0.23 with numpy 1 dropped every annotation context so, silently).
    rr.set_strict_mode(True)
    try:
        if hasattr(rr, "new_recording"):  # rerun up to 0.2x; later releases construct the stream
            rec = rr.new_recording(APPLICATION_ID, recording_id=name)
        else:
            rec = rr.RecordingStream(application_id=APPLICATION_ID, recording_id=name)
        stream = rec.binary_stream()  # in memory: the file is then written atomically
        context = [rr.AnnotationInfo(id=i, label=label, color=colour) for i, label, colour in content.classes]
        rec.log("/", rr.AnnotationContext(context), static=True)
        rec.log("/", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.log(ENTITY, rr.Points3D(content.positions, class_ids=content.class_ids))
        data = stream.read(flush=True)
    except Exception as exc:  # rerun's own failure, in whatever type it raises
        raise RuntimeError(
            f"rerun-sdk {getattr(rr, '__version__', '?')} could not record: {type(exc).__name__}: {exc} "
            "(rerun-sdk 0.23 needs numpy 2 despite its metadata; use 0.22 with numpy 1)"
        ) from exc
    finally:
        rr.set_strict_mode(was_strict)
    if not data:  # pragma: no cover - a rerun release whose stream API changed
        raise RuntimeError(f"rerun {getattr(rr, '__version__', '?')} gave an empty recording")
    return bytes(data)


def write_recording(
    path: str | Path, points: npt.ArrayLike, labels: npt.ArrayLike, classes: ClassTable, name: str = "scan"
) -> None:
    """`recording_bytes` written to ``path`` atomically."""
    write_atomic(path, recording_bytes(points, labels, classes, name))
