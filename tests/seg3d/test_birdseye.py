"""Bird's-eye pictures: points land where the frame puts them, the highest point of a pixel shows, the
PNG decodes (by Pillow) to the very picture, and the legend, read back from the pixels, lists every
class present with its colour and point count."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from seg3d.birdseye import (
    BACKGROUND,
    FONT,
    GLYPH_HEIGHT,
    GLYPH_WIDTH,
    LEGEND_BACKGROUND,
    TEXT_COLOUR,
    LegendEntry,
    LegendLayout,
    birdseye,
    birdseye_with_legend,
    class_counts,
    glyph,
    legend_entries,
    legend_lines,
    png_bytes,
    write_png,
)
from seg3d.classes import CLASS_TABLES, NUSCENES_LIDARSEG

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


# --- the legend ------------------------------------------------------------------------------------


def read_legend(panel: np.ndarray) -> list[tuple[str, tuple | None]]:
    """The legend's text read back cell by cell with the font, and each row's swatch colour (or None):
    an independent reading of what the picture shows, not of how it was drawn."""
    layout = LegendLayout()
    s = layout.scale
    shapes = {bitmap.tobytes(): char for char, bitmap in FONT.items()}
    rows = (panel.shape[0] - layout.top) // layout.cell_height
    columns = (panel.shape[1] - layout.left) // layout.cell_width
    lines: list[tuple[str, tuple | None]] = []
    for r in range(rows):
        chars, swatch = [], None
        for c in range(columns):
            y, x = layout.cell(r, c)
            cell = panel[y : y + layout.cell_height, x : x + layout.cell_width]
            ink = (cell == TEXT_COLOUR).all(axis=2)
            other = ~ink & ~(cell == LEGEND_BACKGROUND).all(axis=2)
            if other.any():  # a swatch: one colour, no text
                colours = {tuple(v) for v in cell[other].tolist()}
                assert len(colours) == 1 and not ink.any(), f"row {r} cell {c} mixes colours"
                swatch = colours.pop()
                chars.append(" ")
                continue
            glyph_ink = ink[: GLYPH_HEIGHT * s, : GLYPH_WIDTH * s]
            assert ink.sum() == glyph_ink.sum(), f"row {r} cell {c}: ink outside the glyph box"
            small = glyph_ink[::s, ::s]
            assert np.array_equal(np.kron(small, np.ones((s, s), dtype=bool)), glyph_ink)
            chars.append(shapes[small.tobytes()] if small.any() else " ")
        lines.append(("".join(chars).rstrip(), swatch))
    while lines and lines[-1] == ("", None):
        lines.pop()
    return lines


def test_the_font_has_a_distinct_glyph_per_character() -> None:
    shapes = [bitmap.tobytes() for bitmap in FONT.values()]
    assert len(set(shapes)) == len(shapes)  # so every character reads back as itself
    for char, bitmap in FONT.items():
        assert bitmap.shape == (GLYPH_HEIGHT, GLYPH_WIDTH)
        assert bitmap.any() == (char != " ")
    for char in "abcdefghijklmnopqrstuvwxyz_-0123456789,.%":  # every class name and count
        assert char in FONT
    assert np.array_equal(glyph("\u00e9"), FONT["?"])  # no glyph: drawn as "?"


def test_the_legend_lists_each_class_with_its_colour_and_count() -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform(-30, 30, (4000, 4))
    labels = rng.choice([1, 4, 11, 16], size=4000, p=[0.1, 0.2, 0.3, 0.4])
    labels[:3] = 7  # a class with very few points is listed too
    image, entries = birdseye_with_legend(
        points, labels, NUSCENES_LIDARSEG.names, NUSCENES_LIDARSEG.colours, title="scan.pcd.bin", size=300
    )
    # The picture is the plain bird's-eye picture; the legend is to its right.
    assert np.array_equal(image[:300, :300], birdseye(points, labels, NUSCENES_LIDARSEG.colours, size=300))
    lines = read_legend(image[:, 300:])
    assert lines[0] == ("scan.pcd.bin", None)
    assert lines[1] == (f"{len(labels):,} points, 5 classes", None)
    counts = np.bincount(labels, minlength=len(NUSCENES_LIDARSEG))
    rows = [(text.split(), swatch) for text, swatch in lines[3:] if swatch is not None]
    listed = {words[0]: (int(words[1].replace(",", "")), swatch) for words, swatch in rows}
    expected = {
        NUSCENES_LIDARSEG.names[i]: (int(counts[i]), NUSCENES_LIDARSEG.colours[i])
        for i in np.flatnonzero(counts)
    }
    assert listed == expected
    assert [words[0] for words, _ in rows] == [e.name for e in entries]  # most points first
    assert [int(words[1].replace(",", "")) for words, _ in rows] == sorted(counts[counts > 0], reverse=True)
    shares = [float(words[2].rstrip("%")) for words, _ in rows]
    assert shares == pytest.approx(
        [100 * c / len(labels) for c in sorted(counts[counts > 0], reverse=True)], abs=0.05
    )
    assert lines[-1][0] == "x right, y up, 40 m to each edge"


def test_legend_entries_are_most_points_first_and_only_present_classes() -> None:
    labels = np.array([2, 2, 1, 1, 3, 3, 3])
    entries = legend_entries(labels, ["a", "b", "c", "d"], COLOURS)
    assert [(e.index, e.name, e.count, e.colour) for e in entries] == [
        (3, "d", 3, (0, 0, 255)),
        (1, "b", 2, (255, 0, 0)),  # a tie keeps the table's order
        (2, "c", 2, (0, 255, 0)),
    ]
    assert class_counts(labels, 4).tolist() == [0, 2, 2, 3]
    with pytest.raises(ValueError, match="4 classes"):
        class_counts(np.array([4]), 4)
    with pytest.raises(ValueError, match="colours"):
        legend_entries(labels, ["a", "b"], COLOURS)


def test_a_long_title_is_cut_in_the_middle_and_an_empty_cloud_has_a_legend() -> None:
    title = "n015-2018-10-08-15-36-50+0800__LIDAR_TOP__1538984233547259.pcd.bin"
    lines = legend_lines([LegendEntry(4, "car", (255, 158, 0), 10)], title)
    assert len(lines[0]) == max(36, *(len(line) for line in lines[1:]))
    assert lines[0].startswith("n015-2018") and lines[0].endswith("547259.pcd.bin") and "..." in lines[0]
    image, entries = birdseye_with_legend(
        np.zeros((0, 4)), np.zeros(0, dtype=int), ["a"], [(1, 2, 3)], size=64
    )
    assert entries == [] and image.shape[1] > 64
    assert read_legend(image[:, 64:])[1] == ("0 points, 0 classes", None)


def test_text_and_panel_colours_are_no_class_colour() -> None:
    for table in CLASS_TABLES.values():
        assert TEXT_COLOUR not in table.colours and LEGEND_BACKGROUND not in table.colours
        assert BACKGROUND not in table.colours
