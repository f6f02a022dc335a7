"""``camera_cues``: look-alike pairs the LiDAR cannot tell apart and the camera can, distant small objects,
recorded in the recipe; off, the worlds (so the bytes) of before.

The data-set tests read the written files through the devkit: the sample_annotation boxes, the points
inside them (LIDAR_TOP) and the camera JPEGs inside their projected boxes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import numpy as np
import pytest

from training.data.synthetic import generate, read_recipe, recipe
from training.data.synthetic.generator import plan_worlds
from training.data.synthetic.world import (
    CATEGORIES,
    LOOKALIKES,
    Shape,
    Style,
    World,
    category_specs,
)

VERSION = "v1.0-mini"
SEED = 1
PAIR_CLASSES = tuple(name for pair in LOOKALIKES for name in pair)


@pytest.fixture(scope="module")
def cued(tmp_path_factory: pytest.TempPathFactory):
    """A small data set with camera cues (3 scenes × 1 keyframe) and its devkit tables."""
    from nuscenes.nuscenes import NuScenes

    out = tmp_path_factory.mktemp("cues") / "data"
    generate(out, scenes=3, samples_per_scene=1, seed=SEED, version=VERSION, workers=2, camera_cues=True)
    return out, NuScenes(version=VERSION, dataroot=str(out), verbose=False)


def _worlds(camera_cues: bool, seeds: range) -> list[World]:
    return [world for seed in seeds for _, world in plan_worlds(seed, VERSION, 4, 1, camera_cues)]


def _standardised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column, the difference of the means of ``a`` and ``b`` in standard errors."""
    error = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    return np.abs(a.mean(axis=0) - b.mean(axis=0)) / error


def test_the_pairs_share_their_lidar_geometry_and_not_their_colours() -> None:
    specs = category_specs(camera_cues=True)
    assert category_specs() is CATEGORIES  # off: the classes of before
    for a, b in LOOKALIKES:
        first, second = specs[a], specs[b]
        assert (first.size, first.spread, first.reflectivity, first.attribute) == (
            second.size,
            second.spread,
            second.reflectivity,
            second.attribute,
        )
        # One box solid each (a car is two solids): the same shape for the LiDAR.
        assert Style.CAR not in (first.style, second.style)
        assert not set(first.palette) & set(second.palette)
    for name, spec in CATEGORIES.items():  # the other classes are untouched
        if name not in PAIR_CLASSES:
            assert specs[name] == spec


def test_lookalikes_are_drawn_alike_in_the_worlds() -> None:
    """Pooled over 8 worlds: the pair members' box sizes and reflectivities agree within 3 standard
    errors, each is one box solid, and they are about as frequent; without the option the same statistic
    tells both pairs apart (so the test can)."""
    for camera_cues in (True, False):
        sizes, reflectivity = defaultdict(list), defaultdict(list)
        for world in _worlds(camera_cues, range(2)):
            solids_per_object = np.bincount(world.solids.instance[world.solids.instance >= 0])
            for index, obj in enumerate(world.objects):
                if obj.category in PAIR_CLASSES:
                    assert solids_per_object[index] == 1 and world.solids.shape[obj.solid] == Shape.BOX
                    sizes[obj.category].append(obj.size)
                    reflectivity[obj.category].append([world.solids.reflectivity[obj.solid]])
        for a, b in LOOKALIKES:
            size = _standardised_difference(np.array(sizes[a]), np.array(sizes[b])).max()
            light = _standardised_difference(np.array(reflectivity[a]), np.array(reflectivity[b])).max()
            if camera_cues:
                assert size < 3 and light < 3, (a, b, size, light)
                assert 0.5 < len(sizes[a]) / len(sizes[b]) < 2, (a, len(sizes[a]), b, len(sizes[b]))
            else:
                assert size > 4 and light > 3, (a, b, size, light)


def test_camera_cues_add_distant_small_interest_objects() -> None:
    """Pedestrians crossing and cyclists riding the oncoming lane 35-70 m from the drive (a point at x = 0
    in 1-keyframe scenes): the 3-6 asked for each world; the default worlds have no such objects."""
    small = ("human.pedestrian.adult", "human.pedestrian.child", "vehicle.bicycle", "vehicle.motorcycle")

    def distant(world: World) -> int:
        lay = world.layout
        return sum(
            o.category in small
            and 35 < abs(o.center[0]) < 70
            and np.sign(o.center[1]) == -lay.ego_side
            and lay.median_half_width < abs(o.center[1]) < lay.median_half_width + lay.lane_width
            for o in world.objects
        )

    seeds = range(2)
    assert [distant(world) for world in _worlds(False, seeds)] == [0] * 8
    assert all(3 <= distant(world) <= 6 for world in _worlds(True, seeds))


def test_default_worlds_are_those_of_before() -> None:
    """The worlds of the default data sets (the bundled model's among them) are pinned: the option must
    not draw from the random stream when off. Rounded to a millimetre, so that libm's last bits do not
    matter. A deliberate change of the default worlds changes this digest (and every data set's bytes)."""
    rows: list[object] = []
    for _, world in plan_worlds(7, VERSION, 3, 2):
        for o in world.objects:
            rows.append(
                [o.category, [round(c, 3) for c in o.center], [round(s, 3) for s in o.size], round(o.yaw, 3)]
            )
        solids = world.solids
        rows.append([len(solids), solids.color.tolist(), [round(float(r), 3) for r in solids.reflectivity],
                     solids.style.tolist()])  # fmt: skip
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    assert digest == "56787fec0d9046c173fb0b2872e7d72fd567ffe1bcbaedab206b735f2892d827"


def test_the_recipe_records_the_option(cued) -> None:
    out, _ = cued
    assert read_recipe(out) == recipe(VERSION, 3, 1, SEED, 0.5, "hdl32e", camera_cues=True)
    assert read_recipe(out)["camera_cues"] is True
    # Off, the recipe is the one recorded before the option existed.
    assert "camera_cues" not in recipe(VERSION, 3, 1, SEED, 0.5)


def _lidar_evidence(nusc) -> tuple[dict[str, list], dict[str, list]]:
    """Per class, the annotated box sizes (one per instance) and the mean intensity of the points in
    each box."""
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    sizes, intensity = defaultdict(dict), defaultdict(list)
    for sample in nusc.sample:
        path, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        cloud = LidarPointCloud.from_file(path).points
        for box in boxes:
            if box.name not in PAIR_CLASSES:
                continue
            instance = nusc.get("sample_annotation", box.token)["instance_token"]
            sizes[box.name][instance] = box.wlh
            inside = points_in_box(box, cloud[:3])
            if inside.sum() >= 5:
                intensity[box.name].append(float(cloud[3, inside].mean()))
    return {k: list(v.values()) for k, v in sizes.items()}, intensity


def test_lookalikes_match_in_the_written_lidar(cued) -> None:
    """Every written box of a pair's classes is a draw of the pair's one size distribution (within 4σ of
    its mean), and the points in their boxes are about as bright (per-box mean intensity, averaged by
    class: loose, as each object's reflectivity varies ±20% and a few objects make the mean; the world
    test above checks the distributions)."""
    _, nusc = cued
    sizes, intensity = _lidar_evidence(nusc)
    specs = category_specs(camera_cues=True)
    for a, b in LOOKALIKES:
        spec = specs[a]
        for name in (a, b):
            assert len(sizes[name]) >= 2 and len(intensity[name]) >= 2, (name, len(sizes[name]))
            z = (np.array(sizes[name]) - np.array(spec.size)) / np.array(spec.spread)
            assert np.abs(z).max() < 4, (name, z)
        ratio = np.mean(intensity[a]) / np.mean(intensity[b])
        assert 0.8 < ratio < 1.25, (a, b, ratio, intensity[a], intensity[b])


def _box_colours(nusc) -> dict[str, np.ndarray]:
    """Per class, the mean image colour of the central half (each way) of the projected box of each
    annotation at least 60% visible and seen whole by a camera, at least 12×12 pixels."""
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points
    from PIL import Image

    level = {v["token"]: v["level"] for v in nusc.visibility}
    colours = defaultdict(list)
    for sample in nusc.sample:
        for channel, token in sample["data"].items():
            if not channel.startswith("CAM_"):
                continue
            path, boxes, intrinsic = nusc.get_sample_data(token, box_vis_level=BoxVisibility.ALL)
            image = None
            for box in boxes:
                annotation = nusc.get("sample_annotation", box.token)
                if box.name not in PAIR_CLASSES or level[annotation["visibility_token"]] not in (
                    "v60-80",
                    "v80-100",
                ):
                    continue
                uv = view_points(box.corners(), intrinsic, normalize=True)[:2]
                (u0, v0), (u1, v1) = uv.min(axis=1), uv.max(axis=1)
                if min(u1 - u0, v1 - v0) < 12:
                    continue
                image = np.asarray(Image.open(path), dtype=np.float64) if image is None else image
                du, dv = (u1 - u0) / 4, (v1 - v0) / 4
                patch = image[int(v0 + dv) : int(np.ceil(v1 - dv)), int(u0 + du) : int(np.ceil(u1 - du))]
                colours[box.name].append(patch.reshape(-1, 3).mean(axis=0))
    return {name: np.array(values) for name, values in colours.items()}


def test_the_camera_tells_the_lookalikes_apart(cued) -> None:
    _, nusc = cued
    colours = _box_colours(nusc)
    assert all(len(colours.get(name, ())) >= 2 for name in PAIR_CLASSES), {
        k: len(v) for k, v in colours.items()
    }
    red, green, blue = ({name: np.median(c[:, i]) for name, c in colours.items()} for i in range(3))
    # Yellow construction vehicles against blue-cabbed, light-cargo trucks.
    assert red["vehicle.construction"] - blue["vehicle.construction"] > 80
    assert blue["vehicle.truck"] - blue["vehicle.construction"] > 40
    # Green bicycles against red motorcycles.
    assert green["vehicle.bicycle"] - red["vehicle.bicycle"] > 20
    assert red["vehicle.motorcycle"] - green["vehicle.motorcycle"] > 20
    for a, b in LOOKALIKES:  # every view, not only the medians, sits on its own side
        (ca, cb) = colours[a], colours[b]
        axis = np.median(ca, axis=0) - np.median(cb, axis=0)
        threshold = (np.median(ca, axis=0) + np.median(cb, axis=0)) / 2 @ axis
        assert (ca @ axis > threshold).all() and (cb @ axis < threshold).all(), (a, ca, b, cb)


def test_the_command_line_passes_the_option_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.data.synthetic.__main__ as cli

    calls: list[dict] = []

    def record(out, **options):
        calls.append(options)
        raise cli.GenerationError("recorded")

    monkeypatch.setattr(cli, "generate", record)
    assert cli.main(["--out", "x", "--quiet"]) == 2
    assert cli.main(["--out", "x", "--quiet", "--camera-cues"]) == 2
    assert [c["camera_cues"] for c in calls] == [False, True]
    help_text = cli._parser().format_help()
    assert "--camera-cues" in help_text and "construction" in help_text and "motorcycle" in help_text
