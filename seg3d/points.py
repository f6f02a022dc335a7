"""Point clouds as they arrive: the formats, the one reader for files and request bodies, and its inverse.

Every cloud that reaches preprocessing — a sweep read by a training data set, a request body posted
to the service, a scan given to export's parity check or to ``python -m seg3d smoke`` — comes through
`decode_points` (bytes) or `read_points` (a file). Both do the same three things, here
and nowhere else:

1. check the layout: for a raw format (``nuscenes``, ``kitti``, ``xyzi``, ``xyz``) a whole number
   of little-endian float32 records of the format's columns; for a self-describing file (``pcd``,
   ``ply``) its header and data (`seg3d.pcd`, `seg3d.ply`), then x, y, z and the intensity field
   picked by the intensity rule below;
2. convert intensity from the file's scale to the model's (`to_model_intensity`);
3. check the result: every ``x, y, z, intensity`` finite, including values that were finite in the
   file but overflow float32 on conversion (a KITTI reflectance of 1e38 times 255).

Every point is kept, in file order (an organised PCD row by row): a NaN point is refused, never
dropped. A format without an intensity column (``xyz``) gives every point intensity 0, the bottom of
every model's scale; such a model then segments by geometry alone, which a model trained with
intensity does less well.

The intensity rule for PCD and PLY files (`INTENSITY_RULE`, defined once here):

- the intensity field is the first present of ``intensity``, ``i``, ``reflectance``, ``remission``,
  each also with CloudCompare's ``scalar_`` prefix, names compared without case;
- its scale's maximum is the caller's ``file_intensity_max`` (the service's ``intensity_max``) when
  given; else an integer field's largest value (uint8 255, uint16 65535, int16 32767, ...); else, for
  a float field, 1 when it is named ``reflectance`` or ``remission`` (KITTI's remission, 0-1) and 255
  otherwise (nuScenes' intensity, 0-255). A KITTI scan saved with its 0-1 remission in a field named
  ``intensity`` therefore needs ``file_intensity_max=1``.
- a file without such a field is refused (``missing_intensity``) unless ``allow_missing_intensity``,
  which gives every point intensity 0 as ``xyz`` does. x, y and z are the fields named so; float64
  and integer values are rounded to float32.

``file_intensity_max`` applies to the raw formats with intensity too, in place of their fixed scale.
A raw body that begins with a whole PCD or PLY header is refused (``wrong_format``, naming the format
to use): a float32 cloud cannot begin with that text unless its first dozen values are themselves
ASCII text, which no sensor writes.

A failure raises `PointsError`, whose ``code`` is stable and machine-readable (the service answers it
as a 422/413) and whose message names the file or body.

`encode_points` (bytes) and `write_points` (a file, written atomically) are the reader's inverse:
``x, y, z, intensity`` in the model's scale become a format's records, intensity converted to the
format's scale (dropped for ``xyz``; a float ``intensity`` field of 0-255 in PCD and PLY, which the
rule reads back), so ``decode_points(encode_points(p, f, m), f, m)`` gives ``p`` back (to float32
rounding of the scale factor). Layouts and scales stay defined once, here; labelled PCD/PLY
outputs are `seg3d.labelled`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from seg3d.io import write_atomic

__all__ = [
    "INTENSITY_FIELDS",
    "INTENSITY_RULE",
    "PointFormat",
    "PointsError",
    "check_points",
    "decode_points",
    "encode_points",
    "file_intensity_scale",
    "intensity_field",
    "points_from_fields",
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
    self_describing: bool = False


class PointFormat(str, Enum):
    """A point file's format: a raw layout (little-endian float32 records whose first four values are
    x, y, z, intensity) or a self-describing file whose header names its fields (PCD, PLY)."""

    NUSCENES = "nuscenes"
    KITTI = "kitti"
    XYZI = "xyzi"
    XYZ = "xyz"
    PCD = "pcd"
    PLY = "ply"

    def __str__(self) -> str:  # the name users type (argparse choices, messages)
        return self.value

    @classmethod
    def raw(cls) -> tuple[PointFormat, ...]:
        """The raw layouts (fixed float32 columns), e.g. for a tensor protocol's rows."""
        return tuple(f for f in cls if not f.self_describing)

    @classmethod
    def for_path(cls, path: str | Path) -> PointFormat | None:
        """The format a file's name implies: ``*.pcd`` PCD, ``*.ply`` PLY, ``*.pcd.bin`` nuScenes,
        other ``*.bin`` KITTI; None for any other name (the caller must say)."""
        name = Path(path).name.lower()
        for suffix, fmt in (
            (".pcd.bin", cls.NUSCENES),
            (".bin", cls.KITTI),
            (".pcd", cls.PCD),
            (".ply", cls.PLY),
        ):
            if name.endswith(suffix):
                return fmt
        return None

    @property
    def self_describing(self) -> bool:
        """True for PCD and PLY: a header names the fields, their types and the point count."""
        return _LAYOUTS[self].self_describing

    @property
    def columns(self) -> int:
        """float32 values per point of a raw layout; 0 for a self-describing file (`self_describing`)."""
        return _LAYOUTS[self].columns

    @property
    def intensity_max(self) -> float | None:
        """Maximum of the format's intensity scale; None when it is the model's own, or (PCD, PLY)
        set per file by the intensity rule (`file_intensity_scale`)."""
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
    PointFormat.PCD: _Layout(
        0,
        None,
        "a PCD file (DATA ascii, binary or binary_compressed) with fields x, y, z and an intensity "
        "field (see the intensity rule)",
        self_describing=True,
    ),
    PointFormat.PLY: _Layout(
        0,
        None,
        "a PLY file (ascii, binary little or big endian) whose vertex element has x, y, z and an "
        "intensity property (see the intensity rule)",
        self_describing=True,
    ),
}

#: Intensity field names of PCD/PLY files, in order of preference; each also with the ``scalar_``
#: prefix CloudCompare gives its scalar fields; compared without case.
INTENSITY_FIELDS = ("intensity", "i", "reflectance", "remission")
#: Float intensity fields with these names are 0-1 (KITTI remission); other float ones 0-255.
_UNIT_SCALE_FIELDS = ("reflectance", "remission")

#: The intensity rule in words, for help texts, the service's API description and error messages.
INTENSITY_RULE = (
    "PCD/PLY intensity: the first field named intensity, i, reflectance or remission (also with a "
    "scalar_ prefix; any case); scale maximum: intensity_max if given, else an integer field's type "
    "maximum (uint8 255, uint16 65535, ...), else 1 for a float reflectance/remission and 255 for "
    "other float fields; no intensity field is an error (missing_intensity) unless missing intensity "
    "is allowed, then intensity is 0"
)


class PointsError(ValueError):
    """A cloud that cannot be used; ``code`` says why, the message names the source and what is wrong.

    Codes: ``unknown_format``, ``bad_length``, ``too_many_points``, ``non_finite``,
    ``intensity_overflow``, ``bad_shape``, ``invalid_option`` (a bad ``file_intensity_max``),
    ``wrong_format`` (a PCD/PLY file sent as a raw format); for PCD/PLY files ``bad_header``,
    ``unknown_field_type``, ``truncated``, ``bad_count``, ``bad_data``, ``missing_field`` (no x, y,
    z or no PLY vertex element), ``missing_intensity``, ``list_property``, ``out_of_range`` (a
    float64 coordinate beyond float32)."""

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


def _point_format(fmt: PointFormat | str) -> PointFormat:
    try:
        return PointFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in PointFormat)
        raise PointsError("unknown_format", f"unknown point format {fmt!r}; use one of {known}") from None


def intensity_field(names: Sequence[str]) -> str | None:
    """The intensity field among a file's field names by the intensity rule (module docstring):
    the first of `INTENSITY_FIELDS` present, unprefixed before ``scalar_``, case ignored."""
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(name.lower(), name)
    for wanted in INTENSITY_FIELDS:
        for candidate in (wanted, f"scalar_{wanted}"):
            if candidate in by_lower:
                return by_lower[candidate]
    return None


def file_intensity_scale(name: str, dtype: npt.DTypeLike, file_intensity_max: float | None = None) -> float:
    """The maximum of an intensity field's scale by the intensity rule (module docstring)."""
    if file_intensity_max is not None:
        return file_intensity_max
    kind = np.dtype(dtype)
    if kind.kind in "ui":
        return float(np.iinfo(kind).max)
    bare = name.lower().removeprefix("scalar_")
    return 1.0 if bare in _UNIT_SCALE_FIELDS else 255.0


def _check_file_intensity_max(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise PointsError("invalid_option", f"intensity_max must be a finite number above 0, got {value!r}")


def points_from_fields(
    fields: Mapping[str, npt.NDArray[Any]],
    intensity_max: float,
    *,
    source: str = "body",
    file_intensity_max: float | None = None,
    allow_missing_intensity: bool = False,
    what: str = "file",
) -> npt.NDArray[np.float32]:
    """``(N, 4)`` float32 ``x, y, z, intensity`` (the model's scale) from a self-describing file's
    fields (`seg3d.pcd.read_fields`, `seg3d.ply.read_vertex`): x, y, z by name, intensity by the
    intensity rule, every point kept in order.

    Raises:
        PointsError: ``missing_field``, ``missing_intensity``, ``bad_header`` (x, y, z or the
            intensity field with COUNT > 1), ``non_finite``, ``out_of_range``, ``intensity_overflow``.
    """
    _check_file_intensity_max(file_intensity_max)
    missing = [axis for axis in "xyz" if axis not in fields]
    if missing:
        have = ", ".join(fields) or "none"
        raise PointsError(
            "missing_field", f"{source}: {what} has no {', '.join(missing)} field (fields: {have})"
        )
    chosen = intensity_field(list(fields))
    if chosen is None and not allow_missing_intensity:
        raise PointsError(
            "missing_intensity",
            f"{source}: {what} has no intensity field (fields: {', '.join(fields)}); rename the field, or "
            f"allow a missing intensity to read intensity 0. {INTENSITY_RULE}",
        )
    used = ["x", "y", "z"] + ([chosen] if chosen is not None else [])
    for name in used:
        if fields[name].ndim != 1:
            raise PointsError(
                "bad_header",
                f"{source}: {what} field {name!r} has {fields[name].shape[1]} values per point; "
                "x, y, z and the intensity field need one",
            )
    count = fields["x"].shape[0]
    points = np.zeros((count, 4), dtype=np.float32)
    for column, name in enumerate(used):
        values = fields[name]
        if values.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                described = _describe_rows(bad, count, f"have a NaN or Inf {name}")
                raise PointsError("non_finite", f"{source}: {described}")
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes Inf, refused next
            points[:, column] = values
    bad = _non_finite_rows(points)
    if bad.size:
        described = _describe_rows(bad, count, "have a float64 value beyond float32's range")
        raise PointsError("out_of_range", f"{source}: {described}")
    if chosen is not None:
        source_max = file_intensity_scale(chosen, fields[chosen].dtype, file_intensity_max)
        _scale_intensity(points, source_max, intensity_max, f"{what} field {chosen!r}", source)
    return points


def _scale_intensity(
    points: npt.NDArray[np.float32], source_max: float, intensity_max: float, scale: str, source: str
) -> None:
    """Intensity (column 3) from the file's scale to the model's, in place; an overflow is refused."""
    points[:, 3] = to_model_intensity(points[:, 3], source_max, intensity_max)
    bad = _non_finite_rows(points)
    if bad.size:
        what = (
            f"have an intensity that overflows float32 when scaled from the {scale} scale "
            f"(max {source_max:g}) to the model's (max {intensity_max:g})"
        )
        raise PointsError("intensity_overflow", f"{source}: {_describe_rows(bad, points.shape[0], what)}")


def _file_header(data: bytes) -> PointFormat | None:
    """PCD or PLY when ``data`` begins with a whole header of that format (within 64 KiB)."""
    from seg3d import pcd, ply  # they import this module

    head = data[: 1 << 16]
    for fmt, parse in ((PointFormat.PLY, ply.parse_header), (PointFormat.PCD, pcd.parse_header)):
        try:
            parse(head, "body")
        except PointsError:
            continue
        return fmt
    return None


def decode_points(
    data: bytes,
    fmt: PointFormat | str,
    intensity_max: float,
    *,
    source: str = "body",
    max_points: int | None = None,
    file_intensity_max: float | None = None,
    allow_missing_intensity: bool = False,
) -> npt.NDArray[np.float32]:
    """``(N, 4)`` float32 ``x, y, z, intensity``, intensity in the scale whose maximum is
    ``intensity_max`` (the model's), from the raw bytes of a point file, every point in file order.

    Args:
        data: the file's bytes.
        fmt: the format (`PointFormat` or its name).
        intensity_max: the model's intensity maximum (``ModelConfig.input.intensity_max``).
        source: what the bytes are, for messages (a path, ``"body"``).
        max_points: refuse larger clouds (``too_many_points``) before converting anything.
        file_intensity_max: the maximum of the file's intensity scale, in place of the format's
            (raw formats) or the intensity rule's (PCD, PLY); not for ``xyz``.
        allow_missing_intensity: a PCD/PLY file without an intensity field reads intensity 0
            instead of being refused (``missing_intensity``).

    Raises:
        PointsError: see the module docstring.
    """
    fmt = _point_format(fmt)
    _check_file_intensity_max(file_intensity_max)
    if fmt.self_describing:
        from seg3d import pcd, ply  # they import this module

        if fmt is PointFormat.PCD:
            fields = pcd.read_fields(data, source=source, max_points=max_points)
        else:
            fields = ply.read_vertex(data, source=source, max_points=max_points)
        return points_from_fields(
            fields,
            intensity_max,
            source=source,
            file_intensity_max=file_intensity_max,
            allow_missing_intensity=allow_missing_intensity,
            what=f"{fmt.value.upper()} file",
        )
    if file_intensity_max is not None and not fmt.has_intensity:
        raise PointsError(
            "invalid_option", f"{fmt.value} has no intensity column; intensity_max does not apply"
        )
    if data[:1] in b"#VFSTCWHPDp" and (found := _file_header(data)) is not None:
        raise PointsError(
            "wrong_format",
            f"{source} is a {found.value.upper()} file (it begins with a {found.value.upper()} header), "
            f"not {fmt.value} records; send it with format={found.value}",
        )
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
    source_max = file_intensity_max if file_intensity_max is not None else fmt.intensity_max
    if source_max is not None:
        scale = fmt.value if file_intensity_max is None else "given intensity_max"
        _scale_intensity(points, source_max, intensity_max, scale, source)
    return points


def read_points(
    path: str | Path,
    fmt: PointFormat | str,
    intensity_max: float,
    *,
    max_points: int | None = None,
    file_intensity_max: float | None = None,
    allow_missing_intensity: bool = False,
) -> npt.NDArray[np.float32]:
    """`decode_points` of a point file; errors name the file.

    nuScenes ``.pcd.bin`` files have 5 columns (x, y, z, intensity 0–255, ring); KITTI and
    SemanticKITTI ``.bin`` files have 4 (x, y, z, remission 0–1); PCD and PLY files say what they
    hold (`PointFormat.for_path` guesses the format from the name).

    Raises:
        FileNotFoundError: the file does not exist.
        PointsError: see `decode_points`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    return decode_points(
        path.read_bytes(),
        fmt,
        intensity_max,
        source=str(path),
        max_points=max_points,
        file_intensity_max=file_intensity_max,
        allow_missing_intensity=allow_missing_intensity,
    )


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

    PCD and PLY are written binary (PCD ``DATA binary``, PLY ``binary_little_endian``) with float32
    fields ``x y z intensity``, intensity in 0-255 (the intensity rule's scale for a float field of
    that name); labelled files are `seg3d.labelled`.

    Raises:
        PointsError: ``unknown_format``; ``bad_shape`` (wrong rank, columns or ring length, or a ring
            given for a format without one); ``non_finite`` / ``intensity_overflow`` (a value the
            reader would refuse), so what is written always reads back.
    """
    fmt = _point_format(fmt)
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
    if fmt.self_describing:
        if ring is not None:
            raise PointsError(
                "bad_shape", f"a ring column exists only in the nuscenes format, not {fmt.value}"
            )
        return _encode_file(array, fmt, intensity_max)
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


def _encode_file(points: npt.NDArray[np.float32], fmt: PointFormat, intensity_max: float) -> bytes:
    from seg3d import pcd, ply  # they import this module

    scale = file_intensity_scale("intensity", np.float32)
    intensity = to_model_intensity(points[:, 3].copy(), intensity_max, scale)
    bad = np.flatnonzero(~np.isfinite(intensity))
    if bad.size:
        what = (
            f"have an intensity that overflows float32 when scaled from the model's scale "
            f"(max {intensity_max:g}) to the {fmt.value} intensity field's (max {scale:g})"
        )
        raise PointsError("intensity_overflow", _describe_rows(bad, points.shape[0], what))
    fields = [("x", points[:, 0]), ("y", points[:, 1]), ("z", points[:, 2]), ("intensity", intensity)]
    if fmt is PointFormat.PCD:
        return pcd.encode_pcd(fields, "binary")
    return ply.encode_ply(fields, "binary_little_endian")
