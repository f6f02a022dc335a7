"""Bird's-eye pictures of a labelled point cloud, as PNG, with no imaging library.

The picture looks straight down on the sensor frame: +x to the right, +y up, the sensor at the
centre, ``extent`` metres from the centre to each edge. Each point is a ``dot``-pixel square in its
class's colour (`seg3d.classes.ClassTable.colours`); points are drawn lowest first, so that what
stands above the ground (cars, trunks, walls) covers the ground under it, as seen from above.
Points outside the square are left out of the picture (they keep their labels elsewhere).
nuScenes' LIDAR_TOP frame has y forward (forward is up); KITTI's Velodyne frame has x forward
(forward is to the right).

`birdseye_with_legend` puts a legend beside the picture: a title, the number of points, then one
row per class present (most points first) with its colour swatch, name, point count and share. The
legend's text is drawn with a small built-in bitmap font (`FONT`, 5×7 pixel glyphs with two rows
of descenders, drawn ``LEGEND_SCALE`` times larger) on a grid of fixed-size character cells
(`LegendLayout`), so that the text of a picture can be read back exactly, cell by cell.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seg3d.io import write_atomic

__all__ = [
    "BACKGROUND",
    "FONT",
    "GLYPH_HEIGHT",
    "GLYPH_WIDTH",
    "LEGEND_BACKGROUND",
    "LEGEND_SCALE",
    "TEXT_COLOUR",
    "LegendEntry",
    "LegendLayout",
    "birdseye",
    "birdseye_with_legend",
    "class_counts",
    "draw_legend",
    "glyph",
    "legend_entries",
    "legend_lines",
    "png_bytes",
    "write_png",
]

BACKGROUND = (16, 16, 20)
LEGEND_BACKGROUND = (30, 30, 36)  # the legend panel: a shade apart from the picture's background
TEXT_COLOUR = (235, 235, 235)  # no class table has this colour, so text never reads as a class
LEGEND_SCALE = 2  # each font pixel is a 2×2 square: 12×20-pixel cells, readable at 100 % zoom

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 9  # rows 0-6: capitals, digits and the body of small letters; rows 7-8: descenders

# One glyph per character: rows top to bottom separated by "/", "#" inked, "." blank; rows left out
# at the bottom are blank. Characters without a glyph are drawn as "?".
_GLYPH_ROWS: dict[str, str] = {
    " ": "",
    "0": ".###./#...#/#..##/#.#.#/##..#/#...#/.###.",
    "1": "..#../.##../..#../..#../..#../..#../.###.",
    "2": ".###./#...#/....#/...#./..#../.#.../#####",
    "3": "#####/...#./..#../...#./....#/#...#/.###.",
    "4": "...#./..##./.#.#./#..#./#####/...#./...#.",
    "5": "#####/#..../####./....#/....#/#...#/.###.",
    "6": "..##./.#.../#..../####./#...#/#...#/.###.",
    "7": "#####/....#/...#./..#../.#.../.#.../.#...",
    "8": ".###./#...#/#...#/.###./#...#/#...#/.###.",
    "9": ".###./#...#/#...#/.####/....#/...#./.##..",
    "A": ".###./#...#/#...#/#####/#...#/#...#/#...#",
    "B": "####./#...#/#...#/####./#...#/#...#/####.",
    "C": ".###./#...#/#..../#..../#..../#...#/.###.",
    "D": "###../#..#./#...#/#...#/#...#/#..#./###..",
    "E": "#####/#..../#..../####./#..../#..../#####",
    "F": "#####/#..../#..../####./#..../#..../#....",
    "G": ".###./#...#/#..../#.###/#...#/#...#/.####",
    "H": "#...#/#...#/#...#/#####/#...#/#...#/#...#",
    "I": ".###./..#../..#../..#../..#../..#../.###.",
    "J": "..###/...#./...#./...#./...#./#..#./.##..",
    "K": "#...#/#..#./#.#../##.../#.#../#..#./#...#",
    "L": "#..../#..../#..../#..../#..../#..../#####",
    "M": "#...#/##.##/#.#.#/#.#.#/#...#/#...#/#...#",
    "N": "#...#/#...#/##..#/#.#.#/#..##/#...#/#...#",
    "O": ".###./#...#/#...#/#...#/#...#/#...#/.###.",
    "P": "####./#...#/#...#/####./#..../#..../#....",
    "Q": ".###./#...#/#...#/#...#/#.#.#/#..#./.##.#",
    "R": "####./#...#/#...#/####./#.#../#..#./#...#",
    "S": ".####/#..../#..../.###./....#/....#/####.",
    "T": "#####/..#../..#../..#../..#../..#../..#..",
    "U": "#...#/#...#/#...#/#...#/#...#/#...#/.###.",
    "V": "#...#/#...#/#...#/#...#/#...#/.#.#./..#..",
    "W": "#...#/#...#/#...#/#.#.#/#.#.#/#.#.#/.#.#.",
    "X": "#...#/#...#/.#.#./..#../.#.#./#...#/#...#",
    "Y": "#...#/#...#/.#.#./..#../..#../..#../..#..",
    "Z": "#####/....#/...#./..#../.#.../#..../#####",
    "a": "...../...../.###./....#/.####/#...#/.####",
    "b": "#..../#..../#.##./##..#/#...#/#...#/####.",
    "c": "...../...../.###./#..../#..../#...#/.###.",
    "d": "....#/....#/.##.#/#..##/#...#/#...#/.####",
    "e": "...../...../.###./#...#/#####/#..../.###.",
    "f": "..##./.#..#/.#.../###../.#.../.#.../.#...",
    "g": "...../...../.####/#...#/#...#/#...#/.####/....#/.###.",
    "h": "#..../#..../#.##./##..#/#...#/#...#/#...#",
    "i": "..#../...../.##../..#../..#../..#../.###.",
    "j": "...#./...../..##./...#./...#./...#./...#./#..#./.##..",
    "k": "#..../#..../#..#./#.#../##.../#.#../#..#.",
    "l": ".##../..#../..#../..#../..#../..#../.###.",
    "m": "...../...../##.#./#.#.#/#.#.#/#.#.#/#.#.#",
    "n": "...../...../#.##./##..#/#...#/#...#/#...#",
    "o": "...../...../.###./#...#/#...#/#...#/.###.",
    "p": "...../...../####./#...#/#...#/#...#/####./#..../#....",
    "q": "...../...../.####/#...#/#...#/#...#/.####/....#/....#",
    "r": "...../...../#.##./##..#/#..../#..../#....",
    "s": "...../...../.####/#..../.###./....#/####.",
    "t": ".#.../.#.../###../.#.../.#.../.#..#/..##.",
    "u": "...../...../#...#/#...#/#...#/#..##/.##.#",
    "v": "...../...../#...#/#...#/#...#/.#.#./..#..",
    "w": "...../...../#...#/#...#/#.#.#/#.#.#/.#.#.",
    "x": "...../...../#...#/.#.#./..#../.#.#./#...#",
    "y": "...../...../#...#/#...#/#...#/#...#/.####/....#/.###.",
    "z": "...../...../#####/...#./..#../.#.../#####",
    "_": "...../...../...../...../...../...../...../#####",
    "-": "...../...../...../.###.",
    ".": "...../...../...../...../...../.##../.##..",
    ",": "...../...../...../...../...../.##../.##../..#../.#...",
    ":": "...../.##../.##../...../...../.##../.##..",
    ";": "...../.##../.##../...../...../.##../.##../..#../.#...",
    "(": "...#./..#../.#.../.#.../.#.../..#../...#.",
    ")": ".#.../..#../...#./...#./...#./..#../.#...",
    "[": ".###./.#.../.#.../.#.../.#.../.#.../.###.",
    "]": ".###./...#./...#./...#./...#./...#./.###.",
    "%": "##..#/##..#/...#./..#../.#.../#..##/#..##",
    "+": "...../..#../..#../#####/..#../..#..",
    "/": "....#/....#/...#./..#../.#.../#..../#....",
    "=": "...../...../#####/...../#####",
    "?": ".###./#...#/....#/...#./..#../...../..#..",
    "!": "..#../..#../..#../..#../..#../...../..#..",
    "'": "..#../..#../.#...",
    '"': ".#.#./.#.#.",
    "#": ".#.#./.#.#./#####/.#.#./#####/.#.#./.#.#.",
    "*": "...../..#../#.#.#/.###./#.#.#/..#..",
    "<": "...#./..#../.#.../#..../.#.../..#../...#.",
    ">": ".#.../..#../...#./....#/...#./..#../.#...",
    "&": ".##../#..#./#.#../.#.../#.#.#/#..#./.##.#",
    "@": ".###./#...#/#.###/#.#.#/#.###/#..../.###.",
    "|": "..#../..#../..#../..#../..#../..#../..#..",
}


def _bitmap(rows: str) -> npt.NDArray[np.bool_]:
    cells = np.zeros((GLYPH_HEIGHT, GLYPH_WIDTH), dtype=bool)
    for i, row in enumerate(rows.split("/") if rows else []):
        cells[i] = [c == "#" for c in row]
    return cells


#: Character → its ``(GLYPH_HEIGHT, GLYPH_WIDTH)`` bitmap (True: inked).
FONT: dict[str, npt.NDArray[np.bool_]] = {c: _bitmap(rows) for c, rows in _GLYPH_ROWS.items()}


def glyph(char: str) -> npt.NDArray[np.bool_]:
    """The bitmap of one character (``?``'s for a character the font lacks)."""
    return FONT.get(char, FONT["?"])


def birdseye(
    points: npt.ArrayLike,
    labels: npt.ArrayLike,
    colours: Sequence[tuple[int, int, int]],
    extent: float = 40.0,
    size: int = 800,
    dot: int = 2,
) -> npt.NDArray[np.uint8]:
    """``(size, size, 3)`` uint8 picture of ``points`` ``(N, ≥3)`` coloured by ``labels`` ``(N,)``.

    Raises:
        ValueError: shapes that disagree, a label without a colour, or a non-positive size.
    """
    xyz = np.asarray(points, dtype=np.float64)
    label = np.asarray(labels).astype(np.int64)
    if xyz.ndim != 2 or xyz.shape[1] < 3 or label.shape != (xyz.shape[0],):
        raise ValueError(f"need (N, >=3) points and (N,) labels, got {xyz.shape} and {label.shape}")
    if extent <= 0 or size < 1 or dot < 1:
        raise ValueError(f"extent, size and dot must be positive, got {extent}, {size}, {dot}")
    palette = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if label.size and (label.min() < 0 or label.max() >= len(palette)):
        raise ValueError(f"labels span {label.min()}..{label.max()} but there are {len(palette)} colours")
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    scale = size / (2 * extent)
    col = np.floor((xyz[:, 0] + extent) * scale).astype(np.int64)
    row = np.floor((extent - xyz[:, 1]) * scale).astype(np.int64)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    order = np.argsort(xyz[inside, 2], kind="stable")  # lowest first: higher points overwrite
    row, col, label = row[inside][order], col[inside][order], label[inside][order]
    for dr in range(dot):
        for dc in range(dot):
            # Later writes win in fancy-index assignment, so the highest point of a pixel shows.
            image[np.minimum(row + dr, size - 1), np.minimum(col + dc, size - 1)] = palette[label]
    return image


@dataclass(frozen=True)
class LegendEntry:
    """One class of a legend: its index in the class table, name, RGB colour and point count."""

    index: int
    name: str
    colour: tuple[int, int, int]
    count: int


def class_counts(labels: npt.ArrayLike, num_classes: int) -> npt.NDArray[np.int64]:
    """``(num_classes,)`` points per class.

    Raises:
        ValueError: a label outside ``[0, num_classes)``.
    """
    label = np.asarray(labels).astype(np.int64).ravel()
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"labels span {label.min()}..{label.max()} but there are {num_classes} classes")
    return np.bincount(label, minlength=num_classes).astype(np.int64)


def legend_entries(
    labels: npt.ArrayLike, names: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> list[LegendEntry]:
    """The classes present in ``labels``, most points first (ties: table order).

    Raises:
        ValueError: names and colours of different lengths, or a label without a class.
    """
    if len(names) != len(colours):
        raise ValueError(f"{len(names)} class names but {len(colours)} colours")
    counts = class_counts(labels, len(names))
    order = sorted(np.flatnonzero(counts).tolist(), key=lambda i: (-int(counts[i]), i))
    return [
        LegendEntry(i, names[i], (int(colours[i][0]), int(colours[i][1]), int(colours[i][2])), int(counts[i]))
        for i in order
    ]


#: Character cells left of a class row's name: the colour swatch and a gap.
_SWATCH_CELLS = 3


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (``...`` marks the cut): a file name's start
    and end (its time stamp, its number) are what tell it apart."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return text[: keep - keep // 2] + "..." + text[len(text) - keep // 2 :]


def legend_lines(
    entries: Sequence[LegendEntry], title: str, total: int | None = None, note: str = ""
) -> list[str]:
    """The legend's text, one string per grid row: the title, the point count, a blank row, per
    entry its name, count and share (right-aligned in columns), then ``note`` after a blank row. A
    class row starts with `_SWATCH_CELLS` blank cells, where its swatch is drawn. A title longer than
    the other rows (and than 36 characters) is cut in the middle."""
    total = sum(e.count for e in entries) if total is None else total
    lines = [f"{total:,} points, {len(entries)} classes", ""]
    if entries:
        name_width = max(len(e.name) for e in entries)
        count_width = max(len(f"{e.count:,}") for e in entries)
        for e in entries:
            share = 100.0 * e.count / total if total else 0.0
            lines.append(
                " " * _SWATCH_CELLS + f"{e.name:<{name_width}}  {e.count:>{count_width},}  {share:5.1f}%"
            )
    if note:
        lines += ["", note]
    return [_shorten(title, max(36, *(len(line) for line in lines))), *lines]


@dataclass(frozen=True)
class LegendLayout:
    """Where the legend's character cells are: the cell at (row ``r``, column ``c``) of the legend
    grid has its top-left pixel at ``(top + r * cell_height, left + c * cell_width)`` of the panel,
    and its glyph is drawn `LEGEND_SCALE` times larger from there."""

    scale: int = LEGEND_SCALE
    top: int = 16
    left: int = 16

    @property
    def cell_width(self) -> int:
        return (GLYPH_WIDTH + 1) * self.scale

    @property
    def cell_height(self) -> int:
        return (GLYPH_HEIGHT + 2) * self.scale

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """Top-left pixel ``(y, x)`` of a cell within the panel."""
        return self.top + row * self.cell_height, self.left + column * self.cell_width


def draw_legend(
    entries: Sequence[LegendEntry],
    title: str,
    height: int,
    total: int | None = None,
    note: str = "",
    layout: LegendLayout = LegendLayout(),  # frozen: one shared default is safe
) -> npt.NDArray[np.uint8]:
    """The legend panel ``(max(height, needed), width, 3)``: `legend_lines` drawn on the cell grid of
    ``layout``, each class row with a swatch of its colour in its first two cells."""
    lines = legend_lines(entries, title, total, note)
    columns = max(len(line) for line in lines)
    width = layout.left * 2 + columns * layout.cell_width
    needed = layout.top * 2 + len(lines) * layout.cell_height
    panel = np.empty((max(height, needed), width, 3), dtype=np.uint8)
    panel[:] = LEGEND_BACKGROUND
    s = layout.scale
    for r, line in enumerate(lines):
        for c, char in enumerate(line):
            if char == " ":
                continue
            y, x = layout.cell(r, c)
            mask = np.kron(glyph(char), np.ones((s, s), dtype=bool))
            panel[y : y + mask.shape[0], x : x + mask.shape[1]][mask] = TEXT_COLOUR
    first = 3  # the rows before the first class (title, point count, blank)
    for i, entry in enumerate(entries):
        y, x = layout.cell(first + i, 0)
        side = GLYPH_HEIGHT * s - 2 * s  # a square about as tall as a capital letter
        panel[y : y + side, x : x + min(side, 2 * layout.cell_width)] = entry.colour
    return panel


def birdseye_with_legend(
    points: npt.ArrayLike,
    labels: npt.ArrayLike,
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    title: str = "",
    extent: float = 40.0,
    size: int = 800,
    dot: int = 2,
) -> tuple[npt.NDArray[np.uint8], list[LegendEntry]]:
    """`birdseye` with `draw_legend` to its right, and the legend's entries.

    The picture is the first ``size`` columns (and rows) of the image; the counts are over every
    point, inside the picture or not; the legend ends with a note on the picture's orientation and
    scale. Raises as `birdseye` and `legend_entries`.
    """
    picture = birdseye(points, labels, colours, extent=extent, size=size, dot=dot)
    entries = legend_entries(labels, names, colours)
    note = f"x right, y up, {extent:g} m to each edge"
    panel = draw_legend(entries, title, size, total=int(np.asarray(labels).size), note=note)
    image = np.empty((panel.shape[0], size + panel.shape[1], 3), dtype=np.uint8)
    image[:] = LEGEND_BACKGROUND
    image[:size, :size] = picture
    image[:, size:] = panel
    return image, entries


def png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of ``image`` ``(H, W, 3)`` uint8 (filter 0 on every row, zlib level 6)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)  # callers may pass another dtype at run time
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) image, got {image.shape}")
    height, width = image.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | Path, image: npt.NDArray[np.uint8]) -> None:
    """Write ``image`` as a PNG at ``path``, atomically."""
    write_atomic(path, png_bytes(image))
