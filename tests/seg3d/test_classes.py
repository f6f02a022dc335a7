"""The class tables: names, order and colours, checked against the data sets' own definitions."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from seg3d.classes import (
    CLASS_TABLES,
    NUSCENES_LIDARSEG,
    NUSCENES_RAW_TO_TRAIN,
    NUSCENES_TO_SEMANTICKITTI,
    SEMANTICKITTI,
    SEMANTICKITTI_TO_NUSCENES,
    ClassMapping,
    ClassTable,
    class_mapping,
    class_table,
    nuscenes_train_id,
)
from seg3d.scans import real_data_dir


def test_every_table_has_one_colour_per_class() -> None:
    for table in set(CLASS_TABLES.values()):
        assert len(table.colours) == len(table.names) == len(set(table.names))
        assert all(0 <= c <= 255 for rgb in table.colours for c in rgb)
    with pytest.raises(ValueError, match="no class table for data set 'waymo'"):
        class_table("waymo")


def test_nuscenes_colours_are_the_devkits() -> None:
    """Each training class takes nuscenes-devkit's colour of a raw category that maps to it."""
    color_map = pytest.importorskip("nuscenes.utils.color_map")
    devkit = color_map.get_colormap()
    for index, name in enumerate(NUSCENES_LIDARSEG.names[1:], start=1):
        sources = [raw for raw, train in NUSCENES_RAW_TO_TRAIN.items() if train == name]
        assert NUSCENES_LIDARSEG.colours[index] in [devkit[raw] for raw in sources], name
        assert all(nuscenes_train_id(raw) == index for raw in sources)


def test_semantickitti_table_is_the_datasets_yaml() -> None:
    root = real_data_dir()
    if root is None:
        pytest.skip("real scans not found")
    data = yaml.safe_load((root / "semantickitti" / "semantic-kitti.yaml").read_text())
    for index in range(1, len(SEMANTICKITTI)):
        raw = data["learning_map_inv"][index]
        assert SEMANTICKITTI.names[index] == data["labels"][raw]
        blue, green, red = data["color_map"][raw]  # stored as BGR
        assert SEMANTICKITTI.colours[index] == (red, green, blue)


def test_semantickitti_to_nuscenes_maps_hand_built_labels_by_name() -> None:
    names = SEMANTICKITTI.names
    source = np.array([names.index(n) for n in (
        "road", "parking", "sidewalk", "other-ground", "building", "fence", "pole", "traffic-sign",
        "vegetation", "trunk", "terrain", "car", "truck", "other-vehicle", "bicycle", "bicyclist",
        "motorcycle", "motorcyclist", "person", "unlabeled",
    )])  # fmt: skip
    expected = [
        "driveable_surface", "ignore", "sidewalk", "other_flat", "manmade", "manmade", "manmade", "manmade",
        "vegetation", "vegetation", "terrain", "car", "truck", "ignore", "bicycle", "ignore",
        "motorcycle", "ignore", "pedestrian", "ignore",
    ]  # fmt: skip
    mapped = SEMANTICKITTI_TO_NUSCENES.apply(source)
    assert [NUSCENES_LIDARSEG.names[i] for i in mapped] == expected
    assert SEMANTICKITTI_TO_NUSCENES.ignored == ("other-vehicle", "bicyclist", "motorcyclist", "parking")
    assert "manmade ← building, fence, pole, traffic-sign" in SEMANTICKITTI_TO_NUSCENES.describe()
    assert class_mapping(SEMANTICKITTI, NUSCENES_LIDARSEG) is SEMANTICKITTI_TO_NUSCENES
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 20\)"):
        SEMANTICKITTI_TO_NUSCENES.apply(np.array([20]))


def test_nuscenes_classes_written_as_semantickitti_classes() -> None:
    names = [
        "ignore",
        "barrier",
        "bus",
        "car",
        "trailer",
        "pedestrian",
        "driveable_surface",
        "manmade",
        "traffic_cone",
    ]
    source = np.array([NUSCENES_LIDARSEG.names.index(n) for n in names])
    mapped = NUSCENES_TO_SEMANTICKITTI.apply(source)
    expected = [
        "unlabeled",
        "unlabeled",
        "other-vehicle",
        "car",
        "other-vehicle",
        "person",
        "road",
        "building",
        "unlabeled",
    ]
    assert [SEMANTICKITTI.names[i] for i in mapped] == expected
    assert NUSCENES_TO_SEMANTICKITTI.ignored == ("barrier", "traffic_cone")
    assert class_mapping(NUSCENES_LIDARSEG, SEMANTICKITTI) is NUSCENES_TO_SEMANTICKITTI
    # where one class maps to one class, it is the reverse of the declared SemanticKITTI -> nuScenes
    back = dict(SEMANTICKITTI_TO_NUSCENES.pairs)
    for nuscenes_name, kitti_name in NUSCENES_TO_SEMANTICKITTI.pairs:
        if kitti_name in back and sum(t == back[kitti_name] for t in back.values()) == 1:
            assert back[kitti_name] == nuscenes_name


def test_class_mappings_are_checked_and_identity_within_a_table() -> None:
    identity = class_mapping(SEMANTICKITTI, SEMANTICKITTI)
    labels = np.arange(len(SEMANTICKITTI))
    assert identity.apply(labels).tolist() == labels.tolist()
    other = ClassTable("mine", ("ignore", "thing"), ((0, 0, 0), (1, 2, 3)))
    with pytest.raises(ValueError, match="no class mapping is declared from nuscenes-lidarseg to mine"):
        class_mapping(NUSCENES_LIDARSEG, other)
    with pytest.raises(ValueError, match="'lorry' is not a class of nuscenes-lidarseg"):
        ClassMapping(SEMANTICKITTI, NUSCENES_LIDARSEG, (("truck", "lorry"),))
    with pytest.raises(ValueError, match="mapped twice"):
        ClassMapping(SEMANTICKITTI, NUSCENES_LIDARSEG, (("truck", "truck"), ("truck", "car")))
