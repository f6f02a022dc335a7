"""Label files in the data sets' layouts: nuScenes-lidarseg bytes are the class indices, SemanticKITTI
``.label`` records are the raw ids of semantic-kitti.yaml, and the classes' main raw categories are
the ones nuscenes-devkit colours in this project's palette."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from seg3d.classes import (
    NUSCENES_LIDARSEG,
    NUSCENES_RAW_CLASSES,
    SEMANTICKITTI,
    ClassTable,
    nuscenes_train_id,
)
from seg3d.labelfiles import (
    NUSCENES_MAIN_CATEGORY,
    SEMANTICKITTI_RAW_IDS,
    decode_label_file,
    encode_label_file,
    label_file_name,
    nuscenes_raw_labels,
    write_label_file,
)
from seg3d.scans import real_data_dir


def test_names_follow_the_model_classes() -> None:
    assert label_file_name("scan", NUSCENES_LIDARSEG) == "scan_lidarseg.bin"
    assert label_file_name("000000", SEMANTICKITTI) == "000000.label"
    other = ClassTable("other", ("a", "b"), ((0, 0, 0), (1, 1, 1)))
    assert label_file_name("x", other) == "x_labels.bin"


def test_nuscenes_files_are_one_uint8_class_index_per_point(tmp_path) -> None:
    labels = np.random.default_rng(0).integers(0, len(NUSCENES_LIDARSEG), 1000)
    write_label_file(tmp_path / "a_lidarseg.bin", labels, NUSCENES_LIDARSEG)
    data = (tmp_path / "a_lidarseg.bin").read_bytes()
    assert len(data) == 1000 and np.array_equal(np.frombuffer(data, np.uint8), labels)
    assert np.array_equal(decode_label_file(data, NUSCENES_LIDARSEG), labels)


def test_semantickitti_files_hold_the_raw_ids_of_semantic_kitti_yaml() -> None:
    real = real_data_dir()
    if real is None:
        pytest.skip("real data not found")
    spec = yaml.safe_load((real / "semantickitti" / "semantic-kitti.yaml").read_text())
    assert tuple(spec["learning_map_inv"][i] for i in range(len(SEMANTICKITTI))) == SEMANTICKITTI_RAW_IDS
    for train, raw in enumerate(SEMANTICKITTI_RAW_IDS):  # each raw id maps back to its class
        assert spec["learning_map"][raw] == train
        assert spec["labels"][raw].replace(" ", "-") == SEMANTICKITTI.names[train] or train == 0
    labels = np.arange(len(SEMANTICKITTI)).repeat(3)
    data = encode_label_file(labels, SEMANTICKITTI)
    records = np.frombuffer(data, dtype="<u4")
    assert records.size == labels.size  # one uint32 per point
    assert np.array_equal(records & 0xFFFF, np.asarray(SEMANTICKITTI_RAW_IDS)[labels])
    assert not (records >> 16).any()  # instance 0
    # A file with instance ids reads back the same classes; a raw id of no class is refused.
    assert np.array_equal(
        decode_label_file((records | (7 << 16)).astype("<u4").tobytes(), SEMANTICKITTI), labels
    )
    with pytest.raises(ValueError, match="no training class"):
        decode_label_file(np.array([52], dtype="<u4").tobytes(), SEMANTICKITTI)
    with pytest.raises(ValueError, match="multiple of 4"):
        decode_label_file(b"\x00" * 6, SEMANTICKITTI)


def test_bad_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        encode_label_file(np.array([0, 17]), NUSCENES_LIDARSEG)
    with pytest.raises(ValueError, match="one per point"):
        encode_label_file(np.zeros((2, 2), dtype=int), NUSCENES_LIDARSEG)
    with pytest.raises(ValueError, match="outside"):
        decode_label_file(bytes([20]), NUSCENES_LIDARSEG)


def test_main_categories_map_back_to_their_class_and_carry_its_devkit_colour() -> None:
    assert len(NUSCENES_MAIN_CATEGORY) == len(NUSCENES_LIDARSEG)
    for i, category in enumerate(NUSCENES_MAIN_CATEGORY):
        assert nuscenes_train_id(category) == i
    colour_map = pytest.importorskip("nuscenes.utils.color_map", reason="nuscenes-devkit is not installed")
    devkit = colour_map.get_colormap()
    assert [tuple(devkit[c]) for c in NUSCENES_MAIN_CATEGORY] == list(NUSCENES_LIDARSEG.colours)


def test_raw_labels_use_the_given_category_numbering() -> None:
    labels = np.array([4, 11, 16, 0])
    official = nuscenes_raw_labels(labels)
    assert official.dtype == np.uint8
    assert [NUSCENES_RAW_CLASSES[i] for i in official] == [
        "vehicle.car",
        "flat.driveable_surface",
        "static.vegetation",
        "noise",
    ]
    shuffled = {name: 31 - i for i, name in enumerate(NUSCENES_RAW_CLASSES)}
    assert nuscenes_raw_labels(labels, shuffled).tolist() == [31 - int(i) for i in official]
    with pytest.raises(ValueError, match="lacks"):
        nuscenes_raw_labels(labels, {"vehicle.car": 17})
