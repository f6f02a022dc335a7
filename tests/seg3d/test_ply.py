"""The PLY reader: headers, every scalar type name and alias, the three encodings (read from files an
independent writer made: plyfile), elements around the vertices, and malformed files."""

from __future__ import annotations

import io

import numpy as np
import plyfile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg3d.ply import TYPES, encode_ply, parse_header, read_vertex
from seg3d.points import PointFormat, PointsError, decode_points
from tests.seg3d.mutation import check_only_points_errors, mutate

ENCODINGS = {"ascii": (True, "="), "binary_little_endian": (False, "<"), "binary_big_endian": (False, ">")}


def _plyfile(elements: list[plyfile.PlyElement], encoding: str) -> bytes:
    text, order = ENCODINGS[encoding]
    out = io.BytesIO()
    plyfile.PlyData(elements, text=text, byte_order=order).write(out)
    return out.getvalue()


def _vertex(n: int, extra: dict[str, np.ndarray] | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    extra = extra or {"intensity": rng.integers(0, 256, n).astype(np.uint8)}
    dtype = [("x", "f4"), ("y", "f4"), ("z", "f4"), *((k, v.dtype.str) for k, v in extra.items())]
    vertex = np.empty(n, dtype)
    for axis in "xyz":
        vertex[axis] = rng.normal(0, 20, n).astype(np.float32)
    for name, values in extra.items():
        vertex[name] = values
    return vertex


def _values(dtype: np.dtype, n: int) -> np.ndarray:
    rng = np.random.default_rng(dtype.itemsize)
    if dtype.kind == "f":
        return rng.normal(0, 1e3, n).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("type_name", list(TYPES))
def test_every_scalar_type_and_alias_reads_as_plyfile_wrote_it(encoding: str, type_name: str) -> None:
    dtype = np.dtype(TYPES[type_name])
    values = _values(dtype, 200)
    data = _plyfile([plyfile.PlyElement.describe(_vertex(200, {"v": values}), "vertex")], encoding)
    # plyfile writes its canonical names (char, uchar, ...): put the alias under test in the header
    canonical = next(name for name, t in TYPES.items() if t == TYPES[type_name])
    head, tail = data.split(b"end_header\n", 1)
    data = (
        head.replace(f"property {canonical} v".encode(), f"property {type_name} v".encode())
        + b"end_header\n"
        + tail
    )
    assert f"property {type_name} v\n".encode() in data
    vertex = read_vertex(data)
    assert list(vertex) == ["x", "y", "z", "v"]
    assert vertex["v"].dtype == dtype.newbyteorder("=")
    np.testing.assert_array_equal(vertex["v"], values)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_faces_before_and_after_the_vertices_are_read_past(encoding: str) -> None:
    vertex = _vertex(30)
    faces = np.empty(4, dtype=[("vertex_indices", "O"), ("flag", "u1")])
    faces["vertex_indices"] = [
        np.array([0, 1, 2], np.int32),
        np.array([3, 4, 5, 6], np.int32),
        np.array([], np.int32),
        np.array([1, 2, 3], np.int32),
    ]
    faces["flag"] = [1, 2, 3, 4]
    camera = np.array([(1.5, 2.5)], dtype=[("view_x", "f4"), ("view_y", "f8")])
    face = plyfile.PlyElement.describe(faces, "face", len_types={"vertex_indices": "u2"})
    for order in (
        [plyfile.PlyElement.describe(vertex, "vertex"), face],  # the usual mesh: vertices first
        [face, plyfile.PlyElement.describe(camera, "camera"), plyfile.PlyElement.describe(vertex, "vertex")],
    ):
        data = _plyfile(order, encoding)
        points = decode_points(data, "ply", 255.0)
        np.testing.assert_array_equal(points[:, 0], vertex["x"])
        assert points[:, 3].tolist() == vertex["intensity"].tolist()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_our_writer_reads_back_and_plyfile_reads_it(encoding: str) -> None:
    vertex = _vertex(
        50, {"intensity": np.linspace(0, 1, 50, dtype=np.float64), "ring": np.arange(50, dtype=np.uint16)}
    )
    columns = [(name, vertex[name]) for name in vertex.dtype.names or ()]
    data = encode_ply(columns, encoding, comments=["made by a test"])  # type: ignore[arg-type]
    back = read_vertex(data)
    for name, values in columns:
        np.testing.assert_array_equal(back[name], values)
    other = plyfile.PlyData.read(io.BytesIO(data))
    assert other.comments == ["made by a test"]
    assert [p.name for p in other["vertex"].properties] == ["x", "y", "z", "intensity", "ring"]
    for name, values in columns:
        np.testing.assert_array_equal(other["vertex"][name], values)


def test_float_intensity_names_and_types_set_the_scale() -> None:
    for name, values, model in (
        ("intensity", np.array([0, 127.5, 255], np.float32), [0, 127.5, 255]),  # float intensity: 0-255
        ("reflectance", np.array([0, 0.5, 1], np.float64), [0, 127.5, 255]),  # float reflectance: 0-1
        ("scalar_Intensity", np.array([0, 32767, 65535], np.uint16), [0, 127.5, 255]),  # CloudCompare, uint16
    ):
        data = encode_ply(
            [
                ("x", np.zeros(3, np.float32)),
                ("y", np.zeros(3, np.float32)),
                ("z", np.zeros(3, np.float32)),
                (name, values),
            ]
        )
        np.testing.assert_allclose(decode_points(data, "ply", 255.0)[:, 3], model, rtol=1e-4)


def test_list_properties_in_vertex_are_refused_clearly() -> None:
    vertex = np.empty(
        2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"), ("neighbours", "O")]
    )
    vertex["neighbours"] = [np.array([1], np.int32), np.array([0], np.int32)]
    for encoding in ENCODINGS:
        data = _plyfile([plyfile.PlyElement.describe(vertex, "vertex")], encoding)
        with pytest.raises(PointsError, match="PLY vertex property 'neighbours' is a list") as caught:
            decode_points(data, "ply", 255.0, source="mesh.ply")
        assert caught.value.code == "list_property"


def test_a_file_without_vertices_or_intensity() -> None:
    data = _plyfile([plyfile.PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "point")], "ascii")
    with pytest.raises(PointsError, match=r"no 'vertex' element \(elements: point\)") as caught:
        decode_points(data, "ply", 255.0)
    assert caught.value.code == "missing_field"
    data = encode_ply(
        [
            ("x", np.zeros(2, np.float32)),
            ("y", np.zeros(2, np.float32)),
            ("z", np.zeros(2, np.float32)),
            ("red", np.zeros(2, np.uint8)),
        ]
    )
    with pytest.raises(
        PointsError, match=r"PLY file has no intensity field \(fields: x, y, z, red\)"
    ) as caught:
        decode_points(data, "ply", 255.0)
    assert caught.value.code == "missing_intensity"
    assert not decode_points(data, "ply", 255.0, allow_missing_intensity=True)[:, 3].any()


_HEADER = (
    "ply\nformat binary_little_endian 1.0\ncomment hand made\nelement vertex 2\nproperty float x\n"
    "property float y\nproperty float z\nproperty uchar intensity\nend_header\n"
)
_BODY = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "u1")]).tobytes()


@pytest.mark.parametrize(
    ("old", "new", "code", "message"),
    [
        ("ply\n", "plx\n", "bad_header", "starts with a 'ply' line"),
        (
            "format binary_little_endian 1.0",
            "format binary_middle_endian 1.0",
            "bad_header",
            "format is 'format ENCODING 1.0'",
        ),
        (
            "format binary_little_endian 1.0",
            "format ascii 2.0",
            "bad_header",
            "format is 'format ENCODING 1.0'",
        ),
        ("format binary_little_endian 1.0\n", "", "bad_header", "no format line"),
        ("end_header\n", "", "bad_header", "no end_header line"),
        ("end_header\n", "end_header extra\n", "bad_header", "end_header must be a line of its own"),
        ("element vertex 2", "element vertex two", "bad_header", "is not 'element NAME COUNT'"),
        ("element vertex 2", "element vertex -2", "bad_header", "is not 'element NAME COUNT'"),
        (
            "property uchar intensity",
            "property uint12 intensity",
            "unknown_field_type",
            "property 'intensity' has type 'uint12'",
        ),
        ("property uchar intensity", "property uchar", "bad_header", "is not 'property TYPE NAME'"),
        (
            "property uchar intensity",
            "property list uchar intensity",
            "bad_header",
            "is not 'property list COUNT_TYPE TYPE NAME'",
        ),
        (
            "property uchar intensity",
            "property list float int intensity",
            "unknown_field_type",
            "has a float count",
        ),
        ("property uchar intensity", "property uchar x", "bad_header", "has property 'x' twice"),
        ("comment hand made", "property float w", "bad_header", "property on line 3 before any element"),
        ("comment hand made", "colour red", "bad_header", "header line 3 starts with 'colour'"),
        (
            "end_header\n",
            "element vertex 3\nend_header\n",
            "bad_header",
            "element 'vertex' is declared twice",
        ),
        ("comment hand made", "format ascii 1.0", "bad_header", "format line 3 is repeated or misplaced"),
        ("comment hand made", "comment caf\xe9", "bad_header", "non-ASCII byte"),
    ],
)
def test_malformed_headers_are_named(old: str, new: str, code: str, message: str) -> None:
    data = _HEADER.replace(old, new).encode("latin-1") + _BODY
    with pytest.raises(PointsError, match=f"mesh.ply: .*{message}") as caught:
        decode_points(data, "ply", 255.0, source="mesh.ply")
    assert caught.value.code == code


def test_crlf_headers_and_comments_mentioning_end_header() -> None:
    data = (
        _HEADER.replace("comment hand made", "comment written before end_header")
        .replace("\n", "\r\n")
        .encode()
        + _BODY
    )
    header = parse_header(data)
    assert header.comments == ("written before end_header",)
    assert decode_points(data, "ply", 255.0).shape == (2, 4)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_truncated_and_overlong_data_are_refused(encoding: str) -> None:
    data = _plyfile([plyfile.PlyElement.describe(_vertex(40), "vertex")], encoding)
    if encoding == "ascii":
        last_line = len(data.rstrip(b"\n").rsplit(b"\n", 1)[1]) + 1
        cuts = [last_line, last_line + 5]
    else:
        cuts = [1, 13]
    for cut in cuts:
        with pytest.raises(PointsError, match="body: PLY") as caught:
            decode_points(data[:-cut], "ply", 255.0)
        assert caught.value.code in ("truncated", "bad_data"), caught.value
    extra = b"1 2 3 4\n" if encoding == "ascii" else b"\0" * 13
    with pytest.raises(PointsError, match="vertex count too small") as caught:
        decode_points(data + extra, "ply", 255.0)  # a count too small must not drop points
    assert caught.value.code == "bad_count"


def test_truncated_binary_message_and_point_limit() -> None:
    data = _HEADER.encode() + _BODY
    with pytest.raises(
        PointsError, match="PLY vertex data has 25 bytes, 2 vertices of 13 bytes need 26"
    ) as caught:
        decode_points(data[:-1], "ply", 255.0)
    assert caught.value.code == "truncated"
    huge = _HEADER.replace("element vertex 2", "element vertex 99999999999").encode()
    with pytest.raises(PointsError, match="99999999999 points exceed the limit of 5") as caught:
        decode_points(huge, "ply", 255.0, max_points=5)
    assert caught.value.code == "too_many_points"
    with pytest.raises(PointsError, match="truncated file") as caught:
        decode_points(huge, "ply", 255.0)
    assert caught.value.code == "truncated"


def test_bad_ascii_values_are_named() -> None:
    head = _HEADER.replace("binary_little_endian", "ascii")
    cases = {
        "1 2 3 4\n5 6 7\n": ("bad_data", "number of columns changed"),
        "1 2 3 4\n5 6 x 8\n": ("bad_data", "x"),
        "1 2 3 4\n5 6 7 -1\n": ("bad_data", "field 'intensity' .uint8. has value -1 in data row 1"),
        "1 2 3 4\n": ("truncated", "has 1 vertex lines, 2 declared"),
        "1 2 3 4\n5 6 7 8\n9 9 9 9\n": ("bad_count", "more lines than the 2 vertices declared"),
    }
    for text, (code, message) in cases.items():
        with pytest.raises(PointsError, match=message) as caught:
            decode_points(head.encode() + text.encode(), "ply", 255.0)
        assert caught.value.code == code, (text, caught.value)


# --- fuzzing: mutated files fail only with PointsError ---------------------------------------------

_TOKENS = [
    "-1",
    "0",
    "2",
    "99999999999999999999",
    "float",
    "uchar",
    "list",
    "int8",
    "float16",
    "",
    "vertex",
    "face",
    "x",
    "intensity",
    "ascii",
    "binary_big_endian",
    "1.0",
    "\n",
    " ",
    "comment",
    "element",
    "end_header",
]


@st.composite
def mutated_ply(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 15))
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    type_name = draw(st.sampled_from(list(TYPES)))
    elements = [
        plyfile.PlyElement.describe(
            _vertex(n, {"intensity": _values(np.dtype(TYPES[type_name]), n)}), "vertex"
        )
    ]
    if draw(st.booleans()):
        faces = np.empty(draw(st.integers(0, 3)), dtype=[("vertex_indices", "O")])
        faces["vertex_indices"] = [np.arange(k, dtype=np.int32) for k in range(faces.size)]
        face = plyfile.PlyElement.describe(faces, "face")
        elements = [face, *elements] if draw(st.booleans()) else [*elements, face]
    data = bytearray(_plyfile(elements, encoding))
    return mutate(draw, bytes(data), b"end_header", _TOKENS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_ply(), allow_missing=st.booleans(), max_points=st.sampled_from([None, 10]))
def test_mutated_files_raise_only_points_errors(
    data: bytes, allow_missing: bool, max_points: int | None
) -> None:
    check_only_points_errors(data, PointFormat.PLY, allow_missing, max_points)
