"""``python -m training.data.synthetic``: help, clear refusals with exit status 2, a run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.data.synthetic import read_recipe, recipe
from training.data.synthetic.__main__ import main


def test_help_explains_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training.data.synthetic", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    for option in (
        "--out",
        "--scenes",
        "--samples-per-scene",
        "--seed",
        "--version",
        "--workers",
        "--overwrite",
    ):
        assert option in done.stdout
    assert "v1.0-mini" in done.stdout and "v1.0-trainval" in done.stdout


def test_a_non_empty_destination_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--out", str(out), "--scenes", "1", "--samples-per-scene", "1", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "not empty" in error and "--overwrite" in error
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--version", "v1.0-mini", "--scenes", "11"], "v1.0-mini has 10 scenes"),
        (["--scenes", "0"], "--scenes must be at least 1"),
        (["--samples-per-scene", "0"], "--samples-per-scene must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--scenes", "851"], "v1.0-trainval has 850 scenes"),  # the default version
    ],
)
def test_impossible_requests_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["--out", str(tmp_path / "data"), "--quiet", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_command_writes_and_overwrites_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nuscenes.nuscenes import NuScenes

    out = tmp_path / "data"
    arguments = ["--out", str(out), "--scenes", "2", "--samples-per-scene", "1", "--workers", "1"]
    assert main(arguments) == 0  # v1.0-trainval by default, as the bundled training configs read it
    assert "v1.0-trainval: 2 scenes, 2 samples" in capsys.readouterr().out
    nusc = NuScenes(version="v1.0-trainval", dataroot=str(out), verbose=False)
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    assert {s["name"] for s in nusc.scene} == {splits["train"][0], splits["val"][0]}
    assert main(arguments) == 2  # now in the way
    assert main([*arguments, "--overwrite", "--quiet", "--seed", "1", "--version", "v1.0-mini"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "lidarseg",
        "maps",
        "samples",
        "synthetic.json",
        "v1.0-mini",
    ]
    assert read_recipe(out) == recipe("v1.0-mini", scenes=2, samples_per_scene=1, seed=1, render_scale=0.5)
    assert read_recipe(out)["lidar"] == "hdl32e"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_mixed_lidar_alternates_hdl32e_and_hdl64e_by_scene(tmp_path: Path) -> None:
    import numpy as np
    from nuscenes.nuscenes import NuScenes

    out = tmp_path / "data"
    arguments = ["--out", str(out), "--scenes", "2", "--samples-per-scene", "1", "--workers", "1"]
    assert main([*arguments, "--version", "v1.0-mini", "--lidar", "mixed", "--quiet"]) == 0
    assert read_recipe(out) == recipe("v1.0-mini", 2, 1, 0, 0.5, "mixed")
    nusc = NuScenes(version="v1.0-mini", dataroot=str(out), verbose=False)
    rings = {}
    for scene in nusc.scene:
        sample = nusc.get("sample", scene["first_sample_token"])
        # x, y, z, intensity, ring (the devkit's reader keeps the first four)
        cloud = np.fromfile(nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"]), dtype=np.float32)
        cloud = cloud.reshape(-1, 5)
        rings[scene["name"]] = (int(cloud[:, 4].max()) + 1, cloud.shape[0])
    first, second = (rings[s["name"]] for s in sorted(nusc.scene, key=lambda s: s["name"]))
    assert first[0] == 32 and second[0] == 64 and second[1] > 3 * first[1]


def test_an_unknown_lidar_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--out", "x", "--lidar", "hdl128"])
    assert exit_.value.code == 2 and "hdl64e" in capsys.readouterr().err
