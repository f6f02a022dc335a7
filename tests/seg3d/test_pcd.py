"""The PCD reader: headers, every field type, the three encodings (read from files an independent
writer made: pypcd4, whose LZF is the C library python-neo-lzf), LZF itself, and malformed files."""

from __future__ import annotations

import io
import struct

import lzf  # python-neo-lzf: liblzf's C code, the independent LZF implementation
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypcd4 import Encoding, MetaData, PointCloud

from seg3d.pcd import encode_pcd, lzf_compress, lzf_decompress, parse_header, read_fields
from seg3d.points import PointFormat, PointsError, decode_points
from tests.seg3d.mutation import check_only_points_errors, mutate

ENCODINGS = ["ascii", "binary", "binary_compressed"]
# every PCD (TYPE, SIZE) and the numpy type it is
TYPES = {
    ("F", 4): np.float32,
    ("F", 8): np.float64,
    ("U", 1): np.uint8,
    ("U", 2): np.uint16,
    ("U", 4): np.uint32,
    ("U", 8): np.uint64,
    ("I", 1): np.int8,
    ("I", 2): np.int16,
    ("I", 4): np.int32,
    ("I", 8): np.int64,
}


def _pypcd4(columns: list[tuple[str, np.ndarray]], encoding: str, width: int | None = None) -> bytes:
    """The bytes pypcd4 writes for these fields (count 1 each), WIDTH × HEIGHT when ``width`` is
    given (an organised cloud)."""
    n = columns[0][1].shape[0]
    metadata = MetaData(
        fields=tuple(name for name, _ in columns),
        size=tuple(values.dtype.itemsize for _, values in columns),
        type=tuple({"f": "F", "u": "U", "i": "I"}[values.dtype.kind] for _, values in columns),
        count=tuple(1 for _ in columns),
        points=n,
        width=width or n,
        height=n // (width or n) if n else 1,
    )
    records = np.rec.fromarrays([values for _, values in columns], dtype=metadata.build_dtype())
    out = io.BytesIO()
    PointCloud(metadata, records).save(out, encoding=Encoding(encoding))
    data = out.getvalue()
    assert f"DATA {encoding}\n".encode() in data  # pypcd4 falls back to binary when LZF does not pay
    return data


def _values(dtype: type, n: int, rng: np.random.Generator) -> np.ndarray:
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return rng.normal(0, 30, n).astype(dtype)
    info = np.iinfo(kind)
    return rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), n, endpoint=True).astype(dtype)


def _xyz(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    # repeated values so that LZF finds matches and pypcd4 keeps binary_compressed
    cloud = np.round(rng.normal(0, 20, (n, 3)), 1).astype(np.float32)
    return [("x", cloud[:, 0]), ("y", cloud[:, 1]), ("z", cloud[:, 2])]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("kind", "size"), list(TYPES))
def test_every_field_type_reads_as_pypcd4_wrote_it(encoding: str, kind: str, size: int) -> None:
    n = 400
    values = _values(TYPES[(kind, size)], n, np.random.default_rng(size))
    values[: n // 2] = values[0]  # compressible
    columns = [*_xyz(n), ("v", values)]
    fields = read_fields(_pypcd4(columns, encoding))
    assert list(fields) == ["x", "y", "z", "v"]
    assert fields["v"].dtype == np.dtype(TYPES[(kind, size)]).newbyteorder("=")
    if kind == "F" and encoding == "ascii":  # pypcd4 writes floats as %.10f: compare with that text
        np.testing.assert_array_equal(
            fields["v"], np.array([f"{v:.10f}" for v in values], np.float64).astype(values.dtype)
        )
    else:
        np.testing.assert_array_equal(fields["v"], values)
    for name, column in _xyz(n):
        np.testing.assert_allclose(fields[name], column, atol=1e-9)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_organised_cloud_keeps_every_point_in_row_order(encoding: str) -> None:
    width, height = 16, 5  # HEIGHT > 1: rows of a depth image
    n = width * height
    grid = np.arange(n, dtype=np.float32)
    columns = [
        ("x", grid),
        ("y", grid // width),
        ("z", grid % width),
        ("intensity", (grid % 7).astype(np.uint8)),
    ]
    data = _pypcd4(columns, encoding, width=width)
    assert b"HEIGHT 5\n" in data and b"WIDTH 16\n" in data
    points = decode_points(data, "pcd", 255.0)
    assert points.shape == (n, 4)
    np.testing.assert_array_equal(points[:, 0], grid)  # point i is row i // 16, column i % 16
    np.testing.assert_array_equal(points[:, 3], grid % 7)  # uint8: the 0-255 scale


def _hand_written(encoding: str) -> tuple[bytes, dict[str, np.ndarray]]:
    """A PCD with a COUNT 3 field, PCL's ``_`` padding and a U2 intensity, written from the format's
    description (pypcd4 lays out COUNT > 1 fields in compressed data unlike PCL: not used here)."""
    n = 5
    x = np.arange(n, dtype=np.float32) + 0.5
    normal = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 4
    intensity = np.array([0, 1, 1000, 65535, 7], np.uint16)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION .7\nFIELDS x normal _ y z intensity\nSIZE 4 4 1 4 4 2\nTYPE F F U F F U\n"
        f"COUNT 1 3 2 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {encoding}\n"
    ).encode()
    expected = {"x": x, "normal": normal, "y": -x, "z": 2 * x, "intensity": intensity}
    if encoding == "ascii":
        rows = [
            f"{x[i]} {' '.join(str(v) for v in normal[i])} 0 0 {-x[i]} {2 * x[i]} {intensity[i]}"
            for i in range(n)
        ]
        return header + ("\n".join(rows) + "\n").encode(), expected
    record = np.dtype(
        [("x", "<f4"), ("normal", "<f4", (3,)), ("_", "u1", (2,)), ("y", "<f4"), ("z", "<f4"), ("i", "<u2")]
    )
    records = np.zeros(n, record)
    records["x"], records["normal"], records["y"], records["z"], records["i"] = (
        x,
        normal,
        -x,
        2 * x,
        intensity,
    )
    if encoding == "binary":
        return header + records.tobytes(), expected
    # PCL's compressed layout: per field but the padding, each point's COUNT values together
    raw = b"".join(np.ascontiguousarray(records[name]).tobytes() for name in ("x", "normal", "y", "z", "i"))
    packed = lzf.compress(raw) or b""
    assert packed, "compressible"
    return header + struct.pack("<II", len(packed), len(raw)) + packed, expected


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_count_above_one_and_padding_are_skipped_correctly(encoding: str) -> None:
    data, expected = _hand_written(encoding)
    fields = read_fields(data)
    assert list(fields) == ["x", "normal", "y", "z", "intensity"]  # the padding is not a field
    for name, values in expected.items():
        np.testing.assert_array_equal(fields[name], values)
    points = decode_points(data, "pcd", 255.0)
    np.testing.assert_array_equal(
        points[:, :3], np.stack([expected["x"], -expected["x"], 2 * expected["x"]], 1)
    )
    expected_intensity = expected["intensity"].astype(np.float32) * np.float32(255.0 / 65535.0)
    np.testing.assert_array_equal(points[:, 3], expected_intensity)  # uint16: the 0-65535 scale


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_our_writer_reads_back_and_pypcd4_reads_it(encoding: str) -> None:
    columns = [
        *_xyz(300, 4),
        ("intensity", np.arange(300, dtype=np.float32) % 256),
        ("ring", np.arange(300) % 32),
    ]
    data = encode_pcd([(name, np.asarray(v)) for name, v in columns], encoding)  # type: ignore[arg-type]
    fields = read_fields(data)
    for name, values in columns:
        np.testing.assert_array_equal(fields[name], values)
    other = PointCloud.from_fileobj(io.BytesIO(data))
    assert other.fields == ("x", "y", "z", "intensity", "ring")
    np.testing.assert_array_equal(other.numpy(("x", "y", "z")), np.stack([c for _, c in columns[:3]], 1))
    np.testing.assert_array_equal(other.numpy(("ring",))[:, 0], columns[4][1])


def test_empty_clouds_read_as_no_points() -> None:
    for encoding in ENCODINGS:
        data = encode_pcd(
            [("x", np.zeros(0, np.float32)), ("y", np.zeros(0, np.float32)), ("z", np.zeros(0, np.float32))],
            encoding,
        )  # type: ignore[arg-type]
        assert decode_points(data, "pcd", 255.0, allow_missing_intensity=True).shape == (0, 4)
    header_only = b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 0\nDATA binary_compressed\n"
    assert read_fields(header_only)["x"].shape == (0,)  # pypcd4 stops after the header of an empty cloud


_HEADER = (
    "VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
    "WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA binary\n"
)
_BODY = np.arange(8, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("old", "new", "code", "message"),
    [
        ("VERSION 0.7", "VERSION 0.9", "bad_header", "VERSION '0.9' is not 0.5, 0.6 or 0.7"),
        ("VERSION 0.7", "HELLO 0.7", "bad_header", "line 1 starts with 'HELLO'"),
        ("FIELDS x y z intensity\n", "", "bad_header", "no FIELDS line"),
        ("SIZE 4 4 4 4", "SIZE 4 4 4", "bad_header", "SIZE has 3 values for 4 FIELDS"),
        ("TYPE F F F F", "TYPE F F F X", "unknown_field_type", "field 'intensity' has TYPE 'X' SIZE 4"),
        ("SIZE 4 4 4 4", "SIZE 4 4 4 2", "unknown_field_type", "TYPE 'F' SIZE 2"),
        ("SIZE 4 4 4 4", "SIZE 4 4 4 x", "bad_header", "SIZE must be a non-negative integer, got 'x'"),
        ("COUNT 1 1 1 1", "COUNT 1 1 1 0", "bad_header", "has COUNT 0"),
        ("COUNT 1 1 1 1", "COUNT 1 1 1", "bad_header", "COUNT has 3 values"),
        ("WIDTH 2", "WIDTH -2", "bad_header", "WIDTH must be a non-negative integer"),
        ("WIDTH 2", "WIDTH 2 3", "bad_header", "WIDTH needs one value"),
        ("POINTS 2", "POINTS 3", "bad_header", "POINTS 3 is not WIDTH × HEIGHT = 2 × 1"),
        ("HEIGHT 1", "HEIGHT 2", "bad_header", "POINTS 2 is not WIDTH × HEIGHT = 2 × 2"),
        ("VIEWPOINT 0 0 0 1 0 0 0", "VIEWPOINT 0 0 0 1", "bad_header", "VIEWPOINT needs 7 finite numbers"),
        ("VIEWPOINT 0 0 0 1 0 0 0", "VIEWPOINT 0 0 nan 1 0 0 0", "bad_header", "VIEWPOINT needs 7"),
        ("DATA binary", "DATA binary_zipped", "bad_header", "DATA 'binary_zipped' is not one of"),
        ("DATA binary\n", "", "bad_header", "header line 10 is not ASCII text"),  # the data, read as header
        ("POINTS 2\n", "POINTS 2\nWIDTH 2\n", "bad_header", "repeats WIDTH"),
        ("FIELDS x y z intensity", "FIELDS x y x intensity", "bad_header", "field 'x' appears twice"),
    ],
)
def test_malformed_headers_are_named(old: str, new: str, code: str, message: str) -> None:
    data = _HEADER.replace(old, new).encode() + _BODY
    with pytest.raises(PointsError, match=f"scan.pcd: PCD .*{message}") as caught:
        decode_points(data, "pcd", 255.0, source="scan.pcd")
    assert caught.value.code == code


def test_a_header_that_is_not_text_or_not_a_header() -> None:
    with pytest.raises(PointsError, match="line 1 is not ASCII text") as caught:
        parse_header(np.arange(40, dtype="<f4").tobytes() + b"\xff\n")
    assert caught.value.code == "bad_header"
    with pytest.raises(PointsError, match="no DATA line"):
        parse_header(b"")
    with pytest.raises(PointsError, match="not a text line"):
        parse_header(b"#" * 70_000)


def test_comments_blank_lines_crlf_and_optional_keywords() -> None:
    data = (
        b"# made by hand\r\n\r\nFIELDS x y z i\r\nSIZE 4 4 4 1\r\nTYPE F F F U\r\nWIDTH 2\r\nDATA ascii\r\n"
    )
    data += b"1 2 3 255\r\n\r\n4 5 6 0\r\n"  # PCL skips blank lines in ascii data too
    header = parse_header(data)
    assert (header.width, header.height, header.points, header.version) == (2, 1, 2, None)
    assert [f.count for f in header.fields] == [1, 1, 1, 1]
    assert decode_points(data, "pcd", 1.0).tolist() == [[1, 2, 3, 1], [4, 5, 6, 0]]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_truncated_and_overlong_data_are_refused(encoding: str) -> None:
    data = encode_pcd([*_xyz(50), ("intensity", np.full(50, 3, np.uint8))], encoding)  # type: ignore[arg-type]
    header_end = data.index(b"DATA") + len(f"DATA {encoding}\n")
    if encoding == "ascii":  # text loses whole lines or values; a cut inside a number cannot show
        last_line = len(data.rstrip(b"\n").rsplit(b"\n", 1)[1]) + 1
        cuts = [last_line, last_line + 3, (len(data) - header_end) // 2]
    else:
        cuts = [1, 7, (len(data) - header_end) // 2]
    for cut in cuts:
        with pytest.raises(PointsError, match="body: PCD") as caught:
            decode_points(data[:-cut], "pcd", 255.0)
        assert caught.value.code in ("truncated", "bad_count", "bad_data"), caught.value
    with pytest.raises(PointsError) as caught:
        decode_points(data + b"\x00\x00\x00\x00", "pcd", 255.0)
    assert caught.value.code in ("bad_count", "bad_data")  # a POINTS too small must not drop points
    fewer = data.replace(b"WIDTH 50\n", b"WIDTH 49\n").replace(b"POINTS 50\n", b"POINTS 49\n")
    with pytest.raises(PointsError) as caught:
        decode_points(fewer, "pcd", 255.0)
    assert caught.value.code == "bad_count"


def test_truncation_messages_say_what_is_missing() -> None:
    data = _HEADER.encode() + _BODY
    with pytest.raises(
        PointsError, match=r"binary data has 31 bytes, POINTS 2 of 16 bytes need 32"
    ) as caught:
        decode_points(data[:-1], "pcd", 255.0)
    assert caught.value.code == "truncated"
    with pytest.raises(PointsError, match="4 more than POINTS 2") as caught:
        decode_points(data + b"\0" * 4, "pcd", 255.0)
    assert caught.value.code == "bad_count"


def test_bad_ascii_values_are_named() -> None:
    head = (
        _HEADER.replace("DATA binary", "DATA ascii")
        .replace("TYPE F F F F", "TYPE F F F U")
        .replace("SIZE 4 4 4 4", "SIZE 4 4 4 1")
    )
    cases = {
        "1 2 3 4\n5 6 7\n": ("bad_data", "number of columns changed"),
        "1 2 3 4\n5 6 7 8 9\n": ("bad_data", "number of columns changed"),
        "1 2 3 4\n5 6 seven 8\n": ("bad_data", "seven"),
        "1 2 3 4\n5 6 7 256\n": ("bad_data", r"field 'intensity' \(uint8\) has value 256 in data row 1"),
        "1 2 3 4\n5 6 7 2.5\n": ("bad_data", "not a whole number"),
        "1 2 3 4\n": ("bad_count", "has 1 point lines, POINTS says 2"),
        "1 2 3 4\n5 6 7 8\n9 10 11 12\n": ("bad_count", "has 3 point lines"),
        "1 2 3 4 5\n6 7 8 9 10\n": ("bad_count", "5 values per line, the header declares 4"),
        "1 2 3 4\n5 6 7 \xe9\n": ("bad_data", "non-ASCII byte"),
    }
    for text, (code, message) in cases.items():
        with pytest.raises(PointsError, match=message) as caught:
            decode_points(head.encode() + text.encode("latin-1"), "pcd", 255.0)
        assert caught.value.code == code, (text, caught.value)


def test_non_finite_values_in_a_file_are_refused_not_dropped() -> None:
    head = _HEADER.replace("DATA binary", "DATA ascii")
    with pytest.raises(
        PointsError, match=r"1 of 2 point rows have a NaN or Inf y \(first bad rows: 1\)"
    ) as caught:
        decode_points(head.encode() + b"1 2 3 4\n5 nan 7 8\n", "pcd", 255.0)
    assert caught.value.code == "non_finite"


def test_the_point_limit_is_checked_before_the_data() -> None:
    data = _HEADER.replace("WIDTH 2", "WIDTH 2000000000").replace("POINTS 2", "POINTS 2000000000").encode()
    with pytest.raises(PointsError, match="2000000000 points exceed the limit of 10") as caught:
        decode_points(data, "pcd", 255.0, max_points=10)
    assert caught.value.code == "too_many_points"
    with pytest.raises(PointsError, match="truncated file") as caught:  # no limit: no huge allocation either
        decode_points(data, "pcd", 255.0)


# --- LZF ---------------------------------------------------------------------------------------------


@given(
    st.one_of(
        st.binary(max_size=3000),
        st.lists(st.sampled_from([b"ab", b"abc", b"\0" * 9, b"xyz1"]), max_size=300).map(b"".join),
    )
)
@settings(max_examples=200, deadline=None)
def test_lzf_round_trips_and_agrees_with_liblzf(data: bytes) -> None:
    packed = lzf_compress(data)
    assert lzf_decompress(packed, len(data)) == data
    assert lzf.decompress(packed, len(data)) == data if data else True  # liblzf reads ours
    theirs = lzf.compress(data) if data else None
    if theirs:  # None when it would not be smaller
        assert lzf_decompress(theirs, len(data)) == data  # we read liblzf's


def test_lzf_long_runs_and_far_references() -> None:
    data = bytes(range(256)) * 40 + b"\x07" * 5000 + bytes(range(256)) * 3
    packed = lzf_compress(data)
    assert len(packed) < len(data) // 4 and lzf.decompress(packed, len(data)) == data


@pytest.mark.parametrize(
    ("stream", "size", "message"),
    [
        (b"\x05abc", 6, "literal run of 6 bytes passes the end"),
        (b"\x00a\x20\x05", 4, "reaches 6 bytes back, 1 are decoded"),
        (b"\x00a\xe0", 10, "length passes the end"),
        (b"\x00a\x20", 3, "offset passes the end"),
        (b"\x01ab", 1, "more than the declared 1 bytes"),
        (b"\x01ab", 3, "decodes to 2 bytes, 3 declared"),
    ],
)
def test_corrupt_lzf_streams_are_named(stream: bytes, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lzf_decompress(stream, size)


def test_corrupt_compressed_data_is_a_points_error() -> None:
    data = encode_pcd([*_xyz(100)], "binary_compressed")  # type: ignore[arg-type]
    start = data.index(b"DATA binary_compressed\n") + len("DATA binary_compressed\n")
    broken = bytearray(data)
    broken[start + 8] = 0xFF  # the first control byte: a back-reference before the output's start
    with pytest.raises(PointsError, match="binary_compressed data is corrupt") as caught:
        decode_points(bytes(broken), "pcd", 255.0, allow_missing_intensity=True)
    assert caught.value.code == "bad_data"
    sizes = struct.unpack("<II", data[start : start + 8])
    wrong = data[:start] + struct.pack("<II", sizes[0], sizes[1] + 4) + data[start + 8 :]
    with pytest.raises(PointsError, match="holds 1204 uncompressed bytes") as caught:
        decode_points(wrong, "pcd", 255.0, allow_missing_intensity=True)
    assert caught.value.code == "bad_count"


# --- fuzzing: mutated files fail only with PointsError ---------------------------------------------

_TOKENS = [
    "-1",
    "0",
    "1",
    "2",
    "3",
    "99999999999999999999",
    "F",
    "U",
    "I",
    "X",
    "8",
    "nan",
    "",
    "_",
    "x",
    "ascii",
    "binary",
    "binary_compressed",
    "\n",
    " ",
    "#",
    "DATA",
    "POINTS",
    "COUNT",
    "65536",
    "1e9",
]


@st.composite
def mutated_pcd(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 20))
    encoding = draw(st.sampled_from(ENCODINGS))
    kinds = draw(st.lists(st.sampled_from(list(TYPES)), min_size=1, max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    columns = [*_xyz(n, 1), *((f"f{i}", _values(TYPES[k], n, rng)) for i, k in enumerate(kinds))]
    if draw(st.booleans()):
        columns[3] = ("intensity", columns[3][1])
    data = bytearray(encode_pcd(columns, encoding))  # type: ignore[arg-type]
    return mutate(draw, bytes(data), b"DATA", _TOKENS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_pcd(), allow_missing=st.booleans(), max_points=st.sampled_from([None, 10]))
def test_mutated_files_raise_only_points_errors(
    data: bytes, allow_missing: bool, max_points: int | None
) -> None:
    check_only_points_errors(data, PointFormat.PCD, allow_missing, max_points)
