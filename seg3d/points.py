"""Point clouds as they arrive: the formats, the one reader for files and request bodies, and its inverse.

Every cloud that reaches preprocessing — a sweep read by a training data set, a request body posted
to the service, a scan given to export's parity check or to ``python -m seg3d smoke`` — comes through
`decode_points` (bytes) or `read_points` (a file). Both do the same three things, here
and nowhere else:

1. check the layout: a whole number of little-endian float32 records of the format's columns;
2. convert intensity from the format's scale to the model's (`to_model_intensity`);
3. check the result: every ``x, y, z, intensity`` finite, including values that were finite in the
   file but overflow float32 on conversion (a KITTI reflectance of 1e38 times 255).

A format without an intensity column (``xyz``) gives every point intensity 0, the bottom of every
model's scale; such a model then segments by geometry alone, which a model trained with intensity
does less well.

A failure raises `PointsError`, whose ``code`` is stable and machine-readable (the service answers it
as a 422/413) and whose message names the file or body.

`encode_points` (bytes) and `write_points` (a file, written atomically) are the reader's inverse:
``x, y, z, intensity`` in the model's scale become a format's records, intensity converted to the
format's scale (dropped for ``xyz``), so ``decode_points(encode_points(p, f, m), f, m)`` gives ``p``
back (to float32 rounding of the scale factor). Layouts and scales stay defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

from seg3d.io import write_atomic

__all__ = [
    "PointFormat",
    "PointsError",
    "check_points",
    "decode_points",
    "encode_points",
    "read_points",
    "to_model_intensity",
    "write_points",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, npt.NDArray[np.float32])


@dataclass(frozen=True)
class _Layout:
    columns: int
    intensity_max: float | None  # None: already in the model's scale, or no intensity at all
    description: str
    has_intensity: bool = True


class PointFormat(str, Enum):
    """A point layout: little-endian float32 records whose first four values are x, y, z, intensity."""

    NUSCENES = "nuscenes"
    KITTI = "kitti"
    XYZI = "xyzi"
    XYZ = "xyz"

    def __str__(self) -> str:  # the name users type (argparse choices, messages)
        return self.value

    @property
    def columns(self) -> int:
        """float32 values per point."""
        return _LAYOUTS[self].columns

    @property
    def intensity_max(self) -> float | None:
        """Maximum of the format's intensity scale; None when it is the model's own."""
        return _LAYOUTS[self].intensity_max

    @property
    def description(self) -> str:
        return _LAYOUTS[self].description

    @property
    def has_intensity(self) -> bool:
        """False for clouds without an intensity column: the model then reads intensity 0."""
        return _LAYOUTS[self].has_intensity


_LAYOUTS: dict[PointFormat, _Layout] = {
    PointFormat.NUSCENES: _Layout(5, 255.0, "5 float32: x, y, z, intensity 0-255, ring"),
    PointFormat.KITTI: _Layout(4, 1.0, "4 float32: x, y, z, reflectance 0-1"),
    PointFormat.XYZI: _Layout(4, None, "4 float32: x, y, z, intensity in the model's own scale"),
    PointFormat.XYZ: _Layout(
        3, None, "3 float32: x, y, z, no intensity (the model reads intensity 0 for every point)", False
    ),
}


class PointsError(ValueError):
    """A cloud that cannot be used; ``code`` says why (``unknown_format``, ``bad_length``,
    ``too_many_points``, ``non_finite``, ``intensity_overflow``), the message names the source."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_model_intensity(intensity: ArrayT, source_max: float, model_max: float) -> ArrayT:
    """Rescale intensity from a sensor's scale (maximum ``source_max``) to the model's scale.

    nuScenes stores raw intensity 0–255 and 2DPASS feeds it unnormalised, while KITTI remission is
    0–1: a KITTI scan served to a nuScenes model is multiplied by 255 here, once, for everyone.
    """
    if source_max <= 0 or model_max <= 0:
        raise ValueError("intensity maxima must be positive")
    if source_max == model_max:
        return intensity
    if isinstance(intensity, np.ndarray):
        with np.errstate(over="ignore"):  # overflow becomes Inf, which the reader then refuses
            return intensity * np.float32(model_max / source_max)
    return intensity * (model_max / source_max)


def _non_finite_rows(points: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
    return np.flatnonzero(~np.isfinite(points).all(axis=1))


def _describe_rows(bad: npt.NDArray[np.intp], total: int, what: str) -> str:
    first = ", ".join(str(int(i)) for i in bad[:5])
    return f"{bad.size} of {total} point rows {what} (first bad rows: {first})"


def check_points(points: torch.Tensor, min_columns: int = 4) -> torch.Tensor:
    """Check an in-memory point array and return it as contiguous float32.

    Args:
        points: ``(N, D)`` tensor with ``D >= min_columns``; columns ``x, y, z, intensity, ...``.
        min_columns: how many leading columns the caller reads.

    Raises:
        PointsError: wrong rank or too few columns (``bad_shape``), or any non-finite value in the
            first ``min_columns`` columns (``non_finite``, giving how many rows are bad and the first).
    """
    if points.ndim != 2:
        raise PointsError("bad_shape", f"points must be a 2-D (N, D) array, got shape {tuple(points.shape)}")
    if points.shape[1] < min_columns:
        raise PointsError("bad_shape", f"points need at least {min_columns} columns, got {points.shape[1]}")
    if not points.is_floating_point():
        points = points.float()
    finite = torch.isfinite(points[:, :min_columns]).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().cpu().numpy()  # points may be on CUDA
        raise PointsError("non_finite", _describe_rows(bad, points.shape[0], "contain NaN or Inf"))
    return points.to(torch.float32).contiguous()


def decode_points(
    data: bytes,
    fmt: PointFormat | str,
    intensity_max: float,
    *,
    source: str = "body",
    max_points: int | None = None,
) -> npt.NDArray[np.float32]:
    """``(N, 4)`` float32 ``x, y, z, intensity``, intensity in the scale whose maximum is
    ``intensity_max`` (the model's), from the raw bytes of a point file.

    Args:
        data: the file's bytes.
        fmt: the layout (`PointFormat` or its name).
        intensity_max: the model's intensity maximum (``ModelConfig.input.intensity_max``).
        source: what the bytes are, for messages (a path, ``"body"``).
        max_points: refuse larger clouds (``too_many_points``) before converting anything.

    Raises:
        PointsError: see the module docstring.
    """
    try:
        fmt = PointFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in PointFormat)
        raise PointsError("unknown_format", f"unknown point format {fmt!r}; use one of {known}") from None
    if len(data) % (4 * fmt.columns):
        raise PointsError(
            "bad_length",
            f"{source}: {len(data)} bytes is not a multiple of {4 * fmt.columns} "
            f"({fmt.value}: {fmt.description})",
        )
    values = np.frombuffer(data, dtype="<f4")
    count = values.size // fmt.columns
    if max_points is not None and count > max_points:
        raise PointsError("too_many_points", f"{source}: {count} points exceed the limit of {max_points}")
    points = np.zeros((count, 4), dtype=np.float32)  # x, y, z, intensity: writable, native order
    points[:, : min(fmt.columns, 4)] = values.reshape(count, fmt.columns)[:, :4]
    bad = _non_finite_rows(points)
    if bad.size:
        raise PointsError("non_finite", f"{source}: {_describe_rows(bad, count, 'contain NaN or Inf')}")
    if fmt.intensity_max is not None:
        points[:, 3] = to_model_intensity(points[:, 3], fmt.intensity_max, intensity_max)
        bad = _non_finite_rows(points)
        if bad.size:
            what = (
                f"have an intensity that overflows float32 when scaled from the {fmt.value} scale "
                f"(max {fmt.intensity_max:g}) to the model's (max {intensity_max:g})"
            )
            raise PointsError("intensity_overflow", f"{source}: {_describe_rows(bad, count, what)}")
    return points


def read_points(path: str | Path, fmt: PointFormat | str, intensity_max: float) -> npt.NDArray[np.float32]:
    """`decode_points` of a point file; errors name the file.

    nuScenes ``.pcd.bin`` files have 5 columns (x, y, z, intensity 0–255, ring); KITTI and
    SemanticKITTI ``.bin`` files have 4 (x, y, z, remission 0–1).

    Raises:
        FileNotFoundError: the file does not exist.
        PointsError: see `decode_points`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    return decode_points(path.read_bytes(), fmt, intensity_max, source=str(path))


def encode_points(
    points: npt.ArrayLike,
    fmt: PointFormat | str,
    intensity_max: float,
    *,
    ring: npt.ArrayLike | None = None,
) -> bytes:
    """The bytes of a point file of format ``fmt``: the inverse of `decode_points`.

    Args:
        points: ``(N, 4)`` ``x, y, z, intensity``, intensity in the scale whose maximum is
            ``intensity_max`` (the model's); for ``xyz`` an ``(N, 3)`` array is accepted too.
        fmt: the layout (`PointFormat` or its name).
        intensity_max: the maximum of the scale ``points``' intensity is in.
        ring: ``(N,)`` laser ring of each point, the fifth ``nuscenes`` column (0 when omitted);
            only for ``nuscenes``.

    Raises:
        PointsError: ``unknown_format``; ``bad_shape`` (wrong rank, columns or ring length, or a ring
            given for a format without one); ``non_finite`` / ``intensity_overflow`` (a value the
            reader would refuse), so what is written always reads back.
    """
    try:
        fmt = PointFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in PointFormat)
        raise PointsError("unknown_format", f"unknown point format {fmt!r}; use one of {known}") from None
    array = np.asarray(points, dtype=np.float32)
    need = 4 if fmt.has_intensity else 3
    if array.ndim != 2 or array.shape[1] not in (need, 4):
        raise PointsError(
            "bad_shape", f"points to encode must be (N, 4) x, y, z, intensity, got shape {array.shape}"
        )
    count = array.shape[0]
    bad = _non_finite_rows(array[:, :need])
    if bad.size:
        raise PointsError("non_finite", _describe_rows(bad, count, "contain NaN or Inf"))
    records = np.zeros((count, fmt.columns), dtype="<f4")
    records[:, :3] = array[:, :3]
    if ring is not None:
        if fmt is not PointFormat.NUSCENES:
            raise PointsError(
                "bad_shape", f"a ring column exists only in the nuscenes format, not {fmt.value}"
            )
        rings = np.asarray(ring, dtype=np.float32)
        if rings.shape != (count,):
            raise PointsError(
                "bad_shape", f"ring must have one value per point ({count}), got shape {rings.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(rings))
        if bad.size:
            raise PointsError("non_finite", _describe_rows(bad, count, "have a NaN or Inf ring"))
        records[:, 4] = rings
    if fmt.has_intensity:
        intensity = array[:, 3]
        if fmt.intensity_max is not None:  # overflow becomes Inf (see to_model_intensity), refused below
            intensity = to_model_intensity(intensity, intensity_max, fmt.intensity_max)
        records[:, 3] = intensity
        bad = np.flatnonzero(~np.isfinite(records[:, 3]))
        if bad.size:
            what = (
                f"have an intensity that overflows float32 when scaled from the model's scale "
                f"(max {intensity_max:g}) to the {fmt.value} scale (max {fmt.intensity_max:g})"
            )
            raise PointsError("intensity_overflow", _describe_rows(bad, count, what))
    return records.tobytes()


def write_points(
    path: str | Path,
    points: npt.ArrayLike,
    fmt: PointFormat | str,
    intensity_max: float,
    *,
    ring: npt.ArrayLike | None = None,
) -> None:
    """Write `encode_points` to ``path`` atomically (`seg3d.io.write_atomic`): `read_points` with the
    same format and ``intensity_max`` gives the points back."""
    write_atomic(path, encode_points(points, fmt, intensity_max, ring=ring))
