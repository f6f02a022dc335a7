"""serve.label.outputs: each layout's bytes, built from hand-made labels, and the resume check."""

from __future__ import annotations

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, NUSCENES_RAW_CLASSES, SEMANTICKITTI
from serve.label.outputs import Encoding, LabelEncoding

OFFICIAL = {name: i for i, name in enumerate(NUSCENES_RAW_CLASSES)}
NUS = NUSCENES_LIDARSEG.names


def _nus(*names: str) -> np.ndarray:
    return np.asarray([NUS.index(n) for n in names], dtype=np.uint8)


def test_raw_lidarseg_bytes_follow_the_data_sets_own_category_numbering() -> None:
    labels = _nus("car", "driveable_surface", "vegetation")
    official = LabelEncoding(Encoding.NUSCENES_RAW, NUSCENES_LIDARSEG, OFFICIAL).encode(labels)
    assert list(official) == [
        OFFICIAL["vehicle.car"],
        OFFICIAL["flat.driveable_surface"],
        OFFICIAL["static.vegetation"],
    ]
    # a data set that numbers its categories otherwise gets its own numbers
    shuffled = {name: (i * 7) % 32 for i, name in enumerate(NUSCENES_RAW_CLASSES)}
    mine = LabelEncoding(Encoding.NUSCENES_RAW, NUSCENES_LIDARSEG, shuffled).encode(labels)
    assert list(mine) == [
        shuffled["vehicle.car"],
        shuffled["flat.driveable_surface"],
        shuffled["static.vegetation"],
    ]


def test_challenge_bytes_are_the_class_indices() -> None:
    labels = _nus("barrier", "vegetation", "car")
    assert LabelEncoding(Encoding.NUSCENES_CHALLENGE, NUSCENES_LIDARSEG).encode(labels) == bytes([1, 16, 4])


def test_semantickitti_bytes_are_raw_ids_through_the_declared_mapping() -> None:
    labels = _nus("car", "driveable_surface", "manmade", "bus", "traffic_cone", "pedestrian")
    data = LabelEncoding(Encoding.SEMANTICKITTI, NUSCENES_LIDARSEG).encode(labels)
    raw = np.frombuffer(data, dtype="<u4")
    # car 10, road 40, building 50, other-vehicle 20, unlabeled 0 (no SemanticKITTI cone), person 30
    assert raw.tolist() == [10, 40, 50, 20, 0, 30]


def test_a_semantickitti_model_is_written_as_nuscenes_through_the_other_mapping() -> None:
    sk = SEMANTICKITTI.names
    labels = np.asarray([sk.index("road"), sk.index("fence"), sk.index("bicyclist")])
    data = LabelEncoding(Encoding.NUSCENES_CHALLENGE, SEMANTICKITTI).encode(labels)
    assert list(data) == [NUS.index("driveable_surface"), NUS.index("manmade"), 0]


def test_check_accepts_its_own_output_and_names_what_is_wrong() -> None:
    encoding = LabelEncoding(Encoding.NUSCENES_RAW, NUSCENES_LIDARSEG, OFFICIAL)
    data = encoding.encode(_nus("car", "sidewalk", "terrain"))
    assert encoding.check(data, 3) is None
    assert "2 bytes for 3 points" in (encoding.check(data[:2], 3) or "")
    # raw category 1 (animal) is no class's main category: this encoding never writes it
    assert "never written" in (encoding.check(bytes([1, 1, 1]), 3) or "")
    kitti = LabelEncoding(Encoding.SEMANTICKITTI, NUSCENES_LIDARSEG)
    good = kitti.encode(_nus("car", "sidewalk"))
    assert kitti.check(good, 2) is None
    assert kitti.check(good, 3) is not None
    assert "no training class" in (kitti.check(np.asarray([10, 999], dtype="<u4").tobytes(), 2) or "")


def test_raw_encoding_needs_a_numbering() -> None:
    with pytest.raises(ValueError, match="category numbering"):
        LabelEncoding(Encoding.NUSCENES_RAW, NUSCENES_LIDARSEG)
