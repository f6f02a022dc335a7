"""PLY files (the Stanford polygon format): header, ascii and binary data, the ``vertex`` element.

Read with `read_vertex` (one array per vertex property, in vertex order), written with `encode_ply`.
What the properties mean — x, y, z, which is intensity and its scale — is decided by
`seg3d.points` (the one point reader), not here.

The header, from the format's description (Greg Turk's "The PLY Polygon File Format"), is ASCII
lines: ``ply``; ``format ascii 1.0`` | ``binary_little_endian 1.0`` | ``binary_big_endian 1.0``;
then ``element NAME COUNT`` lines, each followed by its ``property TYPE NAME`` or
``property list COUNT_TYPE ITEM_TYPE NAME`` lines; ``comment`` and ``obj_info`` lines anywhere;
``end_header``. Scalar types and their aliases: char/int8, uchar/uint8, short/int16,
ushort/uint16, int/int32, uint/uint32, float/float32, double/float64. The data holds the elements
in header order, each as COUNT items: an ascii item is one line of values; a binary item its
properties packed in order (a list as its count, then its items).

The ``vertex`` element must exist, with scalar properties only (``list_property`` otherwise).
Elements before it (rare) are read past, list properties included; elements after it (faces,
edges) are not read. When ``vertex`` is the last element, nothing but whitespace (ascii) or nothing
at all (binary) may follow its data (``bad_count``: a vertex count too small would otherwise drop
points silently). Errors are `seg3d.points.PointsError` naming the source and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seg3d.pcd import format_ascii_rows, parse_ascii_rows, to_type
from seg3d.points import PointsError

__all__ = [
    "PlyElement",
    "PlyEncoding",
    "PlyHeader",
    "PlyProperty",
    "encode_ply",
    "parse_header",
    "read_vertex",
]

PlyEncoding = Literal["ascii", "binary_little_endian", "binary_big_endian"]
_ENCODINGS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
#: every PLY scalar type name → numpy type (without byte order)
TYPES: dict[str, str] = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_NAMES = {
    "i1": "char",
    "u1": "uchar",
    "i2": "short",
    "u2": "ushort",
    "i4": "int",
    "u4": "uint",
    "f4": "float",
    "f8": "double",
}
_MAX_HEADER = 1 << 20  # a header longer than this is not a header


@dataclass(frozen=True)
class PlyProperty:
    name: str
    type: str  # numpy type without byte order, e.g. "f4"
    count_type: str | None = None  # set for a list property: its count's type


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.count_type is not None for p in self.properties)


@dataclass(frozen=True)
class PlyHeader:
    encoding: str
    elements: tuple[PlyElement, ...]
    data_start: int
    comments: tuple[str, ...] = ()

    @property
    def byte_order(self) -> str:
        return _ENCODINGS[self.encoding]


def parse_header(data: bytes, source: str = "body") -> PlyHeader:
    """The header of a PLY file, checked; the data's offset in ``data_start``.

    Raises:
        PointsError: ``bad_header`` (no ``ply`` line, no or an unknown format, a malformed or
            misplaced line, a repeated element or property, no ``end_header``),
            ``unknown_field_type`` (a property type that is not a PLY type).
    """
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise PointsError("bad_header", f"{source}: a PLY file starts with a 'ply' line (not a PLY file?)")
    stop = data.find(b"end_header", 0, _MAX_HEADER)
    while stop > 0 and data[stop - 1 : stop] != b"\n":  # the word inside a comment: look further
        stop = data.find(b"end_header", stop + 1, _MAX_HEADER)
    if stop < 0:
        raise PointsError("bad_header", f"{source}: PLY header has no end_header line (truncated header?)")
    line_end = data.find(b"\n", stop)
    if line_end < 0 or data[stop:line_end].strip() != b"end_header":
        raise PointsError(
            "bad_header", f"{source}: PLY end_header must be a line of its own, ending in a newline"
        )
    try:
        text = data[:stop].decode("ascii")
    except UnicodeDecodeError as exc:
        raise PointsError(
            "bad_header", f"{source}: PLY header has a non-ASCII byte at offset {exc.start}"
        ) from None
    encoding: str | None = None
    elements: list[PlyElement] = []
    properties: list[PlyProperty] = []
    comments: list[str] = []

    def close() -> None:
        if elements:
            last = elements[-1]
            elements[-1] = PlyElement(last.name, last.count, tuple(properties))
            properties.clear()

    for number, line in enumerate(text.split("\n")[1:], start=2):
        words = line.split()
        if not words:
            continue
        keyword = words[0]
        if keyword in ("comment", "obj_info"):
            comments.append(line.strip()[len(keyword) :].strip())
            continue
        if keyword == "format":
            if encoding is not None or elements:
                raise PointsError(
                    "bad_header", f"{source}: PLY format line {number} is repeated or misplaced"
                )
            if len(words) != 3 or words[1] not in _ENCODINGS or words[2] != "1.0":
                raise PointsError(
                    "bad_header",
                    f"{source}: PLY line {number} {line.strip()[:60]!r}: the format is 'format ENCODING 1.0' "
                    f"with ENCODING one of {', '.join(_ENCODINGS)}",
                )
            encoding = words[1]
        elif keyword == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise PointsError(
                    "bad_header",
                    f"{source}: PLY line {number} {line.strip()[:60]!r} is not 'element NAME COUNT'",
                )
            if any(e.name == words[1] for e in elements):
                raise PointsError("bad_header", f"{source}: PLY element {words[1]!r} is declared twice")
            close()
            elements.append(PlyElement(words[1], int(words[2]), ()))
        elif keyword == "property":
            if not elements:
                raise PointsError("bad_header", f"{source}: PLY property on line {number} before any element")
            prop = _property(words, number, line, source)
            if any(p.name == prop.name for p in properties):
                raise PointsError(
                    "bad_header",
                    f"{source}: PLY element {elements[-1].name!r} has property {prop.name!r} twice",
                )
            properties.append(prop)
        else:
            raise PointsError(
                "bad_header",
                f"{source}: PLY header line {number} starts with {keyword[:20]!r}, not format, element, "
                "property, comment or obj_info",
            )
    close()
    if encoding is None:
        raise PointsError("bad_header", f"{source}: PLY header has no format line")
    return PlyHeader(encoding, tuple(elements), line_end + 1, tuple(comments))


def _property(words: list[str], number: int, line: str, source: str) -> PlyProperty:
    if len(words) >= 2 and words[1] == "list":
        if len(words) != 5:
            raise PointsError(
                "bad_header",
                f"{source}: PLY line {number} {line.strip()[:60]!r} is not "
                "'property list COUNT_TYPE TYPE NAME'",
            )
        count_type, item_type, name = words[2], words[3], words[4]
        for t in (count_type, item_type):
            _type(t, name, source)
        if TYPES[count_type][0] == "f":
            raise PointsError(
                "unknown_field_type",
                f"{source}: PLY list {name!r} has a {count_type} count; it must be an integer type",
            )
        return PlyProperty(name, TYPES[item_type], TYPES[count_type])
    if len(words) != 3:
        raise PointsError(
            "bad_header", f"{source}: PLY line {number} {line.strip()[:60]!r} is not 'property TYPE NAME'"
        )
    _type(words[1], words[2], source)
    return PlyProperty(words[2], TYPES[words[1]])


def _type(name: str, prop: str, source: str) -> None:
    if name not in TYPES:
        raise PointsError(
            "unknown_field_type",
            f"{source}: PLY property {prop!r} has type {name[:20]!r}; known: {', '.join(TYPES)}",
        )


def read_vertex(
    data: bytes, *, source: str = "body", max_points: int | None = None
) -> dict[str, npt.NDArray[Any]]:
    """Every property of the ``vertex`` element by name, in header order: ``(N,)`` arrays of the
    property's type (native byte order), vertices in file order.

    Raises:
        PointsError: see `parse_header`; ``missing_field`` (no vertex element); ``list_property``
            (a list property in vertex); ``too_many_points``; ``truncated``; ``bad_count`` (data
            after the last element, or an ascii line with another number of values); ``bad_data``
            (an ascii value that is not a number or does not fit its type).
    """
    header = parse_header(data, source)
    index = next((i for i, e in enumerate(header.elements) if e.name == "vertex"), None)
    if index is None:
        names = ", ".join(e.name for e in header.elements) or "none"
        raise PointsError("missing_field", f"{source}: PLY file has no 'vertex' element (elements: {names})")
    vertex = header.elements[index]
    lists = [p.name for p in vertex.properties if p.count_type is not None]
    if lists:
        raise PointsError(
            "list_property",
            f"{source}: PLY vertex property {lists[0]!r} is a list; a point cloud's vertex properties "
            "must be scalars (x, y, z, intensity, ...)",
        )
    n = vertex.count
    if max_points is not None and n > max_points:
        raise PointsError("too_many_points", f"{source}: {n} points exceed the limit of {max_points}")
    last = index == len(header.elements) - 1
    if header.encoding == "ascii":
        return _read_ascii(data, header, index, last, source)
    return _read_binary(data, header, index, last, source)


def _read_ascii(
    data: bytes, header: PlyHeader, index: int, last: bool, source: str
) -> dict[str, npt.NDArray[Any]]:
    vertex = header.elements[index]
    start = header.data_start
    skip = sum(e.count for e in header.elements[:index])  # one line per item before the vertices
    if skip:
        after = _after_lines(data, start, skip)
        if after is None:
            raise PointsError("truncated", f"{source}: PLY ascii data ends before the vertex element")
        start = after
    end = start
    if vertex.count:
        # fewer lines than declared: the row count below reports it
        end = _after_lines(data, start, vertex.count) or len(data)
    if last and data[end:].strip():
        raise PointsError(
            "bad_count",
            f"{source}: PLY ascii data has more lines than the {vertex.count} vertices declared "
            "(vertex count too small?)",
        )
    table = parse_ascii_rows(data[start:end], len(vertex.properties), source, "PLY ascii vertex data")
    if table.shape[0] != vertex.count:
        raise PointsError(
            "truncated",
            f"{source}: PLY ascii data has {table.shape[0]} vertex lines, {vertex.count} declared",
        )
    return {
        p.name: to_type(table[:, i], np.dtype(p.type), p.name, source)
        for i, p in enumerate(vertex.properties)
    }


def _after_lines(data: bytes, start: int, lines: int) -> int | None:
    """The offset just past the ``lines``-th newline from ``start``; None when there are fewer."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8, offset=start) == ord("\n"))
    return start + int(newlines[lines - 1]) + 1 if newlines.size >= lines else None


def _read_binary(
    data: bytes, header: PlyHeader, index: int, last: bool, source: str
) -> dict[str, npt.NDArray[Any]]:
    order = header.byte_order
    pos = header.data_start
    for element in header.elements[:index]:
        pos = _skip_binary(data, pos, element, order, source)
    vertex = header.elements[index]
    dtype = np.dtype([(f"p{i}", order + p.type) for i, p in enumerate(vertex.properties)])
    need = vertex.count * dtype.itemsize
    have = len(data) - pos
    if have < need:
        raise PointsError(
            "truncated",
            f"{source}: PLY vertex data has {have} bytes, {vertex.count} vertices of {dtype.itemsize} bytes "
            f"need {need} (truncated file?)",
        )
    if last and have > need:
        raise PointsError(
            "bad_count",
            f"{source}: {have - need} bytes follow the PLY vertex data, the last element "
            f"({vertex.count} vertices of {dtype.itemsize} bytes; vertex count too small?)",
        )
    records = (
        np.frombuffer(data, dtype=dtype, count=vertex.count, offset=pos)
        if vertex.count
        else np.zeros(0, dtype)
    )
    return {
        p.name: np.ascontiguousarray(records[f"p{i}"], dtype=np.dtype(p.type))
        for i, p in enumerate(vertex.properties)
    }


def _skip_binary(data: bytes, pos: int, element: PlyElement, order: str, source: str) -> int:
    """The offset after a binary element's items (walked item by item when it has list properties)."""
    if not element.has_lists:
        size = sum(np.dtype(p.type).itemsize for p in element.properties)
        pos += element.count * size
    else:
        counts = {t: np.dtype(order + t) for t in {p.count_type for p in element.properties if p.count_type}}
        for _ in range(element.count):
            for p in element.properties:
                if p.count_type is None:
                    pos += np.dtype(p.type).itemsize
                    continue
                dtype = counts[p.count_type]
                if pos + dtype.itemsize > len(data):
                    pos = len(data) + 1  # reported below
                    break
                items = int(np.frombuffer(data, dtype=dtype, count=1, offset=pos)[0])
                if items < 0:
                    raise PointsError(
                        "bad_data", f"{source}: PLY list {p.name!r} of {element.name!r} has count {items}"
                    )
                pos += dtype.itemsize + items * np.dtype(p.type).itemsize
            if pos > len(data):
                break
    if pos > len(data):
        raise PointsError(
            "truncated", f"{source}: PLY data ends inside element {element.name!r}, before the vertex element"
        )
    return pos


def encode_ply(
    properties: Sequence[tuple[str, npt.ArrayLike]],
    encoding: PlyEncoding = "binary_little_endian",
    *,
    comments: Sequence[str] = (),
) -> bytes:
    """A PLY file with one ``vertex`` element of ``N`` vertices whose properties are the given
    ``(name, values)`` pairs in order, each typed by its values' numpy type (float32 → float,
    uint8 → uchar, ...).

    Raises:
        ValueError: values that are not ``(N,)`` of a PLY type, a name or comment that would break the
            header, an unknown encoding.
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"unknown PLY encoding {encoding!r}; use one of {', '.join(_ENCODINGS)}")
    arrays = [(name, np.asarray(values)) for name, values in properties]
    if not arrays:
        raise ValueError("a PLY vertex element needs at least one property")
    n = arrays[0][1].shape[0] if arrays[0][1].ndim else 0
    lines = ["ply", f"format {encoding} 1.0", *(f"comment {c}" for c in comments), f"element vertex {n}"]
    for c in comments:
        if "\n" in c or "\r" in c:
            raise ValueError("a PLY comment is one line")
    for name, values in arrays:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"PLY property name {name!r} must be one word")
        if values.ndim != 1 or values.shape[0] != n:
            raise ValueError(f"PLY property {name!r} must be ({n},), got shape {values.shape}")
        key = values.dtype.str[1:]
        if key not in _NAMES:
            raise ValueError(f"PLY property {name!r}: numpy type {values.dtype} has no PLY type")
        lines.append(f"property {_NAMES[key]} {name}")
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")
    if encoding == "ascii":
        return header + format_ascii_rows([values for _, values in arrays])
    order = _ENCODINGS[encoding]
    records = np.empty(n, dtype=[(f"p{i}", order + v.dtype.str[1:]) for i, (_, v) in enumerate(arrays)])
    for i, (_, values) in enumerate(arrays):
        records[f"p{i}"] = values
    return header + records.tobytes()
