"""Tokens, file names and fixed tables as nuScenes has them."""

from __future__ import annotations

import re

import pytest

from seg3d.classes import NUSCENES_RAW_CLASSES
from training.data.synthetic.plan import plan_scenes
from training.data.synthetic.tables import (
    ATTRIBUTES,
    CATEGORY_DESCRIPTIONS,
    lidarseg_filename,
    sample_data_filename,
    token,
    visibility_token,
)


def test_tokens_are_32_hex_and_fixed_by_seed_and_identity() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", token(0, "sample", "scene-0061", 0))
    assert token(0, "sample", "scene-0061", 0) == token(0, "sample", "scene-0061", 0)
    assert token(0, "sample", "scene-0061", 0) != token(1, "sample", "scene-0061", 0)
    assert token(0, "sample", "scene-0061", 0) != token(0, "sample", "scene-0061", 1)


@pytest.mark.parametrize(
    ("share", "level"), [(0.0, "1"), (0.39, "1"), (0.4, "2"), (0.6, "3"), (0.8, "4"), (1.0, "4")]
)
def test_visibility_bins(share: float, level: str) -> None:
    assert visibility_token(share) == level


def test_file_names() -> None:
    plan = plan_scenes(0, "v1.0-mini", 1, 1)[0]
    assert (
        sample_data_filename(plan, "LIDAR_TOP", 123)
        == f"samples/LIDAR_TOP/{plan.logfile}__LIDAR_TOP__123.pcd.bin"
    )
    assert sample_data_filename(plan, "CAM_BACK", 45) == f"samples/CAM_BACK/{plan.logfile}__CAM_BACK__45.jpg"
    assert lidarseg_filename("v1.0-mini", "ab" * 16) == f"lidarseg/v1.0-mini/{'ab' * 16}_lidarseg.bin"


def test_fixed_tables_cover_the_nuscenes_vocabularies() -> None:
    assert list(CATEGORY_DESCRIPTIONS) == list(NUSCENES_RAW_CLASSES)
    assert sorted(ATTRIBUTES) == sorted(
        ["vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
         "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving"]
    )  # fmt: skip
