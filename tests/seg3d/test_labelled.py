"""Labelled PCD/PLY files load back with their labels and palette colours through independent readers
(plyfile, pypcd4), in exactly the layout the contract names, and our own reader reads them too."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import plyfile
import pytest
from pypcd4 import PointCloud

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI, ClassTable
from seg3d.labelled import encode_labelled, pack_rgb, write_labelled
from seg3d.points import PointFormat, PointsError, decode_points


def _cloud(classes: ClassTable, n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.normal(0, 20, (n, 4)).astype(np.float32)
    points[:, 3] = rng.integers(0, 256, n)
    labels = rng.integers(0, len(classes), n).astype(np.uint8)
    labels[: min(n, len(classes))] = np.arange(min(n, len(classes)))  # every class present
    return points, labels


@pytest.mark.parametrize("classes", [NUSCENES_LIDARSEG, SEMANTICKITTI], ids=lambda c: c.name)
def test_labelled_ply_has_exactly_the_contract_layout_through_plyfile(classes: ClassTable) -> None:
    points, labels = _cloud(classes)
    data = encode_labelled(points, labels, classes, PointFormat.PLY)
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    ply = plyfile.PlyData.read(io.BytesIO(data))
    assert [e.name for e in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    declared = [(p.name, p.val_dtype) for p in vertex.properties]
    assert declared == [
        ("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"),
        ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("label", "u1"),
    ]  # fmt: skip
    assert b"property float x\n" in data and b"property uchar label\n" in data  # the type names written
    for i, name in enumerate(["x", "y", "z", "intensity"]):
        np.testing.assert_array_equal(vertex[name], points[:, i])  # input order, values as given
    np.testing.assert_array_equal(vertex["label"], labels)
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    np.testing.assert_array_equal(rgb, np.asarray(classes.colours, np.uint8)[labels])  # the palette
    assert f"class 4 {classes.names[4]} {' '.join(map(str, classes.colours[4]))}" in ply.comments


@pytest.mark.parametrize("classes", [NUSCENES_LIDARSEG, SEMANTICKITTI], ids=lambda c: c.name)
def test_labelled_pcd_loads_back_through_pypcd4(classes: ClassTable) -> None:
    points, labels = _cloud(classes, seed=1)
    data = encode_labelled(points, labels, classes, "pcd")
    assert b"\nFIELDS x y z intensity label rgb\n" in data and b"\nDATA binary\n" in data
    assert (
        b"\nSIZE 4 4 4 4 4 4\nTYPE F F F F U F\n" in data
    )  # label U4 as PCL's PointXYZRGBL, rgb packed in F4
    cloud = PointCloud.from_fileobj(io.BytesIO(data))
    assert cloud.fields == ("x", "y", "z", "intensity", "label", "rgb") and cloud.points == len(labels)
    np.testing.assert_array_equal(cloud.numpy(("x", "y", "z", "intensity")), points)
    np.testing.assert_array_equal(cloud.numpy(("label",))[:, 0], labels)
    rgb = PointCloud.decode_rgb(cloud.numpy(("rgb",))[:, 0].astype(np.float32))
    np.testing.assert_array_equal(rgb, np.asarray(classes.colours, np.uint8)[labels])


def test_pack_rgb_is_pcls_packing_and_never_a_nan() -> None:
    colours = np.array([[255, 255, 255], [1, 2, 3], [0, 0, 0]], np.uint8)
    packed = pack_rgb(colours)
    assert packed.dtype == np.float32 and np.isfinite(packed).all()
    assert packed.view(np.uint32).tolist() == [0xFFFFFF, 0x010203, 0]
    np.testing.assert_array_equal(PointCloud.decode_rgb(packed), colours)  # pypcd4's unpacking


@pytest.mark.parametrize("fmt", [PointFormat.PCD, PointFormat.PLY])
def test_labelled_files_read_back_through_the_point_reader(fmt: PointFormat) -> None:
    points, labels = _cloud(NUSCENES_LIDARSEG, seed=2)
    data = encode_labelled(points, labels, NUSCENES_LIDARSEG, fmt)
    # a float `intensity` field is 0-255 by the intensity rule: a 0-255 model reads the points back
    np.testing.assert_array_equal(decode_points(data, fmt, 255.0), points)


def test_write_labelled_is_atomic_and_equal_to_the_encoding(tmp_path: Path) -> None:
    points, labels = _cloud(SEMANTICKITTI, 50)
    for fmt in ("pcd", "ply"):
        path = tmp_path / f"scan.{fmt}"
        write_labelled(path, points, labels, SEMANTICKITTI, fmt)
        assert path.read_bytes() == encode_labelled(points, labels, SEMANTICKITTI, fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.pcd", "scan.ply"]  # no temporaries left


def test_empty_clouds_and_bad_inputs() -> None:
    empty = encode_labelled(np.zeros((0, 4), np.float32), np.zeros(0, np.uint8), NUSCENES_LIDARSEG, "ply")
    assert len(plyfile.PlyData.read(io.BytesIO(empty))["vertex"].data) == 0
    points, labels = _cloud(NUSCENES_LIDARSEG, 10)
    cases = [
        ((points, labels, "kitti"), "unknown_format", "labelled files are pcd or ply, not 'kitti'"),
        ((points, labels, "las"), "unknown_format", "not 'las'"),
        ((points[:, :3], labels, "ply"), "bad_shape", r"points must be \(N, 4\)"),
        ((points, labels[:-1], "ply"), "bad_shape", r"labels must be \(10,\) integers"),
        ((points, labels.astype(np.float32), "pcd"), "bad_shape", "integers"),
        ((points, np.full(10, 17, np.uint8), "pcd"), "bad_shape", "class indices 0..16 of nuscenes-lidarseg"),
        ((points, np.full(10, -1, np.int64), "pcd"), "bad_shape", "got -1..-1"),
    ]
    for (p, lab, fmt), code, message in cases:
        with pytest.raises(PointsError, match=message) as caught:
            encode_labelled(p, lab, NUSCENES_LIDARSEG, fmt)
        assert caught.value.code == code
    nan = points.copy()
    nan[3, 0] = np.nan
    with pytest.raises(PointsError, match=r"first bad rows: 3") as caught:
        encode_labelled(nan, labels, NUSCENES_LIDARSEG, "ply")
    assert caught.value.code == "non_finite"
