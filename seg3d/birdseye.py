"""Bird's-eye pictures of a labelled point cloud, as PNG, with no imaging library.

The picture looks straight down on the sensor frame: +x to the right, +y up, the sensor at the
centre, ``extent`` metres from the centre to each edge. Each point is a ``dot``-pixel square in its
class's colour (`seg3d.classes.ClassTable.colours`); points are drawn lowest first, so that what
stands above the ground (cars, trunks, walls) covers the ground under it, as seen from above.
Points outside the square are left out of the picture (they keep their labels elsewhere).
nuScenes' LIDAR_TOP frame has y forward (forward is up); KITTI's Velodyne frame has x forward
(forward is to the right).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.io import write_atomic

__all__ = ["BACKGROUND", "birdseye", "png_bytes", "write_png"]

BACKGROUND = (16, 16, 20)


def birdseye(
    points: npt.ArrayLike,
    labels: npt.ArrayLike,
    colours: Sequence[tuple[int, int, int]],
    extent: float = 40.0,
    size: int = 800,
    dot: int = 2,
) -> npt.NDArray[np.uint8]:
    """``(size, size, 3)`` uint8 picture of ``points`` ``(N, ≥3)`` coloured by ``labels`` ``(N,)``.

    Raises:
        ValueError: shapes that disagree, a label without a colour, or a non-positive size.
    """
    xyz = np.asarray(points, dtype=np.float64)
    label = np.asarray(labels).astype(np.int64)
    if xyz.ndim != 2 or xyz.shape[1] < 3 or label.shape != (xyz.shape[0],):
        raise ValueError(f"need (N, >=3) points and (N,) labels, got {xyz.shape} and {label.shape}")
    if extent <= 0 or size < 1 or dot < 1:
        raise ValueError(f"extent, size and dot must be positive, got {extent}, {size}, {dot}")
    palette = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if label.size and (label.min() < 0 or label.max() >= len(palette)):
        raise ValueError(f"labels span {label.min()}..{label.max()} but there are {len(palette)} colours")
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    scale = size / (2 * extent)
    col = np.floor((xyz[:, 0] + extent) * scale).astype(np.int64)
    row = np.floor((extent - xyz[:, 1]) * scale).astype(np.int64)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    order = np.argsort(xyz[inside, 2], kind="stable")  # lowest first: higher points overwrite
    row, col, label = row[inside][order], col[inside][order], label[inside][order]
    for dr in range(dot):
        for dc in range(dot):
            # Later writes win in fancy-index assignment, so the highest point of a pixel shows.
            image[np.minimum(row + dr, size - 1), np.minimum(col + dc, size - 1)] = palette[label]
    return image


def png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of ``image`` ``(H, W, 3)`` uint8 (filter 0 on every row, zlib level 6)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)  # callers may pass another dtype at run time
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) image, got {image.shape}")
    height, width = image.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | Path, image: npt.NDArray[np.uint8]) -> None:
    """Write ``image`` as a PNG at ``path``, atomically."""
    write_atomic(path, png_bytes(image))
