"""File I/O: raw point files (``.bin`` float32 records) read with errors that name the file, and
atomic writes for every artifact (checkpoints, engines, manifests, benchmark results)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from seg3d.pointcloud import to_model_intensity

__all__ = ["POINT_FORMATS", "PointFormat", "atomic_writer", "read_bin", "read_points", "write_atomic"]


@dataclass(frozen=True)
class PointFormat:
    """A point file layout: little-endian float32 records of ``columns`` values, the first four
    ``x, y, z, intensity``, with intensities up to ``intensity_max`` (None: the model's own scale)."""

    columns: int
    intensity_max: float | None
    description: str


#: Every point layout the project reads: files, requests, the manifest's contract.
POINT_FORMATS: dict[str, PointFormat] = {
    "nuscenes": PointFormat(5, 255.0, "5 float32: x, y, z, intensity 0-255, ring"),
    "kitti": PointFormat(4, 1.0, "4 float32: x, y, z, reflectance 0-1"),
    "xyzi": PointFormat(4, None, "4 float32: x, y, z, intensity in the model's own scale"),
}


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error.

    It is written next to ``path`` (same filesystem), flushed to disk, made readable by others
    (``mkstemp`` creates mode 0600) and renamed over ``path``; on any error it is removed, so a crash
    never leaves a half-written artifact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` with `atomic_writer`."""
    with atomic_writer(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def read_bin(path: str | Path, columns: int) -> np.ndarray:
    """Read a little-endian float32 point file of ``columns`` values per point as ``(N, columns)``.

    nuScenes ``.pcd.bin`` files have 5 columns (x, y, z, intensity 0–255, ring); KITTI and
    SemanticKITTI ``.bin`` files have 4 (x, y, z, remission 0–1).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the size is not a whole number of records.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    record = 4 * columns
    size = path.stat().st_size
    if size % record:
        raise ValueError(
            f"{path}: {size} bytes is not a multiple of {record} ({columns} float32 columns per point)"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, columns)


def read_points(path: str | Path, fmt: str, intensity_max: float) -> np.ndarray:
    """``(N, 4)`` float32 ``x, y, z, intensity`` of a point file in format ``fmt``, with intensity
    converted to the scale whose maximum is ``intensity_max`` (the model's)."""
    if fmt not in POINT_FORMATS:
        raise ValueError(f"unknown point format {fmt!r}; use one of {sorted(POINT_FORMATS)}")
    spec = POINT_FORMATS[fmt]
    points = read_bin(path, spec.columns)[:, :4].copy()
    if spec.intensity_max is not None:
        points[:, 3] = to_model_intensity(points[:, 3], spec.intensity_max, intensity_max)
    return points
