"""The nuScenes camera overlay, drawn by nuscenes-devkit from a predictions file on the real
scene-0916 samples (tables completed by the `devkit_root` fixture, no lidarseg ground truth): the
picture has the camera image's size and shows the predicted classes in the project's palette."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI
from seg3d.overlay import (
    DevkitMissingError,
    OverlayError,
    find_version,
    load_nuscenes,
    render_camera_overlay,
    resolve_sample,
)

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
PIL = pytest.importorskip("PIL.Image")

#: The first sample of scene-0916, whose LIDAR_TOP and CAM_FRONT files are in the real extract.
SAMPLE = "b5989651183643369174912bc5641d3b"


def colour_counts(image: np.ndarray) -> dict[tuple[int, int, int], int]:
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(c): int(n) for c, n in zip(colours.tolist(), counts, strict=True)}


@pytest.fixture(scope="module")
def devkit(devkit_root: Path):
    return load_nuscenes(devkit_root)


def test_the_overlay_shows_the_predicted_classes_in_the_palette(devkit, tmp_path: Path) -> None:
    sample = resolve_sample(devkit, SAMPLE)
    assert sample.lidar.name.endswith(".pcd.bin") and set(sample.cameras) == {"CAM_FRONT"}
    points = sample.lidar.stat().st_size // 20
    car, vegetation, pedestrian = 4, 16, 7
    labels = np.where(np.arange(points) % 2 == 0, car, vegetation)  # two classes, alternating
    size = render_camera_overlay(devkit, sample, labels, NUSCENES_LIDARSEG, tmp_path / "overlay.png")
    with PIL.open(sample.cameras["CAM_FRONT"]) as camera:
        photo = np.asarray(camera.convert("RGB"))
    with PIL.open(tmp_path / "overlay.png") as picture:
        overlay = np.asarray(picture.convert("RGB"))
    assert size == (photo.shape[1], photo.shape[0]) and overlay.shape == photo.shape  # 1600 x 900
    before, after = colour_counts(photo), colour_counts(overlay)
    colours = NUSCENES_LIDARSEG.colours
    for cls in (car, vegetation):  # the predicted classes: dots of their exact colours
        assert after.get(colours[cls], 0) > 1000 + 10 * before.get(colours[cls], 0), NUSCENES_LIDARSEG.names[
            cls
        ]
    # no dot of a class that was not predicted
    assert after.get(colours[pedestrian], 0) <= before.get(colours[pedestrian], 0) + 5
    # The dots cover part of the image; the rest is the photo itself.
    unchanged = (np.abs(overlay.astype(int) - photo.astype(int)).max(axis=2) <= 12).mean()
    assert 0.5 < unchanged < 0.99


def test_bad_requests_say_why(devkit, devkit_root: Path, tmp_path: Path) -> None:
    sample = resolve_sample(devkit, SAMPLE)
    points = sample.lidar.stat().st_size // 20
    with pytest.raises(OverlayError, match="no sample"):
        resolve_sample(devkit, "0" * 32)
    with pytest.raises(OverlayError, match=r"CAM_BACK_LEFT file .* is missing"):
        resolve_sample(devkit, SAMPLE, ("CAM_BACK_LEFT",))
    with pytest.raises(OverlayError, match="nuScenes-lidarseg classes"):
        render_camera_overlay(devkit, sample, np.ones(points, int), SEMANTICKITTI, tmp_path / "x.png")
    with pytest.raises(OverlayError, match=f"has {points} points"):
        render_camera_overlay(devkit, sample, np.ones(points - 1, int), NUSCENES_LIDARSEG, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())  # nothing written, no predictions file left behind
    assert find_version(devkit_root) == "v1.0-trainval"
    with pytest.raises(OverlayError, match="no table folder"):
        find_version(tmp_path)
    with pytest.raises(OverlayError, match="not a folder"):
        load_nuscenes(tmp_path / "absent")


def test_without_the_devkit_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setitem(sys.modules, "nuscenes.nuscenes", None)
    with pytest.raises(DevkitMissingError, match="pip install"):
        load_nuscenes(tmp_path)
