"""Reading raw point files (``.bin`` float32 records) with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_bin"]


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
