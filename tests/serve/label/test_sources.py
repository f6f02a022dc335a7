"""serve.label.sources: what each input lists, and the clear refusal of a root that is not its layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI
from serve.label.sources import FileSource, LayoutError, NuScenesSource, SemanticKittiSource

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")


def test_nuscenes_lists_every_key_frame_of_the_split_once(synthetic_nuscenes: Path) -> None:
    source = NuScenesSource(synthetic_nuscenes, split="mini_val")
    tasks = source.tasks(NUSCENES_LIDARSEG)
    samples = json.loads((synthetic_nuscenes / "v1.0-mini" / "sample.json").read_text())
    scenes = {
        s["token"]: s["name"]
        for s in json.loads((synthetic_nuscenes / "v1.0-mini" / "scene.json").read_text())
    }
    from nuscenes.utils.splits import create_splits_scenes

    val = set(create_splits_scenes()["mini_val"])
    expected = sum(scenes[s["scene_token"]] in val for s in samples)
    assert len(tasks) == expected > 0
    assert len({t.key for t in tasks}) == len(tasks)
    for task in tasks:
        assert Path(task.source).is_file() and task.source.endswith(".pcd.bin") and task.fmt == "nuscenes"
        assert task.output == f"lidarseg/v1.0-mini/{task.key}_lidarseg.bin"
    every = NuScenesSource(synthetic_nuscenes).tasks(NUSCENES_LIDARSEG)
    assert len(every) == len(samples) and {t.key for t in tasks} < {t.key for t in every}
    submission = NuScenesSource(synthetic_nuscenes, split="mini_val", layout="submission")
    assert {t.output for t in submission.tasks(NUSCENES_LIDARSEG)} == {
        f"lidarseg/mini_val/{t.key}_lidarseg.bin" for t in tasks
    }


def test_nuscenes_scenes_by_name(synthetic_nuscenes: Path) -> None:
    names = sorted(
        s["name"] for s in json.loads((synthetic_nuscenes / "v1.0-mini" / "scene.json").read_text())
    )
    tasks = NuScenesSource(synthetic_nuscenes, scenes=(names[1],)).tasks(NUSCENES_LIDARSEG)
    assert 0 < len(tasks) < 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "v1.0-trainval"}, "v1.0-trainval/sample.json is missing"),
        ({"split": "nonsense"}, "unknown split"),
        ({"split": "test"}, "has no scene in the v1.0-mini tables"),
        ({"scenes": ("scene-9999",)}, "are not in the v1.0-mini tables"),
        ({"layout": "submission"}, "give --split"),
        ({"split": "mini_val", "scenes": ("x",)}, "not both"),
    ],
)
def test_nuscenes_refuses_what_the_root_does_not_hold(
    synthetic_nuscenes: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(LayoutError, match=message):
        NuScenesSource(synthetic_nuscenes, **kwargs)


def test_a_folder_that_is_no_nuscenes_root(tmp_path: Path) -> None:
    (tmp_path / "v1.0-mini").mkdir()
    with pytest.raises(LayoutError, match="not a nuScenes root"):
        NuScenesSource(tmp_path)
    with pytest.raises(LayoutError, match="not a nuScenes root"):
        NuScenesSource(tmp_path / "absent")
    with pytest.raises(LayoutError, match="is not a folder"):
        NuScenesSource(tmp_path / "absent", version="v1.0-mini")


def _kitti_root(root: Path, sequences: dict[str, int]) -> Path:
    for sequence, scans in sequences.items():
        folder = root / "sequences" / sequence / "velodyne"
        folder.mkdir(parents=True)
        for i in range(scans):
            np.zeros((3, 4), dtype="<f4").tofile(folder / f"{i:06d}.bin")
    return root


def test_semantickitti_lists_scans_per_sequence(tmp_path: Path) -> None:
    root = _kitti_root(tmp_path, {"00": 2, "08": 3})
    tasks = SemanticKittiSource(root).tasks(SEMANTICKITTI)
    assert [t.key for t in tasks] == ["00/000000", "00/000001", "08/000000", "08/000001", "08/000002"]
    assert tasks[2].output == "sequences/08/predictions/000000.label" and tasks[2].fmt == "kitti"
    assert next(t.key for t in SemanticKittiSource(root, (8,)).tasks(SEMANTICKITTI)) == "08/000000"


def test_semantickitti_refusals(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="sequences is missing"):
        SemanticKittiSource(tmp_path)
    _kitti_root(tmp_path / "dataset", {"00": 1})
    with pytest.raises(LayoutError, match="did you mean its dataset/ folder"):
        SemanticKittiSource(tmp_path)
    with pytest.raises(LayoutError, match=r"sequences \['05'\] have no velodyne"):
        SemanticKittiSource(tmp_path / "dataset", (5,))


def test_files_keep_their_folder_layout_and_name_the_label_file_by_the_models_classes(tmp_path: Path) -> None:
    for name in ("a/x.pcd", "a/y.bin", "b/x.pcd", "b/notes.txt", "b/c/z.ply"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    tasks = FileSource(str(tmp_path)).tasks(NUSCENES_LIDARSEG)
    assert {t.output: t.fmt for t in tasks} == {
        "a/x_lidarseg.bin": "pcd",
        "a/y_lidarseg.bin": "kitti",
        "b/x_lidarseg.bin": "pcd",
        "b/c/z_lidarseg.bin": "ply",
    }
    kitti = FileSource(str(tmp_path / "**" / "*.pcd")).tasks(SEMANTICKITTI)
    assert sorted(t.output for t in kitti) == ["a/x.label", "b/x.label"]
    odd = FileSource(str(tmp_path / "b" / "notes.txt")).tasks(NUSCENES_LIDARSEG)
    assert odd[0].fmt == ""  # recorded as failed by the worker, with the reason
    with pytest.raises(LayoutError, match="matches no point file"):
        FileSource(str(tmp_path / "*.xyz"))
