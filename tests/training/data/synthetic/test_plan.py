"""Scene names from the devkit splits, timing and logs like nuScenes, clear refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from nuscenes.utils import splits

from training.data.synthetic.plan import GenerationError, plan_scenes, scene_rng
from training.data.synthetic.sensors import CAMERA_CHANNELS


def test_mini_uses_the_ten_mini_scenes_with_their_splits() -> None:
    plans = plan_scenes(0, "v1.0-mini", 10, 5)
    assert {p.name: p.split for p in plans} == {
        **{n: "train" for n in splits.mini_train},
        **{n: "val" for n in splits.mini_val},
    }


@pytest.mark.parametrize(("count", "val"), [(1, 0), (2, 1), (5, 1), (20, 4), (850, 150)])
def test_trainval_keeps_about_a_fifth_for_validation(count: int, val: int) -> None:
    plans = plan_scenes(0, "v1.0-trainval", count, 1)
    names = {p.name for p in plans}
    assert len(names) == count
    assert sum(p.split == "val" for p in plans) == val
    assert all((p.name in splits.val) == (p.split == "val") for p in plans)
    assert all(p.name in splits.train or p.name in splits.val for p in plans)


@pytest.mark.parametrize(
    ("version", "scenes", "samples", "message"),
    [
        ("v1.0-mini", 11, 5, "v1.0-mini has 10 scenes"),
        ("v1.0-trainval", 851, 5, "v1.0-trainval has 850 scenes"),
        ("v1.0-mini", 0, 5, "at least 1"),
        ("v1.0-mini", 2, 0, "at least 1"),
        ("v1.0-test", 2, 2, "unknown version"),
    ],
)
def test_impossible_plans_are_refused(version: str, scenes: int, samples: int, message: str) -> None:
    with pytest.raises(GenerationError, match=message):
        plan_scenes(0, version, scenes, samples)


def test_timing_logs_and_locations_look_like_nuscenes() -> None:
    plans = plan_scenes(3, "v1.0-mini", 10, 6)
    for plan in plans:
        lidar = np.array([t.lidar for t in plan.times])
        assert lidar[0] == plan.start_us and np.all(np.abs(np.diff(lidar) - 500_000) <= 6_000)
        for t in plan.times:
            offsets = [t.cameras[c] - t.lidar for c in CAMERA_CHANNELS]
            assert all(-47_000 < o < 0 for o in offsets)
            # The LiDAR sweeps the cameras in turn: FRONT_LEFT first, BACK_LEFT last.
            assert np.argmin(offsets) == CAMERA_CHANNELS.index("CAM_FRONT_LEFT")
            assert np.argmax(offsets) == CAMERA_CHANNELS.index("CAM_BACK_LEFT")
        assert re.fullmatch(r"n0(08|15)-2018-\d\d-\d\d-\d\d-\d\d-\d\d[+-]0[48]00", plan.logfile)
        boston = plan.location.name == "boston-seaport"
        assert (
            plan.logfile.startswith("n008" if boston else "n015")
            and plan.location.left_hand_traffic != boston
        )
        assert 3.0 <= plan.speed <= 7.0
        assert np.isclose(plan.path_x[1] - plan.path_x[0], plan.speed * (lidar[-1] - lidar[0]) / 1e6)
    assert len({p.location.name for p in plans}) == 4


def test_random_streams_are_fixed_by_their_keys() -> None:
    assert scene_rng(1, 2, 3).random() == scene_rng(1, 2, 3).random()
    assert scene_rng(1, 2, 3).random() != scene_rng(1, 2, 4).random()
    assert scene_rng(1, 2).random() != scene_rng(2, 2).random()
