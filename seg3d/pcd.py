"""PCD files (the Point Cloud Library's format): header, the three data encodings, and LZF.

Read with `read_fields` (one array per field, in the file's point order), written with `encode_pcd`.
What the fields mean — which is x, y, z and intensity, and intensity's scale — is decided by
`seg3d.points` (the one point reader), not here.

The header, from the format's description (pointclouds.org, "The PCD (Point Cloud Data) file
format"), is ASCII text lines ending at the ``DATA`` line; ``#`` lines are comments:

- ``VERSION`` 0.5, 0.6 or 0.7 (``.7`` too); optional.
- ``FIELDS`` names; ``SIZE`` bytes of each; ``TYPE`` ``F`` (float: 4, 8 bytes), ``U`` / ``I``
  (unsigned / signed integer: 1, 2, 4, 8 bytes); ``COUNT`` elements per field (default 1). A field
  with COUNT > 1 reads as an ``(N, COUNT)`` array; the ``_`` fields PCL writes as padding are read
  past and not returned.
- ``WIDTH``, ``HEIGHT`` (default 1; an organised cloud has HEIGHT > 1 and is read row by row, every
  point kept in order), ``POINTS`` (default WIDTH × HEIGHT, which it must equal).
- ``VIEWPOINT``: 7 numbers (translation, quaternion), checked and not applied: the points are taken
  in the frame they are stored in.
- ``DATA`` ``ascii`` (one point per line, whitespace-separated values), ``binary`` (packed
  little-endian records, fields in order) or ``binary_compressed`` (two little-endian uint32, the
  compressed and the uncompressed size, then an LZF stream whose uncompressed bytes hold every
  point's first field, then every point's second field, and so on, leaving out the ``_`` padding
  as PCL does; a field of COUNT k holds each point's k values together).

Every keyword at most once; FIELDS, SIZE, TYPE, WIDTH and DATA required. The data must hold
exactly POINTS points: fewer bytes is ``truncated``, more is ``bad_count`` (a POINTS too small would
otherwise drop points silently). Errors are `seg3d.points.PointsError` naming the source and what is
wrong.

LZF (`lzf_decompress`, `lzf_compress`) is liblzf's format, written here from its description: a
stream of chunks, each led by a control byte ``c``; ``c < 32``: ``c + 1`` literal bytes follow;
else a back-reference of length ``(c >> 5) + 2`` (when ``c >> 5`` is 7, a further byte adds to
it) starting ``((c & 31) << 8) + next byte + 1`` bytes back in the output, which may overlap the
bytes it produces.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seg3d.points import PointsError

__all__ = [
    "PcdEncoding",
    "PcdField",
    "PcdHeader",
    "encode_pcd",
    "lzf_compress",
    "lzf_decompress",
    "parse_header",
    "read_fields",
]

PcdEncoding = Literal["ascii", "binary", "binary_compressed"]
_ENCODINGS: tuple[str, ...] = ("ascii", "binary", "binary_compressed")
_VERSIONS = {"0.5", ".5", "0.6", ".6", "0.7", ".7"}
_KEYWORDS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
# (TYPE, SIZE) -> little-endian numpy type
_DTYPES: dict[tuple[str, int], str] = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("U", 1): "u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
    ("I", 1): "i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
}
_MAX_LINE = 1 << 16  # a header line longer than this is not a header
_MAX_COUNT = 1 << 16  # elements of one field per point (a 33-bin FPFH histogram is a large one)


@dataclass(frozen=True)
class PcdField:
    name: str
    type: str  # "F", "U" or "I"
    size: int  # bytes of one element
    count: int  # elements per point

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_DTYPES[(self.type, self.size)])

    @property
    def nbytes(self) -> int:
        """Bytes per point."""
        return self.size * self.count

    @property
    def padding(self) -> bool:
        return self.name == "_"


@dataclass(frozen=True)
class PcdHeader:
    fields: tuple[PcdField, ...]
    width: int
    height: int
    points: int
    encoding: str
    data_start: int  # byte offset of the data, just after the DATA line
    version: str | None = None
    viewpoint: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)

    @property
    def record_size(self) -> int:
        return sum(f.nbytes for f in self.fields)


def _count(source: str, keyword: str, text: str) -> int:
    if not text.isdigit():
        raise PointsError(
            "bad_header", f"{source}: PCD {keyword} must be a non-negative integer, got {text!r}"
        )
    return int(text)


def parse_header(data: bytes, source: str = "body") -> PcdHeader:
    """The header of a PCD file, checked; the data's offset in ``data_start``.

    Raises:
        PointsError: ``bad_header`` (not a PCD header, a missing, repeated, unknown or inconsistent
            keyword), ``unknown_field_type`` (a TYPE/SIZE pair other than F4, F8, U1-U8, I1-I8).
    """
    found: dict[str, list[str]] = {}
    pos, line_no = 0, 0
    data_start = -1
    while pos < len(data):
        line_no += 1
        end = data.find(b"\n", pos, pos + _MAX_LINE)
        if end < 0:
            if len(data) - pos >= _MAX_LINE:
                raise PointsError("bad_header", f"{source}: PCD header line {line_no} is not a text line")
            end = len(data)
        raw = data[pos:end]
        pos = end + 1
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise PointsError(
                "bad_header", f"{source}: PCD header line {line_no} is not ASCII text (not a PCD header?)"
            ) from None
        if not line or line.startswith("#"):
            continue
        keyword, *values = line.split()
        if keyword not in _KEYWORDS:
            raise PointsError(
                "bad_header",
                f"{source}: PCD header line {line_no} starts with {keyword[:20]!r}, not one of "
                f"{', '.join(_KEYWORDS)} (not a PCD header?)",
            )
        if keyword in found:
            raise PointsError("bad_header", f"{source}: PCD header repeats {keyword} (line {line_no})")
        found[keyword] = values
        if keyword == "DATA":
            data_start = min(pos, len(data))
            break
    if data_start < 0:
        raise PointsError("bad_header", f"{source}: PCD header has no DATA line (empty or truncated header)")
    for keyword in ("FIELDS", "SIZE", "TYPE", "WIDTH"):
        if keyword not in found:
            raise PointsError("bad_header", f"{source}: PCD header has no {keyword} line")

    version = found.get("VERSION")
    if version is not None and (len(version) != 1 or version[0] not in _VERSIONS):
        raise PointsError("bad_header", f"{source}: PCD VERSION {' '.join(version)!r} is not 0.5, 0.6 or 0.7")
    names = found["FIELDS"]
    if not names:
        raise PointsError("bad_header", f"{source}: PCD FIELDS names no field")
    counts = found.get("COUNT", ["1"] * len(names))
    for keyword, values in (("SIZE", found["SIZE"]), ("TYPE", found["TYPE"]), ("COUNT", counts)):
        if len(values) != len(names):
            raise PointsError(
                "bad_header",
                f"{source}: PCD {keyword} has {len(values)} values for {len(names)} FIELDS "
                f"({' '.join(names)[:200]})",
            )
    fields = []
    seen: set[str] = set()
    for name, size_text, kind, count_text in zip(names, found["SIZE"], found["TYPE"], counts, strict=True):
        size, count = _count(source, "SIZE", size_text), _count(source, "COUNT", count_text)
        if (kind, size) not in _DTYPES:
            raise PointsError(
                "unknown_field_type",
                f"{source}: PCD field {name!r} has TYPE {kind[:8]!r} SIZE {size}; "
                "known: F 4/8, U 1/2/4/8, I 1/2/4/8",
            )
        if not 1 <= count <= _MAX_COUNT:
            raise PointsError(
                "bad_header", f"{source}: PCD field {name!r} has COUNT {count}; it must be 1 to {_MAX_COUNT}"
            )
        if name != "_" and name in seen:
            raise PointsError("bad_header", f"{source}: PCD field {name!r} appears twice in FIELDS")
        seen.add(name)
        fields.append(PcdField(name, kind, size, count))

    width = _one(found, "WIDTH", source)
    height = _one(found, "HEIGHT", source) if "HEIGHT" in found else 1
    points = _one(found, "POINTS", source) if "POINTS" in found else width * height
    if points != width * height:
        raise PointsError(
            "bad_header", f"{source}: PCD POINTS {points} is not WIDTH × HEIGHT = {width} × {height}"
        )
    viewpoint: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    if "VIEWPOINT" in found:
        try:
            viewpoint = tuple(float(v) for v in found["VIEWPOINT"])
        except ValueError:
            viewpoint = ()
        if len(viewpoint) != 7 or not all(math.isfinite(v) for v in viewpoint):
            raise PointsError(
                "bad_header",
                f"{source}: PCD VIEWPOINT needs 7 finite numbers (tx ty tz qw qx qy qz), "
                f"got {' '.join(found['VIEWPOINT'])[:80]!r}",
            )
    encoding = found["DATA"]
    if len(encoding) != 1 or encoding[0] not in _ENCODINGS:
        raise PointsError(
            "bad_header",
            f"{source}: PCD DATA {' '.join(encoding)[:40]!r} is not one of {', '.join(_ENCODINGS)}",
        )
    return PcdHeader(
        tuple(fields),
        width,
        height,
        points,
        encoding[0],
        data_start,
        version[0] if version else None,
        viewpoint,
    )


def _one(found: dict[str, list[str]], keyword: str, source: str) -> int:
    values = found[keyword]
    if len(values) != 1:
        raise PointsError("bad_header", f"{source}: PCD {keyword} needs one value, got {len(values)}")
    return _count(source, keyword, values[0])


def read_fields(
    data: bytes, *, source: str = "body", max_points: int | None = None
) -> dict[str, npt.NDArray[Any]]:
    """Every field of a PCD file but the ``_`` padding, by name in FIELDS order: ``(N,)`` arrays of
    the field's type (native byte order), ``(N, COUNT)`` for COUNT > 1, points in file order.

    Args:
        data: the file's bytes.
        source: what the bytes are, for messages.
        max_points: refuse a larger POINTS (``too_many_points``) before reading the data.

    Raises:
        PointsError: see `parse_header`; ``too_many_points``; ``truncated`` (less data than the
            header declares); ``bad_count`` (more data, or a different number of ascii rows or
            values per row); ``bad_data`` (an ascii value that is not a number or does not fit its
            field's type, a corrupt LZF stream).
    """
    header = parse_header(data, source)
    n = header.points
    if max_points is not None and n > max_points:
        raise PointsError("too_many_points", f"{source}: {n} points exceed the limit of {max_points}")
    body = memoryview(data)[header.data_start :]
    if header.encoding == "ascii":
        columns = _read_ascii(bytes(body), n, header, source)
    elif header.encoding == "binary":
        columns = _read_binary(body, n, header, source)
    else:
        columns = _read_compressed(body, n, header, source)
    return {f.name: c for f, c in zip(header.fields, columns, strict=True) if not f.padding}


def _read_binary(body: memoryview, n: int, header: PcdHeader, source: str) -> list[npt.NDArray[Any]]:
    need = n * header.record_size
    _check_size(len(body), need, n, header, source, "binary")
    offsets = np.cumsum([0] + [f.nbytes for f in header.fields])
    dtype = np.dtype(
        {
            "names": [f"f{i}" for i in range(len(header.fields))],
            "formats": [(f.dtype, (f.count,)) if f.count > 1 else f.dtype for f in header.fields],
            "offsets": [int(o) for o in offsets[:-1]],
            "itemsize": header.record_size,
        }
    )
    records = np.frombuffer(body, dtype=dtype, count=n) if n else np.zeros(0, dtype)
    return [_native(records[f"f{i}"]) for i in range(len(header.fields))]


def _read_compressed(body: memoryview, n: int, header: PcdHeader, source: str) -> list[npt.NDArray[Any]]:
    # As PCL writes it: one block per field but the `_` padding, which the compressed data leaves out;
    # a block holds every point's values of the field in turn (COUNT of them per point).
    stored = [f for f in header.fields if not f.padding]
    need = n * sum(f.nbytes for f in stored)
    if n == 0 and len(body) == 0:  # some writers stop after the header of an empty cloud
        body = memoryview(bytes(8))
    if len(body) < 8:
        raise PointsError(
            "truncated",
            f"{source}: PCD binary_compressed data has {len(body)} bytes, less than its 8-byte sizes",
        )
    compressed, uncompressed = struct.unpack("<II", body[:8])
    if uncompressed != need:
        raise PointsError(
            "bad_count",
            f"{source}: PCD binary_compressed holds {uncompressed} uncompressed bytes, but POINTS {n} "
            f"of {need // n if n else 0} bytes (padding left out) are {need}",
        )
    if 8 + compressed > len(body):
        raise PointsError(
            "truncated",
            f"{source}: PCD binary_compressed declares {compressed} compressed bytes, "
            f"{len(body) - 8} follow (truncated file?)",
        )
    if 8 + compressed < len(body):
        raise PointsError(
            "bad_count",
            f"{source}: {len(body) - 8 - compressed} bytes follow the PCD binary_compressed data",
        )
    try:
        raw = lzf_decompress(bytes(body[8 : 8 + compressed]), need)
    except ValueError as exc:
        raise PointsError("bad_data", f"{source}: PCD binary_compressed data is corrupt: {exc}") from None
    columns, start = [], 0
    for f in header.fields:
        if f.padding:
            columns.append(np.zeros(0, np.uint8))  # not returned by read_fields
            continue
        values = np.frombuffer(raw, dtype=f.dtype, count=n * f.count, offset=start)
        columns.append(_native(values.reshape(n, f.count) if f.count > 1 else values))
        start += n * f.nbytes
    return columns


def _check_size(have: int, need: int, n: int, header: PcdHeader, source: str, what: str) -> None:
    if have < need:
        raise PointsError(
            "truncated",
            f"{source}: PCD {what} data has {have} bytes, POINTS {n} of {header.record_size} bytes "
            f"need {need} (truncated file?)",
        )
    if have > need:
        raise PointsError(
            "bad_count",
            f"{source}: PCD {what} data has {have} bytes, {have - need} more than POINTS {n} of "
            f"{header.record_size} bytes (POINTS too small?)",
        )


def _native(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A contiguous, writable copy in native byte order."""
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))


def _read_ascii(text: bytes, n: int, header: PcdHeader, source: str) -> list[npt.NDArray[Any]]:
    if n == 0:
        if text.strip():
            raise PointsError("bad_count", f"{source}: PCD DATA ascii has point lines, POINTS says 0")
        return [
            np.zeros((0, f.count) if f.count > 1 else 0, f.dtype.newbyteorder("=")) for f in header.fields
        ]
    width = sum(f.count for f in header.fields)
    table = parse_ascii_rows(text, width, source, "PCD DATA ascii")
    if table.shape[0] != n:
        raise PointsError(
            "bad_count", f"{source}: PCD DATA ascii has {table.shape[0]} point lines, POINTS says {n}"
        )
    columns, start = [], 0
    for f in header.fields:
        block = table[:, start : start + f.count]
        start += f.count
        columns.append(to_type(block if f.count > 1 else block[:, 0], f.dtype, f.name, source))
    return columns


def parse_ascii_rows(text: bytes, width: int, source: str, what: str) -> npt.NDArray[np.float64]:
    """``(rows, width)`` float64 of whitespace-separated numbers, one row per non-blank line (shared
    with `seg3d.ply`). A line with another number of values, or a value that is not a number, is
    ``bad_count`` / ``bad_data`` with the line's number."""
    if not text.strip():
        return np.zeros((0, width))
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PointsError(
            "bad_data", f"{source}: {what} has a non-ASCII byte at offset {exc.start}"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns instead of failing on some malformed input
            table = np.loadtxt(io.StringIO(decoded), dtype=np.float64, comments=None, ndmin=2)
    except (ValueError, UserWarning) as exc:
        raise PointsError("bad_data", f"{source}: {what}: {exc}") from None
    if table.shape[1] != width:
        raise PointsError(
            "bad_count", f"{source}: {what} has {table.shape[1]} values per line, the header declares {width}"
        )
    return table


def to_type(
    values: npt.NDArray[np.float64], dtype: np.dtype[Any], name: str, source: str
) -> npt.NDArray[Any]:
    """Ascii values as the declared type: an integer field's values must be whole and in its range
    (``bad_data`` otherwise, not a silent wrap); a float field's are rounded to it."""
    dtype = dtype.newbyteorder("=")
    if dtype.kind == "f":
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes Inf: refused by the reader
            return values.astype(dtype)
    info = np.iinfo(dtype)
    bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < info.min) | (values > info.max)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise PointsError(
            "bad_data",
            f"{source}: field {name!r} ({dtype.name}) has value {float(values[tuple(first)]):g} in data row "
            f"{int(first[0])}, not a whole number in {info.min}..{info.max}",
        )
    return values.astype(dtype)


def lzf_decompress(data: bytes, size: int) -> bytes:
    """The ``size`` bytes an LZF stream decodes to.

    Raises:
        ValueError: the stream reads past its end, refers back before the output's start, or
            decodes to another size.
    """
    out = bytearray()
    i, end = 0, len(data)
    while i < end:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # literal run
            run = ctrl + 1
            if i + run > end:
                raise ValueError(f"a literal run of {run} bytes passes the end of the stream")
            out += data[i : i + run]
            i += run
        else:  # back-reference
            length = ctrl >> 5
            if length == 7:
                if i >= end:
                    raise ValueError("a back-reference's length passes the end of the stream")
                length += data[i]
                i += 1
            if i >= end:
                raise ValueError("a back-reference's offset passes the end of the stream")
            back = ((ctrl & 31) << 8) + data[i] + 1
            i += 1
            length += 2
            if back > len(out):
                raise ValueError(f"a back-reference reaches {back} bytes back, {len(out)} are decoded")
            start = len(out) - back
            if back >= length:
                out += out[start : start + length]
            else:  # overlapping: the copy repeats the last `back` bytes
                out += (out[start:] * (length // back + 1))[:length]
        if len(out) > size:
            raise ValueError(f"the stream decodes to more than the declared {size} bytes")
    if len(out) != size:
        raise ValueError(f"the stream decodes to {len(out)} bytes, {size} declared")
    return bytes(out)


def lzf_compress(data: bytes) -> bytes:
    """An LZF stream of ``data`` (greedy, one candidate per 3-byte prefix). Pure Python: meant for
    the modest files `encode_pcd` writes as ``binary_compressed`` (about 1 MB/s), not for bulk."""
    out = bytearray()
    table: dict[bytes, int] = {}
    i, literal, n = 0, 0, len(data)

    def flush(stop: int) -> None:
        for start in range(literal, stop, 32):
            chunk = data[start : min(start + 32, stop)]
            out.append(len(chunk) - 1)
            out.extend(chunk)

    while i + 2 < n:
        key = data[i : i + 3]
        ref = table.get(key)
        table[key] = i
        if ref is not None and i - ref <= 8192:
            length, most = 3, min(264, n - i)
            while length < most and data[ref + length] == data[i + length]:
                length += 1
            flush(i)
            code, back = length - 2, i - ref - 1
            if code < 7:
                out.append((code << 5) | (back >> 8))
            else:
                out.append((7 << 5) | (back >> 8))
                out.append(code - 7)
            out.append(back & 0xFF)
            i += length
            literal = i
        else:
            i += 1
    flush(n)
    return bytes(out)


def encode_pcd(
    fields: Sequence[tuple[str, npt.ArrayLike]],
    encoding: PcdEncoding = "binary",
    *,
    comments: Sequence[str] = (),
) -> bytes:
    """A PCD 0.7 file of ``N`` points (WIDTH N, HEIGHT 1) with the given ``(name, values)`` fields
    in order; each field's TYPE and SIZE are its values' numpy type (float32 → F 4, uint8 → U 1, ...).

    Raises:
        ValueError: a field whose values are not ``(N,)`` of a PCD type, or a name with whitespace.
    """
    arrays = [(name, np.asarray(values)) for name, values in fields]
    if not arrays:
        raise ValueError("a PCD file needs at least one field")
    n = arrays[0][1].shape[0] if arrays[0][1].ndim else 0
    types = []
    for name, values in arrays:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"PCD field name {name!r} must be one word")
        if values.ndim != 1 or values.shape[0] != n:
            raise ValueError(f"PCD field {name!r} must be ({n},), got shape {values.shape}")
        kind = {"f": "F", "u": "U", "i": "I"}.get(values.dtype.kind, "")
        if (kind, values.dtype.itemsize) not in _DTYPES:
            raise ValueError(f"PCD field {name!r}: numpy type {values.dtype} has no PCD TYPE")
        types.append((kind, values.dtype.itemsize))
    lines = ["# .PCD v0.7 - Point Cloud Data file format", *(f"# {c}" for c in comments)]
    lines += [
        "VERSION 0.7",
        "FIELDS " + " ".join(name for name, _ in arrays),
        "SIZE " + " ".join(str(size) for _, size in types),
        "TYPE " + " ".join(kind for kind, _ in types),
        "COUNT " + " ".join("1" for _ in arrays),
        f"WIDTH {n}",
        "HEIGHT 1",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {n}",
        f"DATA {encoding}",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii")
    little = [
        values.astype(np.dtype(_DTYPES[t]), copy=False) for (_, values), t in zip(arrays, types, strict=True)
    ]
    if encoding == "ascii":
        return header + format_ascii_rows(little)
    if encoding == "binary":
        records = np.empty(n, dtype=[(f"f{i}", v.dtype) for i, v in enumerate(little)])
        for i, values in enumerate(little):
            records[f"f{i}"] = values
        return header + records.tobytes()
    if encoding == "binary_compressed":
        raw = b"".join(values.tobytes() for values in little)
        packed = lzf_compress(raw)
        return header + struct.pack("<II", len(packed), len(raw)) + packed
    raise ValueError(f"unknown PCD encoding {encoding!r}; use one of {', '.join(_ENCODINGS)}")


def format_ascii_rows(columns: Sequence[npt.NDArray[Any]]) -> bytes:
    """One line per point, the columns' values separated by spaces: floats with enough digits to
    read back to the same value (9 for float32, 17 for float64), integers as integers (shared with
    `seg3d.ply`)."""
    formats = []
    for values in columns:
        if values.dtype.kind == "f":
            formats.append("%.9g" if values.dtype.itemsize == 4 else "%.17g")
        else:
            formats.append("%d")
    if not columns or columns[0].shape[0] == 0:
        return b""
    table = np.empty((columns[0].shape[0], len(columns)), dtype=object)
    for i, values in enumerate(columns):
        table[:, i] = values.tolist()  # Python numbers: exact for every PCD/PLY type
    out = io.StringIO()
    np.savetxt(out, table, fmt=formats, delimiter=" ")
    return out.getvalue().encode("ascii")
