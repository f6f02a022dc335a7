"""The class tables: names, order and colours, checked against the data sets' own definitions."""

from __future__ import annotations

import pytest
import yaml

from seg3d.classes import (
    CLASS_TABLES,
    NUSCENES_LIDARSEG,
    NUSCENES_RAW_TO_TRAIN,
    SEMANTICKITTI,
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
