"""The one point reader: formats, intensity conversion and the checks that guard the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seg3d.points import (
    INTENSITY_RULE,
    PointFormat,
    PointsError,
    check_points,
    decode_points,
    encode_points,
    file_intensity_scale,
    intensity_field,
    points_from_fields,
    read_points,
    to_model_intensity,
    write_points,
)


def test_check_points_shape_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        check_points(torch.zeros(4))
    with pytest.raises(ValueError, match="at least 4 columns"):
        check_points(torch.zeros((2, 3)))


def test_check_points_ignores_unused_columns() -> None:
    points = torch.zeros((2, 5))
    points[:, 4] = float("nan")  # e.g. a ring column nobody reads
    assert check_points(points).shape == (2, 5)


def test_kitti_remission_to_nuscenes_scale() -> None:
    out = to_model_intensity(torch.tensor([0.0, 0.5, 1.0]), source_max=1.0, model_max=255.0)
    assert out.tolist() == [0.0, 127.5, 255.0]
    with pytest.raises(ValueError):
        to_model_intensity(torch.zeros(1), 0.0, 1.0)


def test_formats_are_one_table() -> None:
    assert [(f.value, f.columns, f.intensity_max, f.self_describing) for f in PointFormat] == [
        ("nuscenes", 5, 255.0, False),
        ("kitti", 4, 1.0, False),
        ("xyzi", 4, None, False),
        ("xyz", 3, None, False),
        ("pcd", 0, None, True),  # the header names the fields; intensity by the intensity rule
        ("ply", 0, None, True),
    ]
    assert PointFormat.raw() == (PointFormat.NUSCENES, PointFormat.KITTI, PointFormat.XYZI, PointFormat.XYZ)
    assert str(PointFormat.KITTI) == "kitti" and PointFormat("nuscenes") is PointFormat.NUSCENES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan.pcd", PointFormat.PCD),
        ("SCAN.PCD", PointFormat.PCD),
        ("mesh.ply", PointFormat.PLY),
        ("n015__LIDAR_TOP__1.pcd.bin", PointFormat.NUSCENES),
        ("velodyne/000000.bin", PointFormat.KITTI),
        ("cloud.las", None),
        ("scan.pcd.gz", None),
        ("bin", None),
    ],
)
def test_for_path_guesses_the_format_from_the_name(name: str, expected: PointFormat | None) -> None:
    assert PointFormat.for_path(name) is expected


def test_read_points_names_the_file(tmp_path) -> None:
    good = tmp_path / "a.bin"
    np.arange(10, dtype=np.float32).tofile(good)
    assert read_points(good, "nuscenes", 255.0).shape == (2, 4)  # the ring column is dropped
    with pytest.raises(ValueError, match=r"a\.bin: 40 bytes is not a multiple of 16"):
        read_points(good, "kitti", 255.0)
    with pytest.raises(PointsError, match=r"body: 7 bytes is not a multiple of 20") as caught:
        decode_points(b"\x00" * 7, "nuscenes", 255.0)  # not even whole float32s
    assert caught.value.code == "bad_length"
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        read_points(tmp_path / "missing.bin", "kitti", 255.0)


def test_read_points_converts_intensity_and_names_bad_formats(tmp_path) -> None:
    path = tmp_path / "kitti.bin"
    np.array([[1, 2, 3, 0.5], [4, 5, 6, 1.0]], dtype="<f4").tofile(path)
    np.testing.assert_allclose(read_points(path, "kitti", 255.0)[:, 3], [127.5, 255.0])
    np.testing.assert_allclose(read_points(path, "xyzi", 255.0)[:, 3], [0.5, 1.0])  # left as it is
    with pytest.raises(ValueError, match="unknown point format 'las'"):
        read_points(path, "las", 255.0)


def test_file_and_body_read_the_same(tmp_path) -> None:
    cloud = np.random.default_rng(0).normal(size=(100, 5)).astype("<f4")
    path = tmp_path / "sweep.pcd.bin"
    cloud.tofile(path)
    from_file = read_points(path, PointFormat.NUSCENES, 1.0)
    np.testing.assert_array_equal(from_file, decode_points(cloud.tobytes(), "nuscenes", 1.0))
    np.testing.assert_allclose(from_file[:, 3], cloud[:, 3] / 255.0, rtol=1e-6)
    assert from_file.dtype == np.float32 and from_file.flags.writeable


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_non_finite_values_are_refused_with_their_rows(column: int) -> None:
    cloud = np.zeros((6, 4), "<f4")
    cloud[[1, 4], column] = [np.nan, -np.inf]
    with pytest.raises(
        PointsError, match=r"body: 2 of 6 point rows contain NaN or Inf \(first bad rows: 1, 4\)"
    ) as caught:
        decode_points(cloud.tobytes(), "xyzi", 255.0)
    assert caught.value.code == "non_finite"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_non_finite_cuda_points_are_refused_with_their_rows() -> None:
    """Preprocessing on a GPU checks CUDA tensors: the bad rows are reported, not a numpy TypeError."""
    cloud = torch.zeros((6, 4), device="cuda")
    cloud[3, 0] = float("nan")
    with pytest.raises(PointsError, match=r"1 of 6 point rows contain NaN or Inf \(first bad rows: 3\)"):
        check_points(cloud)


def test_intensity_that_overflows_on_conversion_is_refused(tmp_path) -> None:
    """A finite KITTI reflectance of 1e38 is Inf once scaled to 0-255: refused, not fed to the model."""
    cloud = np.array([[1, 2, 3, 0.5], [1, 2, 3, 3e38], [1, 2, 3, -2e38]], dtype="<f4")
    path = tmp_path / "huge.bin"
    cloud.tofile(path)
    with pytest.raises(
        PointsError, match=r"huge\.bin: 2 of 3 point rows have an intensity that overflows"
    ) as caught:
        read_points(path, "kitti", 255.0)
    assert caught.value.code == "intensity_overflow"
    # The same values are fine where no conversion happens.
    assert decode_points(cloud.tobytes(), "kitti", 1.0)[1, 3] == np.float32(3e38)


def test_too_many_points_is_refused_before_decoding() -> None:
    body = np.zeros((11, 4), "<f4").tobytes()
    with pytest.raises(PointsError, match="11 points exceed the limit of 10") as caught:
        decode_points(body, "kitti", 255.0, max_points=10)
    assert caught.value.code == "too_many_points"
    assert decode_points(body, "kitti", 255.0, max_points=11).shape == (11, 4)


def test_xyz_clouds_read_intensity_zero(tmp_path) -> None:
    """Three columns are one point each, never misread as 3/4 of a four-column record."""
    cloud = np.arange(12, dtype="<f4").reshape(4, 3)
    points = decode_points(cloud.tobytes(), PointFormat.XYZ, 255.0)
    assert points.shape == (4, 4)
    np.testing.assert_array_equal(points[:, :3], cloud)
    assert not points[:, 3].any() and not PointFormat.XYZ.has_intensity
    with pytest.raises(PointsError, match="not a multiple of 12"):
        decode_points(cloud.tobytes()[:-4], "xyz", 255.0)


def _cloud(n: int = 50, intensity_max: float = 255.0) -> np.ndarray:
    rng = np.random.default_rng(3)
    points = rng.uniform(-60, 60, (n, 4)).astype(np.float32)
    points[:, 3] = rng.integers(0, int(intensity_max) + 1, n) if intensity_max > 1 else rng.random(n)
    return points


@pytest.mark.parametrize("fmt", list(PointFormat))
@pytest.mark.parametrize("model_max", [255.0, 1.0])
def test_encode_is_the_inverse_of_decode(fmt: PointFormat, model_max: float) -> None:
    points = _cloud(intensity_max=model_max)
    data = encode_points(points, fmt, model_max)
    if not fmt.self_describing:
        assert len(data) == points.shape[0] * 4 * fmt.columns
    back = decode_points(data, fmt, model_max)
    np.testing.assert_array_equal(back[:, :3], points[:, :3])
    if fmt.has_intensity:
        np.testing.assert_allclose(back[:, 3], points[:, 3], rtol=1e-6)
    else:
        assert not back[:, 3].any()  # xyz: no intensity column, the reader gives 0


def test_encode_writes_each_formats_scale_and_layout() -> None:
    points = np.array([[1.0, 2.0, 3.0, 51.0], [-4.0, 5.5, -6.0, 255.0]], dtype=np.float32)  # model max 255
    ring = np.array([7.0, 31.0], dtype=np.float32)
    records = {
        fmt: np.frombuffer(encode_points(points, fmt, 255.0, ring=ring if fmt == "nuscenes" else None), "<f4")
        for fmt in PointFormat.raw()
    }
    assert records[PointFormat.NUSCENES].tolist() == [1, 2, 3, 51, 7, -4, 5.5, -6, 255, 31]
    np.testing.assert_allclose(records[PointFormat.KITTI], [1, 2, 3, 0.2, -4, 5.5, -6, 1.0], rtol=1e-6)
    assert records[PointFormat.XYZI].tolist() == [1, 2, 3, 51, -4, 5.5, -6, 255]  # the model's own scale
    assert records[PointFormat.XYZ].tolist() == [1, 2, 3, -4, 5.5, -6]
    # A KITTI-scale model (max 1) writing nuScenes multiplies by 255.
    kitti_model = np.frombuffer(encode_points([[0, 0, 0, 0.2]], "nuscenes", 1.0), "<f4")
    np.testing.assert_allclose(kitti_model, [0, 0, 0, 51, 0], rtol=1e-6)
    # xyz also takes (N, 3); no ring given → ring 0
    assert encode_points(points[:, :3], "xyz", 255.0) == records[PointFormat.XYZ].tobytes()
    assert np.frombuffer(encode_points(points, "nuscenes", 255.0), "<f4")[4::5].tolist() == [0, 0]


def test_encode_refuses_what_the_reader_would_refuse() -> None:
    points = _cloud(4)
    with pytest.raises(PointsError, match="unknown point format") as caught:
        encode_points(points, "las", 255.0)
    assert caught.value.code == "unknown_format"
    for bad_shape in (points[:, :3], points[0], np.zeros((2, 5), np.float32)):
        with pytest.raises(PointsError) as caught:
            encode_points(bad_shape, "kitti", 255.0)
        assert caught.value.code == "bad_shape"
    with pytest.raises(PointsError, match="only in the nuscenes format"):
        encode_points(points, "kitti", 255.0, ring=np.zeros(4))
    with pytest.raises(PointsError, match=r"one value per point \(4\)"):
        encode_points(points, "nuscenes", 255.0, ring=np.zeros(3))
    nan = points.copy()
    nan[2, 1] = np.nan
    with pytest.raises(PointsError, match=r"1 of 4 point rows contain NaN or Inf \(first bad rows: 2\)"):
        encode_points(nan, "xyz", 255.0)
    huge = points.copy()
    huge[1, 3] = 1e38  # finite in the model's scale (max 1), Inf times 255 in the nuScenes scale
    with pytest.raises(PointsError) as caught:
        encode_points(huge, "nuscenes", 1.0)
    assert caught.value.code == "intensity_overflow"
    assert "first bad rows: 1" in str(caught.value)


def test_write_points_round_trips_through_read_points(tmp_path) -> None:
    points = _cloud(20)
    ring = np.arange(20, dtype=np.float32) % 32
    path = tmp_path / "scan.pcd.bin"
    write_points(path, points, "nuscenes", 255.0, ring=ring)
    assert path.stat().st_size == 20 * 5 * 4
    assert np.fromfile(path, "<f4").reshape(-1, 5)[:, 4].tolist() == ring.tolist()
    np.testing.assert_array_equal(read_points(path, "nuscenes", 255.0), points)
    np.testing.assert_allclose(read_points(path, "nuscenes", 1.0)[:, 3], points[:, 3] / 255, rtol=1e-6)
    write_points(path, points, "kitti", 255.0)  # replaces the file
    np.testing.assert_allclose(read_points(path, "kitti", 255.0), points, rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.pcd.bin"]  # no temporary left behind


# --- PCD and PLY: the intensity rule, options, and raw bodies that are really files ---------------


def _fields(intensity_name: str | None, values: np.ndarray | None, n: int = 3) -> dict[str, np.ndarray]:
    xyz = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    fields = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if intensity_name is not None and values is not None:
        fields[intensity_name] = values
    return fields


@pytest.mark.parametrize(
    ("names", "chosen"),
    [
        (["x", "y", "z", "intensity"], "intensity"),
        (["x", "y", "z", "Intensity"], "Intensity"),
        (["x", "y", "z", "scalar_Intensity"], "scalar_Intensity"),  # CloudCompare
        (["x", "y", "z", "reflectance", "intensity"], "intensity"),  # preference order, not file order
        (["x", "y", "z", "remission", "i"], "i"),
        (["x", "y", "z", "scalar_intensity", "intensity"], "intensity"),  # unprefixed first
        (["x", "y", "z", "remission"], "remission"),
        (["x", "y", "z", "rgb", "ring", "reflectivity"], None),  # Ouster's reflectivity is not one
    ],
)
def test_the_intensity_field_is_chosen_by_name(names: list[str], chosen: str | None) -> None:
    assert intensity_field(names) == chosen


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("intensity", np.uint8, 255.0),
        ("intensity", np.uint16, 65535.0),
        ("reflectance", np.uint16, 65535.0),  # an integer type's maximum wins over the name
        ("intensity", np.int16, 32767.0),
        ("i", np.uint32, 4294967295.0),
        ("intensity", np.float32, 255.0),
        ("intensity", np.float64, 255.0),
        ("reflectance", np.float32, 1.0),
        ("scalar_Remission", np.float64, 1.0),
    ],
)
def test_the_intensity_scale_comes_from_the_type_or_the_name(name: str, dtype: type, expected: float) -> None:
    assert file_intensity_scale(name, dtype) == expected
    assert file_intensity_scale(name, dtype, 7.0) == 7.0  # the caller's scale wins


def test_file_fields_become_model_scale_points() -> None:
    raw = np.array([0, 51, 255], np.uint8)
    points = points_from_fields(_fields("intensity", raw), 255.0)
    assert points.dtype == np.float32 and points.shape == (3, 4)
    np.testing.assert_array_equal(points[:, :3], np.arange(9, dtype=np.float32).reshape(3, 3))
    assert points[:, 3].tolist() == [0, 51, 255]
    np.testing.assert_allclose(points_from_fields(_fields("intensity", raw), 1.0)[:, 3], raw / 255, rtol=1e-6)
    remission = np.array([0.0, 0.2, 1.0], np.float32)  # a float reflectance is 0-1
    expected = remission * np.float32(255.0)  # the arithmetic of the kitti layout: same bits
    assert points_from_fields(_fields("remission", remission), 255.0)[:, 3].tolist() == expected.tolist()
    u16 = np.array([0, 65535], np.uint16)
    assert points_from_fields(_fields("intensity", u16, 2), 255.0)[:, 3].tolist() == [0, 255]
    halves = points_from_fields(_fields("intensity", u16, 2), 255.0, file_intensity_max=131070.0)
    assert halves[:, 3].tolist() == [0, 127.5]


def test_a_missing_intensity_is_an_error_unless_allowed() -> None:
    with pytest.raises(
        PointsError, match=r"body: PCD file has no intensity field \(fields: x, y, z, ring\)"
    ) as caught:
        points_from_fields({**_fields(None, None), "ring": np.zeros(3, np.uint8)}, 255.0, what="PCD file")
    assert caught.value.code == "missing_intensity"
    assert INTENSITY_RULE in str(caught.value)  # the message states the rule
    points = points_from_fields(_fields(None, None), 255.0, allow_missing_intensity=True)
    assert points.shape == (3, 4) and not points[:, 3].any()


def test_missing_coordinates_and_bad_values_are_named() -> None:
    fields = _fields("intensity", np.zeros(3, np.float32))
    del fields["y"]
    with pytest.raises(PointsError, match="has no y field") as caught:
        points_from_fields(fields, 255.0)
    assert caught.value.code == "missing_field"
    fields = _fields("intensity", np.zeros(3, np.float32))
    fields["z"] = np.array([0, np.nan, 1], np.float64)
    with pytest.raises(
        PointsError, match=r"1 of 3 point rows have a NaN or Inf z \(first bad rows: 1\)"
    ) as caught:
        points_from_fields(fields, 255.0)
    assert caught.value.code == "non_finite"
    fields["z"] = np.array([0, 1e300, 1], np.float64)  # finite in the file, Inf as float32
    with pytest.raises(PointsError, match="beyond float32") as caught:
        points_from_fields(fields, 255.0)
    assert caught.value.code == "out_of_range"
    fields = _fields("reflectance", np.array([0, 1, 3e38], np.float32))  # 0-1 scaled by 255: Inf
    with pytest.raises(PointsError, match="overflows float32") as caught:
        points_from_fields(fields, 255.0)
    assert caught.value.code == "intensity_overflow"
    fields = _fields("intensity", np.zeros((3, 2), np.float32))
    with pytest.raises(PointsError, match="field 'intensity' has 2 values per point") as caught:
        points_from_fields(fields, 255.0)
    assert caught.value.code == "bad_header"


@pytest.mark.parametrize("fmt", [PointFormat.PCD, PointFormat.PLY])
def test_raw_bodies_that_are_files_are_refused_with_the_format_to_use(fmt: PointFormat) -> None:
    data = encode_points(_cloud(8), fmt, 255.0)
    for raw in PointFormat.raw():
        with pytest.raises(PointsError, match=f"send it with format={fmt.value}") as caught:
            decode_points(data, raw, 255.0)
        assert caught.value.code == "wrong_format"
    # a header alone, without its data, is still recognised; a broken one is not
    header = (
        data[: data.index(b"end_header\n") + 11]
        if fmt is PointFormat.PLY
        else data[: data.index(b"DATA binary\n") + 12]
    )
    with pytest.raises(PointsError) as caught:
        decode_points(header, "kitti", 255.0)
    assert caught.value.code == "wrong_format"
    broken = header.replace(b"FIELDS", b"FIELDZ").replace(b"format binary", b"format binery")
    padded = broken + b"\0" * (-len(broken) % 16)
    # not a header: read as the float32 records it was sent as (ASCII bytes are finite floats)
    assert decode_points(padded, "kitti", 255.0).shape == (len(padded) // 16, 4)


def test_real_clouds_starting_with_header_bytes_are_still_clouds() -> None:
    """A float32 whose bytes spell ``ply\\n`` (1.2e-32) or ``#`` does not make a cloud a file."""
    cloud = np.zeros((4, 4), "<f4")
    cloud.view(np.uint8)[0, :4] = list(b"ply\n")
    cloud.view(np.uint8)[1, :4] = list(b"# .P")
    assert decode_points(cloud.tobytes(), "kitti", 255.0).shape == (4, 4)
    assert decode_points(b"VERSION 0.7\n" + b"\0" * 4, "xyzi", 255.0).shape == (1, 4)  # no DATA line


def test_file_intensity_max_replaces_a_raw_formats_scale() -> None:
    cloud = np.array([[1, 2, 3, 50.0]], "<f4")
    assert decode_points(cloud.tobytes(), "kitti", 255.0, file_intensity_max=100.0)[0, 3] == np.float32(127.5)
    assert decode_points(cloud.tobytes(), "xyzi", 1.0, file_intensity_max=100.0)[0, 3] == np.float32(0.5)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(PointsError, match="intensity_max must be a finite number above 0") as caught:
            decode_points(cloud.tobytes(), "kitti", 255.0, file_intensity_max=bad)
        assert caught.value.code == "invalid_option"
    with pytest.raises(PointsError, match="xyz has no intensity column") as caught:
        decode_points(cloud.tobytes()[:12], "xyz", 255.0, file_intensity_max=1.0)
    assert caught.value.code == "invalid_option"


@pytest.mark.parametrize("fmt", [PointFormat.PCD, PointFormat.PLY])
def test_read_points_takes_files_and_the_same_options(tmp_path, fmt: PointFormat) -> None:
    points = _cloud(30)
    path = tmp_path / f"scan.{fmt.value}"
    write_points(path, points, fmt, 255.0)
    assert PointFormat.for_path(path) is fmt
    np.testing.assert_array_equal(read_points(path, fmt, 255.0), points)
    np.testing.assert_allclose(
        read_points(path, fmt, 255.0, file_intensity_max=510.0)[:, 3], points[:, 3] / 2
    )
    with pytest.raises(PointsError, match=r"scan\.(pcd|ply): 30 points exceed the limit of 29") as caught:
        read_points(path, fmt, 255.0, max_points=29)
    assert caught.value.code == "too_many_points"
    with pytest.raises(PointsError, match="only in the nuscenes format"):
        encode_points(points, fmt, 255.0, ring=np.zeros(30))
