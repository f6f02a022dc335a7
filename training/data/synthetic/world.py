"""Procedural street scenes: the ground layout, the solids every sensor sees, and the annotated objects.

A world lives in its *scene frame*: metric, z up, the ground at z = 0, the road straight along x with
its centre line at y = 0; the ego drives along x in its lane (`RoadLayout.ego_lane_y`). Seen from the
ego, right-hand traffic (Boston) puts the ego lane at y < 0; left-hand traffic (Singapore) mirrors the
whole layout in y.

Across y the ground is: the carriageway (``flat.driveable_surface``: a travel lane each way, a parking
lane each side, sometimes a raised median of ``flat.other``), sidewalks (``flat.sidewalk``), then a
verge of ``flat.terrain`` with paved ``flat.other`` patches, and buildings (``static.manmade``) set
back behind it. Everything off the carriageway (and the median) stands on a kerb ``kerb_height`` above
the road, as in real streets, where the step is what tells a sidewalk from the road in a point cloud:
the raised ground is one ``KERBSIDE`` box solid per side (and one for a median), whose returns take
the ground material under them, the kerb's face included (SemanticKITTI labels kerbs sidewalk).
Street trees, bushes and hedges are ``static.vegetation``; street lights and signs are
``static.manmade``.

Every solid is a box or an ellipsoid with a yaw about z. An annotated object (`WorldObject`) is one box
solid that fills its annotation box up to a `SHELL` margin, so LiDAR returns on it, noise included,
fall inside the box and the points inside the box are the object's; a car is two solids inside its
box, a body box and a rounded cabin (an ellipsoid sitting on it), the profile a LiDAR sees of a real
car from the side (bonnet, windscreen, roof, boot), where one box would be a van. Mean object sizes are the
per-class mean box sizes of nuScenes trainval (the figures detectors use as nuScenes anchors; the
child's is our estimate, nuScenes detection merges it into pedestrian), as ``size = (width, length,
height)`` with the length along the box's own x axis (nuScenes convention, see
`training.data.nuscenes_geometry.box_corners`). Objects are static in the scene frame.

Camera cues (``build_world(camera_cues=True)``, off by default; the generator's ``--camera-cues``) make
a street where the camera carries what the LiDAR lacks, the premise of 2DPASS / 2DDATA's image branch:

- *look-alike pairs* (`LOOKALIKES`): truck and construction vehicle, bicycle and motorcycle. The two
  classes of a pair share one geometry in the LiDAR: one box solid each (as before), the same size
  distribution (the mean of their nuScenes mean sizes, the larger spread of each dimension) and the
  same reflectivity (the mean of theirs); they stand in the same zones with the same odds (wherever
  the street gets one of the two, it is either with even odds). Only the camera tells them apart: each
  class has its own colours (`CUE_PALETTES`: blue-cabbed trucks with light cargo boxes against yellow
  construction vehicles with dark tracks, green bicycles against red motorcycles with a black seat),
  over the painted patterns of their styles that already differ;
- *distant small objects* (`_Builder.distant`): 3 to 6 more pedestrians crossing, and bicycles and
  motorcycles riding, the oncoming lane 35-70 m beyond the ends of the drive, where nothing parks
  between them and the sensors: a few LiDAR returns each (the HDL-32E's rings are 1 m apart at 45 m;
  1-3 points in the median box) but hundreds of pixels in CAM_FRONT or CAM_BACK (a 400-700 px box).

The option draws from the same random stream, so its worlds differ from the default ones; with it
off, the draws, and so the data sets, are those of before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from seg3d.classes import NUSCENES_RAW_CLASSES

__all__ = [
    "CATEGORIES",
    "CUE_PALETTES",
    "LOOKALIKES",
    "SHELL",
    "CategorySpec",
    "Ground",
    "RoadLayout",
    "Shape",
    "Solids",
    "Style",
    "World",
    "WorldObject",
    "build_world",
    "category_specs",
    "facade_windows",
    "ground_sample",
    "raw_index",
]

#: Gap between an object's solid and its annotation box (m): 2σ of the LiDAR range noise.
SHELL = 0.02


def raw_index(name: str) -> int:
    """Official lidarseg index of a category name (seg3d.classes.NUSCENES_RAW_CLASSES)."""
    return NUSCENES_RAW_CLASSES.index(name)


class Shape(IntEnum):
    BOX = 0
    ELLIPSOID = 1


class Style(IntEnum):
    """How `render` paints a solid (patterns in the solid's own frame)."""

    BUILDING = 0
    TRUNK = 1
    FOLIAGE = 2
    POLE = 3
    SIGN = 4
    CAR = 5
    TRUCK = 6
    BUS = 7
    TRAILER = 8
    CONSTRUCTION = 9
    BICYCLE = 10
    MOTORCYCLE = 11
    PEDESTRIAN = 12
    CONE = 13
    BARRIER = 14
    EGO = 15
    KERBSIDE = 16  # raised ground: labelled and painted by the ground material under the hit
    CABIN = 17  # a car's cabin: windows and roof
    FENCE = 18


class Ground(IntEnum):
    """Ground materials; `GROUND_LABELS` gives their lidarseg class."""

    ROAD = 0
    SIDEWALK = 1
    TERRAIN = 2
    OTHER = 3


GROUND_LABELS = np.array(
    [raw_index(n) for n in ("flat.driveable_surface", "flat.sidewalk", "flat.terrain", "flat.other")],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class CategorySpec:
    """An annotated object class: mean size and spread, look, LiDAR reflectivity and attribute."""

    name: str
    size: tuple[float, float, float]  # mean (width, length, height), m
    spread: tuple[float, float, float]  # standard deviation of each
    style: Style
    reflectivity: float  # mean LiDAR intensity (0–255) at normal incidence
    attribute: str | None
    palette: tuple[tuple[int, int, int], ...]  # base colours (render adds windows, wheels, clothes)


_PARKED, _NO_RIDER, _STANDING = "vehicle.parked", "cycle.without_rider", "pedestrian.standing"
CATEGORIES: dict[str, CategorySpec] = {
    spec.name: spec
    for spec in (
        CategorySpec("vehicle.car", (1.95, 4.61, 1.72), (0.1, 0.3, 0.12), Style.CAR, 35.0, _PARKED,
                     ((190, 30, 35), (35, 70, 160), (225, 225, 225), (160, 162, 168), (230, 190, 40),
                      (40, 110, 70), (120, 40, 110))),
        CategorySpec("vehicle.truck", (2.46, 6.74, 2.73), (0.15, 1.0, 0.35), Style.TRUCK, 45.0, _PARKED,
                     ((235, 235, 230), (210, 90, 30), (40, 90, 170), (200, 40, 40))),
        CategorySpec("vehicle.bus.rigid", (2.94, 11.19, 3.47), (0.08, 0.8, 0.15), Style.BUS, 45.0, _PARKED,
                     ((200, 40, 40), (235, 200, 40), (40, 120, 190), (240, 240, 235))),
        CategorySpec("vehicle.trailer", (2.87, 12.0, 3.82), (0.1, 1.5, 0.25), Style.TRAILER, 40.0, _PARKED,
                     ((210, 210, 215), (150, 60, 40), (90, 110, 130))),
        CategorySpec("vehicle.construction", (2.85, 6.37, 3.19), (0.2, 0.6, 0.25), Style.CONSTRUCTION, 50.0,
                     _PARKED, ((240, 180, 20), (235, 120, 20))),
        CategorySpec("vehicle.bicycle", (0.6, 1.68, 1.27), (0.05, 0.08, 0.06), Style.BICYCLE, 25.0, _NO_RIDER,
                     ((30, 30, 35), (170, 30, 30), (30, 80, 170), (40, 140, 80))),
        CategorySpec("vehicle.motorcycle", (0.77, 2.11, 1.47), (0.05, 0.12, 0.07), Style.MOTORCYCLE, 35.0,
                     _NO_RIDER, ((20, 20, 25), (180, 25, 25), (30, 60, 150), (220, 220, 220))),
        CategorySpec("human.pedestrian.adult", (0.66, 0.73, 1.76), (0.05, 0.06, 0.09), Style.PEDESTRIAN, 20.0,
                     _STANDING, ((200, 40, 40), (40, 90, 190), (230, 200, 50), (60, 150, 80), (235, 235, 235),
                                 (230, 120, 40))),
        CategorySpec("human.pedestrian.child", (0.5, 0.52, 1.3), (0.04, 0.04, 0.08), Style.PEDESTRIAN, 20.0,
                     _STANDING, ((240, 90, 150), (80, 200, 220), (250, 220, 60), (120, 220, 90))),
        CategorySpec("movable_object.trafficcone", (0.4, 0.4, 1.06), (0.02, 0.02, 0.05), Style.CONE, 140.0,
                     None, ((250, 110, 20),)),
        CategorySpec("movable_object.barrier", (2.49, 0.49, 0.98), (0.1, 0.05, 0.04), Style.BARRIER, 110.0,
                     None, ((210, 30, 30), (235, 120, 20))),
    )
}  # fmt: skip

#: Pairs of box classes that `build_world` makes alike in the LiDAR with ``camera_cues`` (see the module
#: docstring): their objects are one box solid each with the same size distribution and reflectivity.
LOOKALIKES: tuple[tuple[str, str], ...] = (
    ("vehicle.truck", "vehicle.construction"),
    ("vehicle.bicycle", "vehicle.motorcycle"),
)
#: Base colours of the look-alikes with ``camera_cues``: one hue per class, none shared within a pair
#: (the truck's colour is its cab's; its cargo box stays light, `render`).
CUE_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "vehicle.truck": ((40, 90, 170), (30, 70, 150), (60, 110, 190)),
    "vehicle.construction": ((240, 180, 20), (245, 200, 30)),
    "vehicle.bicycle": ((40, 150, 70), (60, 170, 60)),
    "vehicle.motorcycle": ((190, 30, 30), (170, 25, 35)),
}


def category_specs(camera_cues: bool = False) -> dict[str, CategorySpec]:
    """The object classes `build_world` places: `CATEGORIES`, and with ``camera_cues`` the look-alike
    pairs (`LOOKALIKES`) given one size distribution and reflectivity per pair and their `CUE_PALETTES`."""
    if not camera_cues:
        return CATEGORIES
    specs = dict(CATEGORIES)
    for pair in LOOKALIKES:
        a, b = (CATEGORIES[name] for name in pair)
        size = tuple(round((x + y) / 2, 3) for x, y in zip(a.size, b.size, strict=True))
        spread = tuple(max(x, y) for x, y in zip(a.spread, b.spread, strict=True))
        reflectivity = (a.reflectivity + b.reflectivity) / 2
        for name in pair:
            specs[name] = replace(
                CATEGORIES[name],
                size=size,
                spread=spread,
                reflectivity=reflectivity,
                palette=CUE_PALETTES[name],
            )
    return specs


#: Attributes of the solids of the scenery.
_BUILDING_COLOURS = ((205, 185, 150), (170, 90, 70), (150, 150, 150), (225, 220, 205), (120, 130, 140),
                     (190, 160, 120))  # fmt: skip
_FOLIAGE_COLOURS = ((55, 105, 45), (70, 125, 50), (45, 90, 55), (90, 130, 60))
_OTHER_FLAT_COLOURS = ((150, 105, 90), (165, 155, 135), (120, 120, 110))


@dataclass(frozen=True)
class Solids:
    """All solids of a world as arrays (one row per solid), the form the ray caster wants.

    A solid's own frame is its centre, rotated by ``yaw`` about z: a box spans ``±half`` in it; an
    ellipsoid has semi-axes ``half``.
    """

    shape: np.ndarray  # (N,) int8, Shape
    center: np.ndarray  # (N, 3) float64, scene frame
    half: np.ndarray  # (N, 3) float64
    yaw: np.ndarray  # (N,) float64
    label: np.ndarray  # (N,) uint8, raw lidarseg index
    style: np.ndarray  # (N,) int8, Style
    color: np.ndarray  # (N, 3) uint8, base colour
    reflectivity: np.ndarray  # (N,) float32
    instance: np.ndarray  # (N,) int32, index into World.objects; -1 for scenery and the ego

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def corners(self) -> np.ndarray:
        """``(N, 8, 3)`` corners of each solid's bounding box (an ellipsoid's box encloses it)."""
        signs = np.array(
            [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
        )
        local = signs[None] * self.half[:, None, :]
        cos, sin = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = cos * local[..., 0] - sin * local[..., 1]
        y = sin * local[..., 0] + cos * local[..., 1]
        return np.stack([x, y, local[..., 2]], axis=-1) + self.center[:, None, :]

    def to_local(self, index: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Points ``(M, 3)`` expressed in the frames of solids ``index`` ``(M,)``."""
        offset = points - self.center[index]
        cos, sin = np.cos(self.yaw[index]), np.sin(self.yaw[index])
        return np.stack(
            [cos * offset[:, 0] + sin * offset[:, 1], -sin * offset[:, 0] + cos * offset[:, 1], offset[:, 2]],
            axis=1,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Solids]) -> Solids:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def facade_windows(local: np.ndarray, half: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Which hits on building walls fall on a window: storeys of 3.2 m with windows from 1.0 to 2.3 m
    above each storey's floor, bays of 2.8 m with windows from 0.7 to 2.0 m along the wall. ``local``
    ``(M, 3)`` hit points in the building's frame, ``half`` ``(M, 3)`` its half sizes, ``axis``
    ``(M,)`` the box face axis hit (0, 1: walls; 2: the roof). The camera paints them glass, the
    LiDAR sees through them into the rooms (`lidar.sweep`)."""
    along = np.where(axis == 0, local[:, 1], local[:, 0])
    storey, bay = np.mod(local[:, 2] + half[:, 2], 3.2), np.mod(along, 2.8)
    return (storey > 1.0) & (storey < 2.3) & (bay > 0.7) & (bay < 2.0) & (axis < 2)


def ground_sample(solids: Solids, solid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where to read the ground material (`RoadLayout.material`) of ground hits ``points`` ``(M, 3)``
    whose solid is ``solid`` ``(M,)`` (negative: the road plane, else a ``KERBSIDE`` slab): a hit on a
    kerb slab reads 1 cm towards the slab's centre line, so that a kerb's face takes the raised
    ground's material and not the road's it borders."""
    sample = points.copy()
    slab = solid >= 0
    towards = np.sign(solids.center[solid[slab], 1] - points[slab, 1])
    sample[slab, 1] += 0.01 * towards
    return sample


@dataclass(frozen=True)
class WorldObject:
    """An annotated object: a nuScenes box in the scene frame, and the solid that realises it."""

    category: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # (width, length, height)
    yaw: float
    attribute: str | None
    solid: int  # row in World.solids of its main solid (a car's body; its cabin has the same instance)


@dataclass(frozen=True)
class RoadLayout:
    """The ground plan across the road (y) and the ``flat.other`` patches and crossings along it (x).

    Widths in metres; `patches` are ``(x0, x1, y0, y1)`` rectangles of ``flat.other`` over the verge.
    """

    lane_width: float
    parking_width: float
    median_half_width: float  # 0: a painted centre line instead of a raised median
    sidewalk_width: float
    left_hand_traffic: bool
    patches: tuple[tuple[float, float, float, float], ...]
    crossings: tuple[float, ...]  # x of zebra crossings
    other_color: tuple[int, int, int]
    kerb_height: float = 0.0  # of the sidewalks, verges and median above the road (m)

    @property
    def road_half_width(self) -> float:
        return self.median_half_width + self.lane_width + self.parking_width

    @property
    def sidewalk_outer(self) -> float:
        return self.road_half_width + self.sidewalk_width

    @property
    def ego_side(self) -> int:
        """Sign of y on the ego's side of the road."""
        return 1 if self.left_hand_traffic else -1

    @property
    def ego_lane_y(self) -> float:
        return self.ego_side * (self.median_half_width + self.lane_width / 2)

    def base(self, y: float) -> float:
        """Height of the ground at ``y``: ``kerb_height`` off the carriageway and on a median, else 0."""
        ay = abs(y)
        raised = ay >= self.road_half_width or ay < self.median_half_width
        return self.kerb_height if raised else 0.0

    def material(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground material (`Ground`) at scene-frame points, int8."""
        ay = np.abs(y)
        material = np.full(x.shape, Ground.TERRAIN, dtype=np.int8)
        material[ay < self.sidewalk_outer] = Ground.SIDEWALK
        material[ay < self.road_half_width] = Ground.ROAD
        if self.median_half_width > 0:
            material[ay < self.median_half_width] = Ground.OTHER
        for x0, x1, y0, y1 in self.patches:
            inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (material == Ground.TERRAIN)
            material[inside] = Ground.OTHER
        return material

    def paint(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Road markings at scene-frame points: 0 none, 1 white, 2 yellow (int8)."""
        ay = np.abs(y)
        paint = np.zeros(x.shape, dtype=np.int8)
        lane_edge = self.median_half_width + self.lane_width
        paint[np.abs(ay - lane_edge) < 0.075] = 1  # solid line between travel and parking lane
        if self.median_half_width == 0 and self.left_hand_traffic:  # Singapore: dashed white
            paint[(ay < 0.075) & (np.mod(x, 9.0) < 3.0)] = 1
        elif self.median_half_width == 0:  # Boston: double yellow
            paint[np.abs(ay - 0.12) < 0.06] = 2
        for cx in self.crossings:
            zebra = (np.abs(x - cx) < 2.0) & (ay < lane_edge) & (np.mod(y, 1.0) < 0.5)
            paint[zebra] = 1
        return paint


@dataclass(frozen=True)
class World:
    """One scene's world: ground, solids, annotated objects, and the sun for shading."""

    layout: RoadLayout
    solids: Solids
    objects: tuple[WorldObject, ...]
    sun: tuple[float, float, float]  # unit vector towards the sun, scene frame

    def ego_lane_y(self) -> float:
        return self.layout.ego_lane_y


@dataclass
class _SolidList:
    rows: list[tuple] = field(default_factory=list)

    def add(
        self,
        shape: Shape,
        center: Sequence[float],
        half: Sequence[float],
        yaw: float,
        label: str,
        style: Style,
        color: Sequence[int],
        reflectivity: float,
        instance: int = -1,
    ) -> int:
        self.rows.append((shape, center, half, yaw, raw_index(label), style, color, reflectivity, instance))
        return len(self.rows) - 1

    def build(self) -> Solids:
        cols = list(zip(*self.rows, strict=True))
        return Solids(
            shape=np.array(cols[0], dtype=np.int8),
            center=np.array(cols[1], dtype=np.float64).reshape(-1, 3),
            half=np.array(cols[2], dtype=np.float64).reshape(-1, 3),
            yaw=np.array(cols[3], dtype=np.float64),
            label=np.array(cols[4], dtype=np.uint8),
            style=np.array(cols[5], dtype=np.int8),
            color=np.array(cols[6], dtype=np.uint8).reshape(-1, 3),
            reflectivity=np.array(cols[7], dtype=np.float32),
            instance=np.array(cols[8], dtype=np.int32),
        )


class _Footprints:
    """Ground taken by things (axis-aligned bounds of rotated footprints) and stretches of road kept
    clear (so that the ego drives and sees freely); things keep off both, clear stretches may overlap."""

    def __init__(self) -> None:
        self.things: list[tuple[float, float, float, float]] = []
        self.clear: list[tuple[float, float, float, float]] = []

    @staticmethod
    def bounds(
        x: float, y: float, length: float, width: float, yaw: float
    ) -> tuple[float, float, float, float]:
        c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
        hx, hy = (c * length + s * width) / 2, (s * length + c * width) / 2
        return (x - hx, x + hx, y - hy, y + hy)

    def free(self, box: tuple[float, float, float, float], gap: float, of_clear: bool = True) -> bool:
        """Whether ``box`` keeps ``gap`` from every thing (and from the clear stretches if ``of_clear``)."""
        x0, x1, y0, y1 = box
        others = self.things + self.clear if of_clear else self.things
        return all(x1 + gap <= a or b <= x0 - gap or y1 + gap <= c or d <= y0 - gap for a, b, c, d in others)

    def claim(self, box: tuple[float, float, float, float]) -> None:
        self.things.append(box)

    def keep_clear(self, box: tuple[float, float, float, float]) -> None:
        self.clear.append(box)


class _Builder:
    """Places scenery and objects in the right-hand-traffic frame; `build` mirrors it for left-hand."""

    def __init__(
        self,
        rng: np.random.Generator,
        layout: RoadLayout,
        path_x: tuple[float, float],
        camera_cues: bool = False,
    ) -> None:
        self.rng = rng
        self.layout = layout
        self.specs = category_specs(camera_cues)
        # Look-alike class → its pair, with camera cues only (`twin`).
        self.pairs = {name: pair for pair in LOOKALIKES for name in pair} if camera_cues else {}
        self.solids = _SolidList()
        self.objects: list[WorldObject] = []
        self.taken = _Footprints()
        self.path_x = path_x
        self.fronts: dict[int, list[tuple[float, float, float]]] = {-1: [], 1: []}  # (x0, x1, setback)
        # Ego lane kept clear over the drive plus the ego's length each way (right-hand frame: y < 0).
        lane = layout.median_half_width + layout.lane_width / 2
        self.taken.keep_clear((path_x[0] - 8.0, path_x[1] + 8.0, -lane - 1.6, -lane + 1.6))

    # Objects ---------------------------------------------------------------------------------------

    def twin(self, category: str) -> str:
        """With camera cues, either class of a look-alike pair with even odds (so the two stand in the
        same places as often, and where an object stands tells nothing of which it is); else ``category``."""
        pair = self.pairs.get(category)
        return category if pair is None else pair[int(self.rng.integers(2))]

    def place(
        self, category: str, x: float, y: float, yaw: float, gap: float = 0.3, exact: bool = False
    ) -> bool:
        """Place an object of ``category`` (or its `twin`, unless ``exact``) if its footprint is free."""
        if not exact:
            category = self.twin(category)
        spec = self.specs[category]
        width, length, height = (
            max(m + s * float(self.rng.standard_normal()), 0.6 * m)
            for m, s in zip(spec.size, spec.spread, strict=True)
        )
        footprint = _Footprints.bounds(x, y, length, width, yaw)
        if not self.taken.free(footprint, gap):
            return False
        self.taken.claim(footprint)
        color = spec.palette[int(self.rng.integers(len(spec.palette)))]
        jitter = self.rng.integers(-12, 13, size=3)
        color = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(color, jitter, strict=True))
        reflectivity = spec.reflectivity * float(self.rng.uniform(0.8, 1.2))
        center = (x, y, self.layout.base(y) + height / 2)
        half = (length / 2 - SHELL, width / 2 - SHELL, height / 2 - SHELL)
        instance = len(self.objects)
        if spec.style == Style.CAR:
            solid = self.car(center, (length, width, height), yaw, color, reflectivity, instance)
        else:
            solid = self.solids.add(
                Shape.BOX, center, half, yaw, category, spec.style, color, reflectivity, instance
            )
        self.objects.append(
            WorldObject(category, center, (width, length, height), yaw, spec.attribute, solid)
        )
        return True

    def car(
        self,
        center: tuple[float, float, float],
        size: tuple[float, float, float],
        yaw: float,
        color: tuple[int, ...],
        reflectivity: float,
        instance: int,
    ) -> int:
        """A car's body (a box up to the window line) and cabin (the upper half of an ellipsoid on it,
        set back from the bonnet) inside the box ``center``, ``size = (length, width, height)``;
        returns the body's row."""
        length, width, height = size
        rng, bottom = self.rng, center[2] - height / 2
        body = float(rng.uniform(0.5, 0.62)) * height  # the window line
        cabin = float(rng.uniform(0.6, 0.75)) * length  # the dome's length at the window line
        back = float(rng.uniform(0.0, 0.05)) * length  # the cabin sits behind the middle
        c, s = np.cos(yaw), np.sin(yaw)
        half = (length / 2 - SHELL, width / 2 - SHELL, body / 2 - SHELL)
        row = self.solids.add(Shape.BOX, (center[0], center[1], bottom + body / 2), half, yaw, "vehicle.car",
                              Style.CAR, color, reflectivity, instance)  # fmt: skip
        dome = (cabin / 2, 0.47 * width, height - body - SHELL)
        at = (center[0] - c * back, center[1] - s * back, bottom + body)
        self.solids.add(
            Shape.ELLIPSOID, at, dome, yaw, "vehicle.car", Style.CABIN, color, reflectivity, instance
        )
        return row

    def spot(self, zone: str, x_range: tuple[float, float]) -> tuple[float, float, float]:
        """A random ``(x, y, yaw)`` in a zone of the right-hand frame (ego side is y < 0)."""
        lay, rng = self.layout, self.rng
        x = float(rng.uniform(*x_range))
        side = -1 if rng.random() < 0.5 else 1
        inner_parking = lay.median_half_width + lay.lane_width
        heading = 0.0 if side < 0 else np.pi  # parked along the traffic of its side
        if zone == "parking":
            y = side * (inner_parking + lay.parking_width / 2 + rng.uniform(-0.15, 0.15))
            return x, y, heading + rng.normal(0, 0.03)
        if zone == "oncoming":
            return (
                x,
                lay.median_half_width + lay.lane_width / 2 + rng.uniform(-0.3, 0.3),
                np.pi + rng.normal(0, 0.03),
            )
        if zone == "curb":  # on the sidewalk by the kerb: bicycles, motorcycles, barriers
            y = side * (lay.road_half_width + rng.uniform(0.45, 0.9))
            return x, y, heading + rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.1)
        if zone == "sidewalk":  # people walk along the sidewalk, some face the road
            y = side * (lay.road_half_width + rng.uniform(0.5, lay.sidewalk_width - 0.5))
            heading = rng.choice([0.0, np.pi, np.pi / 2, -np.pi / 2], p=[0.35, 0.35, 0.15, 0.15])
            return x, y, heading + rng.normal(0, 0.15)
        raise ValueError(zone)

    def scatter(
        self,
        category: str,
        zone: str,
        count: int,
        x_range: tuple[float, float],
        open_view: bool = False,
        attempts: int = 20,
        exact: bool = False,
    ) -> int:
        """Place up to ``count`` objects at random spots of ``zone``; returns how many fit.

        ``open_view``: keep free the stretch of parking lane through which the ego, anywhere on its
        drive, sees the object (for objects in a parking lane: 6 m of it before and after), so that
        parked vehicles do not hide it. ``exact``: no `twin` swap.
        """
        placed = 0
        for _ in range(count * attempts):
            if placed == count:
                break
            x, y, yaw = self.spot(zone, x_range)
            if category == "movable_object.barrier":
                yaw = np.pi / 2 + self.rng.normal(0, 0.05)  # long side (the box width) along the road
            view = self.view_corridor(x, y, self.specs[category].size[1] / 2, zone == "parking")
            if open_view and not self.taken.free(view, 0.0, of_clear=False):
                continue
            if self.place(category, x, y, float(yaw), exact=exact):
                placed += 1
                if open_view:
                    self.taken.keep_clear(view)
        return placed

    def view_corridor(
        self, x: float, y: float, reach: float, in_lane: bool
    ) -> tuple[float, float, float, float]:
        """The stretch of ground through which the sensors, anywhere on the drive, look at an object
        at ``(x, y)`` reaching ``reach`` around it: from the ego lane's edge to the object (the oncoming
        lane too when the object is across it); for an object in a parking lane, 6 m of that lane
        before and after it."""
        lay = self.layout
        inner, outer = lay.median_half_width + lay.lane_width, lay.road_half_width
        if in_lane:
            lane = (inner, outer) if y > 0 else (-outer, -inner)
            return (x - reach - 6.0, x + reach + 6.0, *lane)
        near_edge = abs(y) - reach - 0.2
        band = (lay.median_half_width, near_edge) if y > 0 else (-near_edge, -inner)
        ego_y = -(lay.median_half_width + lay.lane_width / 2)
        # The sensors ride 0-1.7 m ahead of the ego's origin (rear axle).
        ends = (self.path_x[0] - 0.5, self.path_x[1] + 2.0)
        # Where the sight lines from both ends of the drive cross the band's edges.
        crossings = [ex + (edge - ego_y) / (y - ego_y) * (x - ex) for ex in ends for edge in band]
        return (min(crossings) - reach - 1.0, max(crossings) + reach + 1.0, *band)

    def crossing(self, x: float) -> None:
        """Pedestrians on a zebra crossing (in the oncoming lane) and no parking across it."""
        lay = self.layout
        for _ in range(int(self.rng.integers(1, 3))):
            y = lay.median_half_width + float(self.rng.uniform(0.5, lay.lane_width - 0.5))
            self.place(
                "human.pedestrian.adult",
                x + float(self.rng.uniform(-1.2, 1.2)),
                y,
                float(self.rng.choice([np.pi / 2, -np.pi / 2]) + self.rng.normal(0, 0.2)),
            )
        self.taken.keep_clear((x - 2.5, x + 2.5, -lay.road_half_width, lay.road_half_width))

    def work_zone(self, x_range: tuple[float, float]) -> None:
        """A row of cones and barriers closing a free stretch of a parking lane."""
        lay, rng = self.layout, self.rng
        cones, barriers = int(rng.integers(4, 9)), int(rng.integers(2, 6))
        length = cones * 2.6 + barriers * 3.0
        for _ in range(20):  # find a free stretch
            side = -1 if rng.random() < 0.5 else 1
            x = float(rng.uniform(*x_range))
            band = (lay.median_half_width + lay.lane_width, lay.road_half_width)
            stretch = (x - 0.5, x + length, *((band[0], band[1]) if side > 0 else (-band[1], -band[0])))
            if self.taken.free(stretch, 0.2):
                break
        y = side * (lay.median_half_width + lay.lane_width + lay.parking_width * 0.45)
        for _ in range(cones):
            self.place(
                "movable_object.trafficcone", x, y + rng.normal(0, 0.1), float(rng.uniform(-np.pi, np.pi))
            )
            x += float(rng.uniform(1.4, 2.6))
        y_barrier = side * (lay.road_half_width - 0.4)
        for _ in range(barriers):
            self.place("movable_object.barrier", x, y_barrier, np.pi / 2 + rng.normal(0, 0.03), gap=0.1)
            x += float(rng.uniform(2.6, 3.0))

    def traffic(self, x_range: tuple[float, float]) -> None:
        """Parked vehicles along both parking lanes, with gaps."""
        kinds = ("vehicle.car", "vehicle.truck", "vehicle.bus.rigid", "vehicle.trailer",
                 "vehicle.construction", "vehicle.motorcycle", "vehicle.bicycle")  # fmt: skip
        weights = np.array([0.68, 0.1, 0.04, 0.03, 0.03, 0.07, 0.05])
        lay, rng = self.layout, self.rng
        for side in (-1, 1):
            x = x_range[0] + float(rng.uniform(0, 6))
            while x < x_range[1]:
                kind = kinds[int(rng.choice(len(kinds), p=weights))]
                length = self.specs[kind].size[1]
                if rng.random() < 0.6:  # else an empty bay
                    y = side * (lay.median_half_width + lay.lane_width + lay.parking_width / 2)
                    yaw = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.03)
                    self.place(kind, x + length / 2, y + rng.normal(0, 0.1), float(yaw))
                x += length + float(rng.uniform(0.8, 7.0))

    def distant(self, count: int) -> None:
        """Up to ``count`` small interest objects (`_DISTANT`) 35-70 m beyond either end of the drive
        (camera cues): cyclists riding the oncoming lane, pedestrians crossing it. There, and not on
        the sidewalks, nothing parks between them and the sensors; the 15 m of the lane before each
        (towards the drive) are kept clear of oncoming cars, which would hide it."""
        lay, rng = self.layout, self.rng
        x0, x1 = self.path_x
        for _ in range(count):
            category = _DISTANT[int(rng.integers(len(_DISTANT)))]
            crossing = CATEGORIES[category].style == Style.PEDESTRIAN
            for _ in range(20):
                ahead = rng.random() < 0.5
                x = float(rng.uniform(x1 + 35.0, x1 + 70.0) if ahead else rng.uniform(x0 - 70.0, x0 - 35.0))
                y = lay.median_half_width + float(rng.uniform(0.6, lay.lane_width - 0.6))
                heading = float(rng.choice([np.pi / 2, -np.pi / 2])) if crossing else np.pi
                if self.place(category, x, y, heading + float(rng.normal(0, 0.1))):
                    before = (x - 15.0, x) if ahead else (x, x + 15.0)
                    self.taken.keep_clear(
                        (*before, lay.median_half_width, lay.median_half_width + lay.lane_width)
                    )
                    break

    # Scenery ---------------------------------------------------------------------------------------

    def buildings(self, x_range: tuple[float, float]) -> None:
        """Blocks along both sides: most face the back of the sidewalk, the others stand behind a verge
        (terrain, paved patches, trees), with gaps and empty lots between; half the verges and empty
        lots are fenced off from the sidewalk (`fence`)."""
        lay, rng = self.layout, self.rng
        for side in (-1, 1):
            x = x_range[0]
            while x < x_range[1]:
                length = float(rng.uniform(8, 30))
                open_lot = True
                if rng.random() > 0.12:  # else an empty lot
                    setback = (
                        float(rng.uniform(0.3, 1.5)) if rng.random() < 0.6 else float(rng.uniform(4, 10))
                    )
                    open_lot = setback > 3
                    front = lay.sidewalk_outer + setback
                    depth, height = float(rng.uniform(8, 18)), float(rng.uniform(4, 24))
                    color = _BUILDING_COLOURS[int(rng.integers(len(_BUILDING_COLOURS)))]
                    self.scenery(
                        Shape.BOX,
                        (x + length / 2, side * (front + depth / 2), height / 2),
                        (length / 2, depth / 2, height / 2),
                        "static.manmade",
                        Style.BUILDING,
                        color,
                        float(rng.uniform(25, 55)),
                    )
                    self.fronts[side].append((x, x + length, setback))
                if open_lot and rng.random() < 0.5:
                    self.fence(side, x, x + length)
                x += length + (float(rng.uniform(1, 8)) if rng.random() < 0.5 else 0.0)

    def fence(self, side: int, x0: float, x1: float) -> None:
        """A fence or a low wall (``static.manmade``) along the back of the sidewalk over ``[x0, x1]``,
        with a gate gap somewhere along it."""
        rng, lay = self.rng, self.layout
        height, thickness = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.05, 0.3))
        y = side * (lay.sidewalk_outer + 0.15 + thickness / 2)
        gate = float(rng.uniform(x0, x1))
        color = (
            (150, 150, 150)
            if thickness < 0.15
            else _BUILDING_COLOURS[int(rng.integers(len(_BUILDING_COLOURS)))]
        )
        for a, b in ((x0, gate - 0.6), (gate + 0.6, x1)):
            if b - a < 0.5:
                continue
            self.taken.claim(_Footprints.bounds((a + b) / 2, y, b - a, thickness, 0.0))
            self.scenery(Shape.BOX, ((a + b) / 2, y, height / 2), ((b - a) / 2, thickness / 2, height / 2),
                         "static.manmade", Style.FENCE, color, float(rng.uniform(25, 55)))  # fmt: skip

    def verge(self, side: int, x0: float, x1: float) -> float:
        """Depth of open ground behind the sidewalk over ``[x0, x1]`` (up to the nearest facade)."""
        depths = [setback for a, b, setback in self.fronts[side] if a < x1 and x0 < b]
        return min(depths, default=30.0)

    def street_furniture(self, x_range: tuple[float, float]) -> None:
        """Trees, bushes and hedges where there is a verge; street lights and signs on the kerb."""
        for side in (-1, 1):
            self.trees(side, x_range)
            self.street_lights(side, x_range)
            self.signs(side, x_range)
            self.bushes(side, x_range)

    def trees(self, side: int, x_range: tuple[float, float]) -> None:
        x = x_range[0] + float(self.rng.uniform(0, 10))
        while x < x_range[1]:
            offset = float(self.rng.uniform(0.9, 2.2))
            room = self.verge(side, x - 2.5, x + 2.5) - offset
            if self.rng.random() < 0.75 and room > 1.5:
                self.tree(x, side * (self.layout.sidewalk_outer + offset), max_radius=room - 0.2)
            x += float(self.rng.uniform(7, 15))

    def tree(self, x: float, y: float, max_radius: float) -> None:
        rng = self.rng
        trunk, width = float(rng.uniform(2.4, 3.4)), float(rng.uniform(0.25, 0.4))
        radius = (min(float(rng.uniform(1.3, 2.5)), max_radius),) * 2 + (float(rng.uniform(1.2, 2.2)),)
        self.taken.claim(_Footprints.bounds(x, y, width, width, 0.0))
        trunk_box = ((x, y, trunk / 2 + 0.3), (width / 2, width / 2, trunk / 2 + 0.3))
        self.scenery(Shape.BOX, *trunk_box, "static.vegetation", Style.TRUNK, (95, 70, 45), 25.0)
        color = _FOLIAGE_COLOURS[int(rng.integers(len(_FOLIAGE_COLOURS)))]
        # The crown's bottom stays above 2.1 m: pedestrians under it keep their box to themselves.
        crown = ((x, y, trunk + 0.9 * radius[2]), radius)
        self.scenery(Shape.ELLIPSOID, *crown, "static.vegetation", Style.FOLIAGE, color, 18.0)

    def street_lights(self, side: int, x_range: tuple[float, float]) -> None:
        x = x_range[0] + float(self.rng.uniform(0, 30))
        while x < x_range[1]:
            y, height = side * (self.layout.road_half_width + 0.7), float(self.rng.uniform(6, 8.5))
            self.taken.claim(_Footprints.bounds(x, y, 0.3, 0.3, 0.0))
            pole = ((x, y, height / 2), (0.11, 0.11, height / 2))
            self.scenery(Shape.BOX, *pole, "static.manmade", Style.POLE, (120, 122, 125), 60.0)
            x += float(self.rng.uniform(22, 35))

    def signs(self, side: int, x_range: tuple[float, float]) -> None:
        for _ in range(int(self.rng.integers(1, 4))):
            x, y = float(self.rng.uniform(*x_range)), side * (self.layout.road_half_width + 0.9)
            footprint = _Footprints.bounds(x, y, 0.8, 0.3, 0.0)
            if not self.taken.free(footprint, 0.2):
                continue
            self.taken.claim(footprint)
            post = ((x, y, 1.25), (0.05, 0.05, 1.25))
            self.scenery(Shape.BOX, *post, "static.manmade", Style.POLE, (130, 130, 135), 60.0)
            color = ((30, 80, 170), (200, 30, 30), (235, 235, 235))[int(self.rng.integers(3))]
            plate = ((x, y, 2.75), (0.35, 0.03, 0.35))
            yaw = float(self.rng.choice([0, np.pi / 2]))
            self.scenery(Shape.BOX, *plate, "static.manmade", Style.SIGN, color, 200.0, yaw=yaw)

    def bushes(self, side: int, x_range: tuple[float, float]) -> None:
        """Bushes on the verge, and sometimes a hedge along the back of the sidewalk."""
        rng, outer = self.rng, self.layout.sidewalk_outer
        for _ in range(int(rng.integers(4, 12))):
            x, offset = float(rng.uniform(*x_range)), float(rng.uniform(0.6, 3.0))
            radius = rng.uniform((0.5, 0.5, 0.4), (1.3, 1.3, 0.9))
            if self.verge(side, x - radius[0], x + radius[0]) < offset + radius[1]:
                continue
            color = _FOLIAGE_COLOURS[int(rng.integers(len(_FOLIAGE_COLOURS)))]
            bush = ((x, side * (outer + offset), 0.6 * radius[2]), tuple(radius))
            yaw = float(rng.uniform(0, np.pi))
            self.scenery(Shape.ELLIPSOID, *bush, "static.vegetation", Style.FOLIAGE, color, 18.0, yaw=yaw)
        x, length = float(rng.uniform(*x_range)), float(rng.uniform(4, 12))
        if rng.random() < 0.5 and self.verge(side, x - length / 2, x + length / 2) > 1.2:
            hedge = ((x, side * (outer + 0.5), 0.55), (length / 2, 0.4, 0.55))
            self.scenery(Shape.BOX, *hedge, "static.vegetation", Style.FOLIAGE, _FOLIAGE_COLOURS[1], 18.0)

    def scenery(
        self,
        shape: Shape,
        center: Sequence[float],
        half: Sequence[float],
        label: str,
        style: Style,
        color: Sequence[int],
        reflectivity: float,
        yaw: float = 0.0,
    ) -> None:
        """Add an unannotated solid (buildings, vegetation, street furniture) standing on the ground
        at its centre: ``center``'s z is from the ground there (the kerb's top off the road)."""
        lifted = (center[0], center[1], center[2] + self.layout.base(center[1]))
        self.solids.add(shape, lifted, half, yaw, label, style, color, reflectivity)

    def kerbside(self, x_range: tuple[float, float]) -> None:
        """The raised ground over ``x_range``: a slab each side from the kerb outwards, and the median."""
        lay = self.layout
        if lay.kerb_height <= 0:
            return
        x0, x1 = x_range
        half_x, half_z, depth = (x1 - x0) / 2, lay.kerb_height / 2, 120.0
        for side in (-1, 1):
            centre = ((x0 + x1) / 2, side * (lay.road_half_width + depth / 2), half_z)
            self.solids.add(Shape.BOX, centre, (half_x, depth / 2, half_z), 0.0, "flat.sidewalk",
                            Style.KERBSIDE, (160, 160, 160), 0.0)  # fmt: skip
        if lay.median_half_width > 0:
            centre = ((x0 + x1) / 2, 0.0, half_z)
            self.solids.add(Shape.BOX, centre, (half_x, lay.median_half_width, half_z), 0.0, "flat.other",
                            Style.KERBSIDE, (160, 160, 160), 0.0)  # fmt: skip

    def build(self, sun: tuple[float, float, float]) -> World:
        solids, objects = self.solids.build(), tuple(self.objects)
        if self.layout.left_hand_traffic:  # mirror y: the ego lane moves to y > 0
            solids = replace(solids, center=solids.center * np.array([1.0, -1.0, 1.0]), yaw=-solids.yaw)
            objects = tuple(
                replace(o, center=(o.center[0], -o.center[1], o.center[2]), yaw=-o.yaw) for o in objects
            )
            sun = (sun[0], -sun[1], sun[2])
        return World(self.layout, solids, objects, sun)


def _layout(
    rng: np.random.Generator, left_hand_traffic: bool, x_range: tuple[float, float], near: tuple[float, float]
) -> RoadLayout:
    lane_width = float(rng.uniform(3.2, 3.7))
    parking_width = float(rng.uniform(2.3, 2.7))
    median = float(rng.uniform(0.5, 1.2)) if rng.random() < 0.35 else 0.0
    sidewalk = float(rng.uniform(2.4, 4.0))
    outer = median + lane_width + parking_width + sidewalk
    patches = []
    for side in (-1, 1):
        x = x_range[0] + float(rng.uniform(0, 15))
        while x < x_range[1]:
            length = float(rng.uniform(8, 25))
            depth = float(rng.uniform(3, 9))
            y0, y1 = (outer, outer + depth) if side > 0 else (-outer - depth, -outer)
            patches.append((x, x + length, y0, y1))
            x += length + float(rng.uniform(10, 35))
    crossings = (float(rng.uniform(*near)),) if rng.random() < 0.5 else ()
    other = _OTHER_FLAT_COLOURS[int(rng.integers(len(_OTHER_FLAT_COLOURS)))]
    kerb = float(rng.uniform(0.08, 0.2))  # kerb heights of city streets
    return RoadLayout(
        lane_width, parking_width, median, sidewalk, left_hand_traffic, tuple(patches), crossings, other, kerb
    )


#: Where each annotated category usually stands (zones of `_Builder.spot`).
_ZONES = {
    "vehicle.car": "parking", "vehicle.truck": "parking", "vehicle.bus.rigid": "parking",
    "vehicle.trailer": "parking", "vehicle.construction": "parking", "human.pedestrian.adult": "sidewalk",
    "human.pedestrian.child": "sidewalk", "vehicle.bicycle": "curb", "vehicle.motorcycle": "curb",
    "movable_object.barrier": "curb", "movable_object.trafficcone": "parking",
}  # fmt: skip
#: The classes whose 2D boxes the Local Object Branch leans on most (docs/architecture.md §5): placed in
#: open view of the road.
_IN_VIEW = ("vehicle.car", "vehicle.truck", "human.pedestrian.adult", "human.pedestrian.child",
            "vehicle.bicycle", "vehicle.motorcycle")  # fmt: skip
#: The small interest classes `_Builder.distant` places far along the street (camera cues).
_DISTANT = ("human.pedestrian.adult", "human.pedestrian.child", "vehicle.bicycle", "vehicle.motorcycle")


def build_world(
    rng: np.random.Generator, path_x: tuple[float, float], left_hand_traffic: bool, camera_cues: bool = False
) -> World:
    """A random street around an ego drive from ``path_x[0]`` to ``path_x[1]`` along the scene x axis.

    Objects crowd the 70 m before and after the drive, where the LiDAR (80 m) sees them; every
    annotated category occurs within 50 m of the drive at least once, so that every scene has all 16
    training classes and close, fully visible examples of each; scenery spans 130 m each way so that
    the cameras see a street up to their haze. ``camera_cues``: look-alike pairs and distant small
    objects (the module docstring).
    """
    x0, x1 = path_x
    near, people, reach = (x0 - 30.0, x1 + 30.0), (x0 - 50.0, x1 + 50.0), (x0 - 130.0, x1 + 130.0)
    builder = _Builder(rng, _layout(rng, left_hand_traffic, reach, near), path_x, camera_cues)
    builder.kerbside((reach[0] - 20.0, reach[1] + 20.0))
    builder.buildings(reach)
    builder.street_furniture(reach)
    # A lead vehicle ahead of the drive and a follower behind it, in the ego lane.
    lane_y = -(builder.layout.median_half_width + builder.layout.lane_width / 2)
    lead = ("vehicle.car", "vehicle.truck", "vehicle.bus.rigid")[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    lead_x = x1 + 9.0 + builder.specs[lead].size[1] / 2 + float(rng.uniform(0, 8))
    builder.place(lead, lead_x, lane_y, 0.0)
    builder.place("vehicle.car", x0 - 18.0 - float(rng.uniform(0, 10)), lane_y, 0.0)
    for x in builder.layout.crossings:
        builder.crossing(x)
    for category in ("vehicle.bus.rigid", "vehicle.trailer", "vehicle.construction"):
        builder.scatter(category, "parking", 1, (x0 - 45.0, x1 + 45.0))
    for category in _IN_VIEW:
        builder.scatter(category, _ZONES[category], 1, near, open_view=True)
    builder.work_zone(near)
    crowd = {"human.pedestrian.adult": (5, 12), "human.pedestrian.child": (1, 4), "vehicle.bicycle": (1, 4),
             "vehicle.motorcycle": (0, 3)}  # fmt: skip
    for category, (low, high) in crowd.items():
        builder.scatter(category, _ZONES[category], int(rng.integers(low, high)), people, open_view=True)
    if camera_cues:
        builder.distant(int(rng.integers(3, 7)))
    builder.scatter("vehicle.car", "oncoming", int(rng.integers(1, 4)), (x0 - 40, x1 + 40))
    for category, zone in _ZONES.items():  # whatever did not fit in a crowded street, anywhere near
        for fallback in (zone, "parking", "sidewalk"):
            if not any(o.category == category and abs(o.center[0]) < 50 for o in builder.objects):
                # exact: a look-alike's last chance must not turn into its twin
                builder.scatter(category, fallback, 1, people, attempts=200, exact=True)
    builder.traffic((x0 - 70, x1 + 70))
    azimuth, elevation = rng.uniform(-np.pi, np.pi), rng.uniform(np.radians(25), np.radians(60))
    sun = (
        float(np.cos(elevation) * np.cos(azimuth)),
        float(np.cos(elevation) * np.sin(azimuth)),
        float(np.sin(elevation)),
    )
    return builder.build(sun)
