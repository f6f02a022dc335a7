"""Bird's-eye pictures: points land where the frame puts them, the highest point of a pixel shows, and
the PNG decodes (by Pillow) to the very picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from seg3d.birdseye import BACKGROUND, birdseye, png_bytes, write_png

COLOURS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _painted(image: np.ndarray) -> set[tuple[int, int]]:
    rows, cols = np.nonzero((image != BACKGROUND).any(axis=2))
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def test_points_land_where_the_frame_puts_them() -> None:
    # extent 10 m over 100 pixels: 5 pixels per metre; +x to the right, +y up, the sensor in the middle.
    points = np.array([[5.05, 0.05, 0.0], [0.05, 5.05, 0.0], [-9.95, -9.95, 0.0], [30.0, 0.0, 0.0]])
    image = birdseye(points, np.array([1, 2, 3, 1]), COLOURS, extent=10.0, size=100, dot=1)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    assert _painted(image) == {(49, 75), (24, 50), (99, 0)}  # the point 30 m out is not drawn
    assert tuple(image[49, 75]) == (255, 0, 0)
    assert tuple(image[24, 50]) == (0, 255, 0)
    assert tuple(image[99, 0]) == (0, 0, 255)
    # A dot of 2 covers the pixel and its right and lower neighbours, clipped at the edge.
    image = birdseye(points, np.array([1, 2, 3, 1]), COLOURS, extent=10.0, size=100, dot=2)
    assert {(49, 75), (49, 76), (50, 75), (50, 76), (99, 0), (99, 1)} <= _painted(image)


def test_the_highest_point_of_a_pixel_shows() -> None:
    points = np.array([[0.0, 0.0, 1.5], [0.0, 0.0, -1.8], [0.0, 0.0, 0.2]])  # a car's roof over road
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        image = birdseye(points[order], np.array([1, 2, 3])[order], COLOURS, extent=5.0, size=10, dot=1)
        assert tuple(image[5, 5]) == (255, 0, 0)


def test_the_png_decodes_to_the_picture(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    points = rng.uniform(-20, 20, (5000, 3))
    image = birdseye(points, rng.integers(0, 4, 5000), COLOURS, extent=20.0, size=64)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
    assert decoded.shape == (64, 64, 3) and np.array_equal(decoded, image)
    write_png(tmp_path / "bev.png", image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "bev.png")), image)


@pytest.mark.parametrize(
    ("points", "labels", "message"),
    [
        (np.zeros((3, 2)), np.zeros(3, dtype=int), "need"),
        (np.zeros((3, 3)), np.zeros(2, dtype=int), "need"),
        (np.zeros((3, 3)), np.array([0, 1, 4]), "4 colours"),
    ],
)
def test_bad_input_is_refused(points: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        birdseye(points, labels, COLOURS)
