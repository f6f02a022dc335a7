"""File I/O: raw point files (``.bin`` float32 records) read with errors that name the file, and
atomic writes for every artifact (checkpoints, engines, manifests, benchmark results)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["atomic_writer", "read_bin", "write_atomic"]


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
