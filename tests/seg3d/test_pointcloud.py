from __future__ import annotations

import numpy as np
import pytest
import torch

from seg3d.io import read_bin
from seg3d.pointcloud import check_points, fill_outside_crop, to_model_intensity


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


def test_read_bin_names_the_file(tmp_path) -> None:
    good = tmp_path / "a.bin"
    np.arange(10, dtype=np.float32).tofile(good)
    assert read_bin(good, 5).shape == (2, 5)
    with pytest.raises(ValueError, match=r"a\.bin: 40 bytes is not a multiple of 16"):
        read_bin(good, 4)
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        read_bin(tmp_path / "missing.bin", 4)


def test_atomic_writer_commits_only_on_success(tmp_path) -> None:
    from seg3d.io import atomic_writer, write_atomic

    target = tmp_path / "artifact.bin"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first" and (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"  # the old content survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.bin"]  # no temporary left behind


def test_read_points_converts_intensity_and_names_bad_formats(tmp_path) -> None:
    from seg3d.io import read_points

    path = tmp_path / "kitti.bin"
    np.array([[1, 2, 3, 0.5], [4, 5, 6, 1.0]], dtype="<f4").tofile(path)
    np.testing.assert_allclose(read_points(path, "kitti", 255.0)[:, 3], [127.5, 255.0])
    np.testing.assert_allclose(read_points(path, "xyzi", 255.0)[:, 3], [0.5, 1.0])  # left as it is
    with pytest.raises(ValueError, match="unknown point format 'las'"):
        read_points(path, "las", 255.0)


def test_points_outside_the_crop_take_their_nearest_in_crop_label() -> None:
    xyz = np.array([[0.0, 0, 0], [10, 0, 0], [60, 0, 0], [11, 80, 0], [-70, 0, 0]])
    inside = np.array([True, True, False, False, False])
    labels = fill_outside_crop(xyz, inside, np.array([3, 7], dtype=np.uint8))
    assert labels.tolist() == [3, 7, 7, 7, 3] and labels.dtype == np.uint8
    with pytest.raises(ValueError, match="2 in-crop points"):
        fill_outside_crop(xyz, inside, np.array([1]))
    with pytest.raises(ValueError, match="no point inside"):
        fill_outside_crop(xyz, np.zeros(5, dtype=bool), np.array([], dtype=np.uint8))
