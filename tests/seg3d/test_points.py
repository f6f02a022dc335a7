"""The one point reader: formats, intensity conversion and the checks that guard the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seg3d.points import (
    PointFormat,
    PointsError,
    check_points,
    decode_points,
    read_points,
    to_model_intensity,
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
    assert [(f.value, f.columns, f.intensity_max) for f in PointFormat] == [
        ("nuscenes", 5, 255.0),
        ("kitti", 4, 1.0),
        ("xyzi", 4, None),
        ("xyz", 3, None),
    ]
    assert str(PointFormat.KITTI) == "kitti" and PointFormat("nuscenes") is PointFormat.NUSCENES


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
