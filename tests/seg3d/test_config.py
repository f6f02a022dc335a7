from __future__ import annotations

import pytest
from pydantic import ValidationError

from seg3d.config import ModelConfig, bundled_configs, load_config


def test_bundled_configs_load() -> None:
    assert set(bundled_configs()) >= {"nuscenes_full", "nuscenes_c128", "semantickitti_small", "tiny"}
    for name in bundled_configs():
        cfg = load_config(name)
        assert cfg.class_names[cfg.ignore_index] in {"ignore", "unlabeled"}


def test_nuscenes_grid_is_0p1m_with_2dpass_scales() -> None:
    cfg = load_config("nuscenes_full")
    assert cfg.grid.voxel_size(1) == pytest.approx((0.1, 0.1, 0.1))
    assert cfg.grid.cells(16) == (63, 63, 5)
    assert cfg.grid.cells(4) == (250, 250, 18)
    assert cfg.encoder.conv_scales == (1, 2, 4, 8, 16, 16)
    assert cfg.num_classes == 17


def test_semantickitti_small_shape() -> None:
    cfg = load_config("semantickitti_small")
    assert cfg.num_classes == 20
    assert cfg.encoder.scale_list == (2, 4, 8, 16)
    assert cfg.input.intensity_max == 1.0


def _raw(**changes):
    base = load_config("tiny").model_dump()
    for dotted, value in changes.items():
        target = base
        *parents, leaf = dotted.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder__scale_list": [2, 3]}, "powers of two"),
        ({"encoder__scale_list": [4, 2]}, "must not decrease"),
        ({"encoder__hidden": 33}, "even"),
        ({"grid__point_range": [[1, 0], [0, 1], [0, 1]]}, "min < max"),
        ({"grid__spatial_shape": [0, 10, 10]}, "positive"),
        ({"ignore_index": 40}, "not a class index"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_configs_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelConfig.model_validate(_raw(**change))


def test_unknown_config_names_bundled_ones(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nuscenes_full"):
        load_config("does_not_exist")


def test_configs_take_their_classes_from_the_data_set_table() -> None:
    from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI

    assert load_config("tiny").classes is NUSCENES_LIDARSEG
    assert load_config("semantickitti_small").classes is SEMANTICKITTI
    assert "class_names" not in load_config("tiny").model_dump()  # never stored twice


def test_a_stored_class_list_must_be_the_table() -> None:
    """Checkpoints and /1 manifests carry the list: the same list loads, a reordered one is refused."""
    stored = {**load_config("tiny").model_dump(), "class_names": list(NUSCENES_TRAIN), "ignore_index": 0}
    assert ModelConfig.model_validate(stored) == load_config("tiny")
    swapped = list(NUSCENES_TRAIN)
    swapped[3], swapped[4] = swapped[4], swapped[3]  # bus <-> car
    with pytest.raises(ValidationError, match="differ from the nuscenes-lidarseg class table"):
        ModelConfig.model_validate({**stored, "class_names": swapped})
    with pytest.raises(ValidationError, match="differs from the nuscenes-lidarseg table's 0"):
        ModelConfig.model_validate({**stored, "ignore_index": 4})


NUSCENES_TRAIN = load_config("tiny").class_names
