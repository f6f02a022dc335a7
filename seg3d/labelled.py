"""Labelled point files: every point with its class label and the class's colour, as PCD or PLY.

What the service answers for ``Accept: application/x-ply`` / ``application/x-pcd`` and what the
command line writes beside its pictures; any viewer (CloudCompare, MeshLab, Open3D, PCL's
pcl_viewer) shows the colours, and any reader gets the labels back:

- PLY: ``binary_little_endian 1.0``, one ``vertex`` element whose properties are exactly ``float x``,
  ``float y``, ``float z``, ``float intensity``, ``uchar red``, ``uchar green``, ``uchar blue``,
  ``uchar label``;
- PCD: ``DATA binary``, fields ``x y z intensity`` (F 4), ``label`` (U 4, as PCL's
  ``PointXYZRGBL``) and ``rgb`` (F 4 holding the bits of ``r << 16 | g << 8 | b``, PCL's packing).

One point per input point, in input order; x, y, z and intensity as given (the service writes the
model's intensity scale); colours from ``classes.colours[label]``, the palette of `seg3d.classes`.
The header's comments name the class table and each class (``class 4 car 255 158 0``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.classes import ClassTable
from seg3d.io import write_atomic
from seg3d.pcd import encode_pcd
from seg3d.ply import encode_ply
from seg3d.points import PointFormat, PointsError

__all__ = ["encode_labelled", "pack_rgb", "write_labelled"]


def pack_rgb(colours: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """``(N, 3)`` uint8 RGB as PCL's packed ``rgb`` field: the float32 whose bits are
    ``r << 16 | g << 8 | b`` (the top byte 0, so it is never a NaN)."""
    rgb = colours.astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype("<u4").view("<f4")


def encode_labelled(
    points: npt.ArrayLike, labels: npt.ArrayLike, classes: ClassTable, fmt: PointFormat | str
) -> bytes:
    """The bytes of a labelled PCD or PLY file (module docstring).

    Args:
        points: ``(N, 4)`` x, y, z, intensity (more columns are ignored).
        labels: ``(N,)`` class indices into ``classes``.
        classes: the model's class table (names and colours).
        fmt: ``pcd`` or ``ply``.

    Raises:
        PointsError: ``unknown_format`` (not PCD or PLY), ``bad_shape`` (points or labels of the
            wrong shape, a label outside the class table), ``non_finite``.
    """
    try:
        chosen: PointFormat | None = PointFormat(fmt)
    except ValueError:
        chosen = None
    if chosen not in (PointFormat.PCD, PointFormat.PLY):
        raise PointsError("unknown_format", f"labelled files are pcd or ply, not {str(fmt)!r}")
    array = np.asarray(points, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] < 4:
        raise PointsError("bad_shape", f"points must be (N, 4) x, y, z, intensity, got shape {array.shape}")
    array = array[:, :4]
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        first = ", ".join(str(int(i)) for i in bad[:5])
        raise PointsError(
            "non_finite",
            f"{bad.size} of {array.shape[0]} point rows contain NaN or Inf (first bad rows: {first})",
        )
    values = np.asarray(labels)
    if values.shape != (array.shape[0],) or values.dtype.kind not in "ui":
        raise PointsError(
            "bad_shape",
            f"labels must be ({array.shape[0]},) integers, one per point, got {values.dtype} {values.shape}",
        )
    if values.size and (values.min() < 0 or values.max() >= min(len(classes), 256)):
        raise PointsError(
            "bad_shape",
            f"labels must be class indices 0..{min(len(classes), 256) - 1} of {classes.name} (a uchar), "
            f"got {int(values.min())}..{int(values.max())}",
        )
    index = values.astype(np.intp)
    colours = np.asarray(classes.colours, dtype=np.uint8)[index]
    comments = [f"labels: class indices of the {classes.name} class table (index name red green blue)"]
    comments += [
        f"class {i} {name.replace(' ', '_')} {r} {g} {b}"
        for i, (name, (r, g, b)) in enumerate(zip(classes.names, classes.colours, strict=True))
    ]
    xyzi = [("x", array[:, 0]), ("y", array[:, 1]), ("z", array[:, 2]), ("intensity", array[:, 3])]
    if chosen is PointFormat.PLY:
        rgb = [("red", colours[:, 0]), ("green", colours[:, 1]), ("blue", colours[:, 2])]
        return encode_ply([*xyzi, *rgb, ("label", index.astype(np.uint8))], comments=comments)
    return encode_pcd(
        [*xyzi, ("label", index.astype(np.uint32)), ("rgb", pack_rgb(colours))], "binary", comments=comments
    )


def write_labelled(
    path: str | Path,
    points: npt.ArrayLike,
    labels: npt.ArrayLike,
    classes: ClassTable,
    fmt: PointFormat | str,
) -> None:
    """Write `encode_labelled` to ``path`` atomically (`seg3d.io.write_atomic`)."""
    write_atomic(path, encode_labelled(points, labels, classes, fmt))
