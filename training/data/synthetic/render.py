"""Camera images of a world, ray cast from the camera's own pose.

Each pixel of a reduced grid (``scale`` × 1600×900, default half) casts one ray through its centre
with the camera's pinhole model; the nearest surface (`raycast.cast`, the same one the LiDAR uses)
decides the colour, so occlusion is exact and LiDAR points projected with the nuScenes chain land on
the surface that returned them. The image is then resized to 1600×900 (bilinear, which keeps pixel
centres aligned: reduced pixel ``i`` is full-resolution coordinate ``(i + 0.5) / scale``).

Colours: ground materials with procedural texture and road markings; solids by `Style` with
patterns in their own frame (windows, wheels, clothes, stripes) and Lambert shading from the scene's
sun; sky gradient and distance haze. The ego is not drawn (the cameras sit on it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from training.data.synthetic.raycast import GROUND, MISS, Window, cast
from training.data.synthetic.sensors import IMAGE_SIZE, SensorCalibration
from training.data.synthetic.world import Ground, Solids, Style, World, facade_windows, ground_sample

__all__ = ["CameraView", "render_camera"]

RENDER_RANGE = 300.0  # m; beyond it the haze has swallowed everything
NEAR = 0.05  # m; corners nearer than this to the image plane make a solid's window the whole image
HAZE = np.array([200.0, 208.0, 218.0], dtype=np.float32)
HAZE_DISTANCE = 450.0  # m; haze = 1 - exp(-distance / HAZE_DISTANCE)
SKY_HORIZON = np.array([196.0, 212.0, 230.0], dtype=np.float32)
SKY_ZENITH = np.array([92.0, 138.0, 205.0], dtype=np.float32)
GLASS = np.array([48.0, 58.0, 70.0], dtype=np.float32)
TYRE = np.array([26.0, 26.0, 28.0], dtype=np.float32)


@dataclass(frozen=True)
class CameraView:
    """A rendered image, what each reduced-grid pixel shows, and per solid how many pixels it covers
    and shows."""

    image: np.ndarray  # (900, 1600, 3) uint8
    solid: np.ndarray  # (rows, cols) int32 on the reduced grid: solid row, raycast.GROUND or raycast.MISS
    covered: np.ndarray  # (num solids,) pixels whose ray meets the solid, occluded or not
    visible: np.ndarray  # (num solids,) pixels where it is the nearest surface


def render_camera(
    world: World,
    camera: SensorCalibration,
    origin: np.ndarray,
    to_scene: np.ndarray,
    rng: np.random.Generator,
    scale: float = 0.5,
) -> CameraView:
    """Render ``camera`` placed at ``origin`` (scene frame) with rotation camera → scene ``to_scene``."""
    from PIL import Image  # Pillow is a training extra; import where it is needed

    rays = _pixel_rays(camera, scale)
    height, width = rays.shape[:2]
    directions = rays @ to_scene.T.astype(np.float32)

    solids = world.solids
    windows = _screen_windows(solids, origin, to_scene, camera, scale, (width, height))
    hits = cast(solids, origin, directions, windows, RENDER_RANGE)

    color = np.empty((height, width, 3), dtype=np.float32)
    sky = hits.solid == MISS
    up = np.clip(directions[..., 2][sky] * 4.0, 0.0, 1.0)[:, None].astype(np.float32)
    color[sky] = SKY_HORIZON * (1 - up) + SKY_ZENITH * up
    sun = np.asarray(world.sun, dtype=np.float64)
    hit = ~sky
    distance = hits.distance[hit]
    points = origin + distance[:, None].astype(np.float64) * directions[hit]
    surface = np.empty((points.shape[0], 3), dtype=np.float32)
    hit_solid = hits.solid[hit]
    # The road plane and the raised ground (kerb slabs) both show the ground material under the hit.
    ground = hit_solid == GROUND
    ground[hit_solid >= 0] = solids.style[hit_solid[hit_solid >= 0]] == Style.KERBSIDE
    sample = ground_sample(solids, hit_solid[ground], points[ground])
    surface[ground] = _ground_color(world, sample, distance[ground]) * np.float32(0.55 + 0.45 * sun[2])
    index = hit_solid[~ground]
    face = hits.face[hit][~ground]
    surface[~ground] = _solid_color(solids, index, face, points[~ground], sun)
    haze = (1.0 - np.exp(-distance / HAZE_DISTANCE))[:, None].astype(np.float32)
    color[hit] = surface * (1 - haze) + HAZE * haze
    color *= np.float32(rng.uniform(0.94, 1.06))  # exposure differs a little between cameras
    color += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(2.0)  # sensor noise
    small = Image.fromarray(np.clip(color, 0, 255).astype(np.uint8))
    image = np.asarray(small.resize(IMAGE_SIZE, Image.Resampling.BILINEAR))

    shown = hits.solid[hits.solid >= 0]
    visible = np.bincount(shown, minlength=len(solids)).astype(np.int64)
    return CameraView(image, hits.solid, hits.covered, visible)


@functools.lru_cache(maxsize=16)
def _pixel_rays(camera: SensorCalibration, scale: float) -> np.ndarray:
    """Unit rays ``(rows, cols, 3)`` (float32, camera frame) through the centres of the reduced grid."""
    width, height = round(IMAGE_SIZE[0] * scale), round(IMAGE_SIZE[1] * scale)
    (cx, cy), f = camera.principal, camera.focal
    u = (np.arange(width) + 0.5) / scale
    v = (np.arange(height) + 0.5) / scale
    rays = np.empty((height, width, 3), dtype=np.float64)
    rays[..., 0] = ((u - cx) / f)[None, :]
    rays[..., 1] = ((v - cy) / f)[:, None]
    rays[..., 2] = 1.0
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    rays = rays.astype(np.float32)
    rays.flags.writeable = False  # shared between calls
    return rays


def _screen_windows(
    solids: Solids,
    origin: np.ndarray,
    to_scene: np.ndarray,
    camera: SensorCalibration,
    scale: float,
    size: tuple[int, int],
) -> list[Window]:
    """Pixel windows of the solids in front of the camera, from their projected corners."""
    width, height = size
    corners = (solids.corners() - origin) @ to_scene  # (N, 8, 3) in the camera frame
    depth = corners[..., 2]
    nearest = np.linalg.norm(corners, axis=2).min(axis=1)
    (cx, cy), f = camera.principal, camera.focal
    windows = []
    for i in np.flatnonzero(
        (depth > NEAR).any(axis=1) & (nearest < RENDER_RANGE) & (solids.style != Style.EGO)
    ):
        if (depth[i] <= NEAR).any():  # crosses the image plane: test every pixel
            windows.append(Window(int(i), 0, height, 0, width))
            continue
        u = (f * corners[i, :, 0] / depth[i] + cx) * scale - 0.5  # reduced-grid coordinates
        v = (f * corners[i, :, 1] / depth[i] + cy) * scale - 0.5
        col0, col1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, width)
        row0, row1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, height)
        if col0 < col1 and row0 < row1:
            windows.append(Window(int(i), row0, row1, col0, col1))
    return windows


def _hash(ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """A pseudo-random value in [0, 1) per integer lattice point (float32)."""
    h = ix.astype(np.int64).astype(np.uint32) * np.uint32(0x8DA6B343)
    h ^= iy.astype(np.int64).astype(np.uint32) * np.uint32(0xD8163841) + np.uint32(
        salt * 0x9E3779B9 & 0xFFFFFFFF
    )
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)


def _value_noise(x: np.ndarray, y: np.ndarray, cell: float, salt: int = 0) -> np.ndarray:
    """Smooth noise in [0, 1) over the plane with features of size ``cell`` (float32)."""
    fx, fy = x / cell, y / cell
    ix, iy = np.floor(fx), np.floor(fy)
    tx, ty = (fx - ix).astype(np.float32), (fy - iy).astype(np.float32)
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    a, b = _hash(ix, iy, salt), _hash(ix + 1, iy, salt)
    c, d = _hash(ix, iy + 1, salt), _hash(ix + 1, iy + 1, salt)
    return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty


def _ground_color(world: World, points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    layout = world.layout
    x, y = points[:, 0], points[:, 1]
    material = layout.material(x, y)
    paint = layout.paint(x, y)
    # Fine texture fades with distance, where a pixel spans many of its cells.
    fine = (_value_noise(x, y, 0.12) - 0.5) * np.exp(-distance / 30.0).astype(np.float32)
    coarse = _value_noise(x, y, 2.5, salt=1)
    color = np.empty((x.shape[0], 3), dtype=np.float32)
    road = material == Ground.ROAD
    color[road] = np.array([82.0, 82.0, 86.0]) * (0.92 + 0.16 * coarse[road] + 0.3 * fine[road])[:, None]
    color[road & (paint == 1)] = (226.0, 226.0, 220.0)
    color[road & (paint == 2)] = (222.0, 180.0, 45.0)
    walk = material == Ground.SIDEWALK
    joints = (np.mod(x[walk], 1.2) < 0.05) | (np.mod(np.abs(y[walk]), 1.2) < 0.05)
    kerb = np.abs(np.abs(y[walk]) - layout.road_half_width) < 0.18
    shade = (
        (0.93 + 0.1 * coarse[walk] + 0.2 * fine[walk])
        * np.where(joints, 0.78, 1.0)
        * np.where(kerb, 1.12, 1.0)
    )
    color[walk] = np.array([176.0, 170.0, 160.0]) * shade[:, None]
    terrain = material == Ground.TERRAIN
    soil = _value_noise(x[terrain], y[terrain], 4.0, salt=2)[:, None]
    grass = np.array([78.0, 124.0, 52.0]) * (1 - soil) + np.array([128.0, 108.0, 76.0]) * soil
    color[terrain] = grass * (0.85 + 0.5 * fine[terrain] + 0.15 * coarse[terrain])[:, None]
    other = material == Ground.OTHER
    color[other] = (
        np.array(layout.other_color, dtype=np.float32)
        * (0.9 + 0.12 * coarse[other] + 0.3 * fine[other])[:, None]
    )
    return color


@dataclass
class _Surface:
    """Hits of one style's solids, in their own frames; painters overwrite ``color`` in place."""

    index: np.ndarray  # solid rows
    local: np.ndarray  # (k, 3) hit point in the solid's frame
    half: np.ndarray  # (k, 3)
    axis: np.ndarray  # box face axis 0 (ends), 1 (long sides), 2 (top); -1 on ellipsoids
    points: np.ndarray  # (k, 3) scene frame
    color: np.ndarray  # (k, 3) float32, starts as the solid's base colour

    @property
    def rel(self) -> np.ndarray:  # each coordinate in [-1, 1] over the solid
        return self.local / self.half

    @property
    def zr(self) -> np.ndarray:  # 0 at the bottom, 1 at the top
        return (self.local[:, 2] / self.half[:, 2] + 1) / 2

    @property
    def height(self) -> np.ndarray:  # metres above the solid's bottom
        return self.local[:, 2] + self.half[:, 2]

    def second_color(self) -> np.ndarray:
        """A second colour in [0, 1) per solid (clothes, cargo), from a hash of its row."""
        return np.stack([_hash(self.index, np.full_like(self.index, k), 7) for k in range(3)], axis=1)

    def paint(self, mask: np.ndarray, value: np.ndarray | tuple[float, ...]) -> None:
        self.color[mask] = value if np.ndim(value) == 1 else np.asarray(value)[mask]


def _paint_car(s: _Surface) -> None:
    """The body, up to the window line (the cabin is its own solid, `_paint_cabin`)."""
    rel, zr = s.rel, s.zr
    ends = s.axis == 0
    lamps = ends & (zr > 0.6) & (zr < 0.8) & (np.abs(rel[:, 1]) > 0.55) & (np.abs(rel[:, 1]) < 0.9)
    s.paint(lamps, np.array([240.0, 235.0, 210.0]))
    s.paint(zr < 0.15, s.color * 0.35)
    _paint_wheels(s, 0.62, 0.55)


def _paint_cabin(s: _Surface) -> None:
    """Windows all round the dome up to the roof, which keeps the body's colour."""
    s.paint(s.zr < 0.88, GLASS)


def _paint_truck(s: _Surface) -> None:
    rel, zr = s.rel, s.zr
    cab = rel[:, 0] > 0.5
    s.paint(~cab, 150 + 100 * s.second_color())  # the cargo box
    s.paint(cab & ((s.axis == 1) | ((s.axis == 0) & (rel[:, 0] > 0))) & (zr > 0.58) & (zr < 0.86), GLASS)
    _paint_wheels(s, 0.62, 0.22)


def _paint_bus(s: _Surface) -> None:
    rel, zr = s.rel, s.zr
    s.paint((s.axis == 1) & (np.abs(rel[:, 0]) < 0.93) & (zr > 0.45) & (zr < 0.86), GLASS)
    front = (s.axis == 0) & (rel[:, 0] > 0) & (zr > 0.35) & (zr < 0.9) & (np.abs(rel[:, 1]) < 0.88)
    s.paint(front, GLASS)
    _paint_wheels(s, 0.72, 0.22)


def _paint_trailer(s: _Surface) -> None:
    s.paint((s.axis == 1) & (np.mod(s.local[:, 0], 0.9) < 0.1), s.color * 0.78)  # ribs
    s.paint(s.zr < 0.2, np.array([45.0, 45.0, 48.0]))
    _paint_wheels(s, 0.72, 0.22)


def _paint_construction(s: _Surface) -> None:
    rel, zr = s.rel, s.zr
    s.paint((zr > 0.6) & (zr < 0.9) & (rel[:, 0] > -0.2) & (rel[:, 0] < 0.45) & (s.axis < 2), GLASS)
    s.paint(zr < 0.25, np.array([40.0, 40.0, 40.0]))  # tracks


def _paint_wheels(s: _Surface, position: float, top: float) -> None:
    """Tyres on the long sides at ``±position`` (share of the half length), up to ``top`` of the height."""
    s.paint((s.axis == 1) & (s.zr < top) & (np.abs(np.abs(s.rel[:, 0]) - position) < 0.15), TYRE)


def _paint_cycle(s: _Surface, radius: float) -> None:
    hub = np.hypot(np.abs(s.local[:, 0]) - (s.half[:, 0] - radius - 0.02), s.height - radius - 0.02)
    s.paint((hub < radius) & (hub > radius - 0.07), TYRE)
    s.paint(hub <= radius - 0.07, s.color * 0.35 + 95)  # spokes over what lies behind


def _paint_motorcycle(s: _Surface) -> None:
    _paint_cycle(s, 0.32)
    s.paint((s.zr > 0.55) & (s.zr < 0.68), np.array([30.0, 30.0, 30.0]))  # seat


def _paint_pedestrian(s: _Surface) -> None:
    zr, other = s.zr, s.second_color()
    s.paint(zr < 0.47, 30 + 90 * other * np.array([0.4, 0.5, 0.9]))  # trousers
    s.paint(zr > 0.86, 120 + 120 * other[:, :1] * np.array([0.95, 0.75, 0.6]))  # skin
    s.paint(zr > 0.95, np.array([40.0, 30.0, 25.0]))  # hair


def _paint_cone(s: _Surface) -> None:
    s.paint((s.zr > 0.45) & (s.zr < 0.62), np.array([240.0, 240.0, 240.0]))
    s.paint(s.zr < 0.06, np.array([30.0, 30.0, 30.0]))


def _paint_barrier(s: _Surface) -> None:
    s.paint(np.mod(s.local[:, 1], 1.0) < 0.5, np.array([238.0, 238.0, 238.0]))  # stripes along it


def _paint_building(s: _Surface) -> None:
    s.paint(facade_windows(s.local, s.half, s.axis), GLASS + 40 * s.second_color())
    s.paint(s.axis == 2, np.array([92.0, 92.0, 96.0]))  # roof


def _paint_foliage(s: _Surface) -> None:
    p = s.points
    s.color *= (0.7 + 0.55 * _value_noise(p[:, 0] + p[:, 2], p[:, 1] - p[:, 2], 0.3, salt=3))[:, None]


def _paint_trunk(s: _Surface) -> None:
    along = np.where(s.axis == 0, s.local[:, 1], s.local[:, 0])
    s.color *= (0.8 + 0.35 * _hash(np.floor(along * 20), np.zeros(along.shape[0]), 4))[:, None]


_PAINTERS = {
    Style.CAR: _paint_car,
    Style.CABIN: _paint_cabin,
    Style.TRUCK: _paint_truck,
    Style.BUS: _paint_bus,
    Style.TRAILER: _paint_trailer,
    Style.CONSTRUCTION: _paint_construction,
    Style.BICYCLE: lambda s: _paint_cycle(s, 0.34),
    Style.MOTORCYCLE: _paint_motorcycle,
    Style.PEDESTRIAN: _paint_pedestrian,
    Style.CONE: _paint_cone,
    Style.BARRIER: _paint_barrier,
    Style.BUILDING: _paint_building,
    Style.FOLIAGE: _paint_foliage,
    Style.TRUNK: _paint_trunk,
}


def _solid_color(
    solids: Solids, index: np.ndarray, face: np.ndarray, points: np.ndarray, sun: np.ndarray
) -> np.ndarray:
    """Shaded colour of hits on solids: each style's pattern in the solid's frame, then Lambert shading."""
    local = solids.to_local(index, points)
    axis = np.where(face >= 0, face // 2, -1).astype(np.int8)
    color = solids.color[index].astype(np.float32)
    style = solids.style[index]
    for value in np.unique(style):
        painter = _PAINTERS.get(Style(int(value)))
        if painter is None:
            continue
        rows = np.flatnonzero(style == value)
        surface = _Surface(
            index[rows], local[rows], solids.half[index[rows]], axis[rows], points[rows], color[rows]
        )
        painter(surface)
        color[rows] = surface.color

    # Normal in the solid's frame: the entered face of a box, the gradient of an ellipsoid.
    normal = np.zeros((index.shape[0], 3), dtype=np.float64)
    box = axis >= 0
    normal[np.flatnonzero(box), axis[box]] = np.where(np.mod(face[box], 2) == 1, 1.0, -1.0)
    normal[~box] = local[~box] / solids.half[index[~box]] ** 2
    yaw = solids.yaw[index]
    cos, sin = np.cos(yaw), np.sin(yaw)
    lit = (cos * normal[:, 0] - sin * normal[:, 1]) * sun[0] + (
        sin * normal[:, 0] + cos * normal[:, 1]
    ) * sun[1]
    lit = (lit + normal[:, 2] * sun[2]) / (np.linalg.norm(normal, axis=1) + 1e-12)
    return color * (0.5 + 0.5 * np.clip(lit, 0.0, 1.0)).astype(np.float32)[:, None]
