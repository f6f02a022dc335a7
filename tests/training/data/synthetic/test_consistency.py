"""Boxes, LiDAR labels and camera images of the synthetic dataset agree, through the devkit's records.

What the 2DDATA Local Object Branch needs from the data (docs/architecture.md §1.5, §5.2): fully visible
2D boxes of every object class, LiDAR points in them that belong to the object, and images that
show, where a LiDAR point projects (ego motion compensated), the surface that returned it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seg3d.classes import NUSCENES_RAW_CLASSES
from tests.training.data.synthetic.conftest import SEED, VERSION
from training.data.nuscenes_geometry import Pose, lidar_to_camera, project_to_image
from training.data.synthetic.checks import CAMERAS, INTEREST_CATEGORIES, BoxPurity, box_purity, project, sweep
from training.data.synthetic.generator import plan_worlds
from training.data.synthetic.keyframe import camera_view
from training.data.synthetic.tables import token

RENDER_SCALE = 0.5  # generate()'s default


@pytest.fixture(scope="module")
def purity(synthetic_nusc) -> BoxPurity:
    return box_purity(synthetic_nusc)


def test_every_interest_class_has_fully_visible_boxes(synthetic_nusc, purity: BoxPurity) -> None:
    from nuscenes.utils.geometry_utils import BoxVisibility

    assert all(purity.boxes.get(c, 0) > 0 for c in INTEREST_CATEGORIES), purity.table()
    # The devkit agrees that such boxes are entirely in the image (its BoxVisibility.ALL).
    found = set()
    for sample in synthetic_nusc.sample:
        for channel in CAMERAS:
            _, boxes, _ = synthetic_nusc.get_sample_data(
                sample["data"][channel], box_vis_level=BoxVisibility.ALL
            )
            found |= {box.name for box in boxes}
    assert set(INTEREST_CATEGORIES) <= found


def test_points_in_interest_boxes_carry_their_class(purity: BoxPurity) -> None:
    table = purity.table()
    low = {c: table[c] for c in INTEREST_CATEGORIES if table[c]["purity"] < 0.7}
    assert not low, f"below 70 %: {low}; all classes: {table}"
    assert all(table[c]["points"] > 500 for c in INTEREST_CATEGORIES), table


def test_images_show_the_surfaces_the_lidar_hits(synthetic_nusc) -> None:
    """Re-render the first keyframe of five scenes (the JPEGs are these renders) with what each pixel
    shows; project each object's LiDAR points with the devkit records; they must land on that object,
    and less often so without ego-motion compensation (camera and LiDAR are up to 45 ms apart)."""
    from nuscenes.utils.geometry_utils import points_in_box

    nusc = synthetic_nusc
    hits = {"compensated": {}, "uncompensated": {}}
    colour_votes = []
    for plan, world in plan_worlds(SEED, VERSION, 10, 5)[:5]:
        instance = {token(SEED, "instance", plan.name, i): i for i in range(len(world.objects))}
        scene = next(s for s in nusc.scene if s["name"] == plan.name)
        sample = nusc.get("sample", scene["first_sample_token"])
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidar_pose = nusc.get("ego_pose", lidar["ego_pose_token"])
        lidar_sensor = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
        points, labels = sweep(nusc, lidar["token"])
        world_xyz = Pose.from_record(lidar_pose).apply(
            Pose.from_record(lidar_sensor).apply(points[:, :3].astype(np.float64))
        )
        for channel in CAMERAS:
            camera = nusc.get("sample_data", sample["data"][channel])
            view = camera_view(SEED, plan, world, 0, channel, RENDER_SCALE)
            jpeg = np.asarray(Image.open(nusc.get_sample_data_path(camera["token"])))
            assert np.abs(jpeg.astype(int) - view.image).mean() < 3  # the file is this render
            uv, _, inside = project(nusc, lidar["token"], camera["token"], points[:, :3])
            sensor = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
            stale = project_to_image(
                lidar_to_camera(points[:, :3], lidar_sensor, lidar_pose, lidar_pose, sensor),
                sensor["camera_intrinsic"],
            )[0]  # as if the camera were exposed at the LiDAR timestamp
            rows, cols = view.solid.shape
            small = np.asarray(Image.fromarray(jpeg).resize((cols, rows), Image.Resampling.BILINEAR)).astype(
                float
            )
            for token_ in sample["anns"]:
                annotation = nusc.get("sample_annotation", token_)
                # the object's solids (a car's body and cabin)
                solid = np.flatnonzero(world.solids.instance == instance[annotation["instance_token"]])
                own = labels == NUSCENES_RAW_CLASSES.index(annotation["category_name"])
                mine = own & inside & points_in_box(nusc.get_box(token_), world_xyz.T)
                if mine.sum() < 5:
                    continue
                for key, pixels in (("compensated", uv[mine]), ("uncompensated", stale[mine])):
                    r = np.clip((pixels[:, 1] * RENDER_SCALE).astype(int), 0, rows - 1)
                    c = np.clip((pixels[:, 0] * RENDER_SCALE).astype(int), 0, cols - 1)
                    agree, total = hits[key].get(annotation["category_name"], (0, 0))
                    hits[key][annotation["category_name"]] = (
                        agree + int(np.isin(view.solid[r, c], solid).sum()),
                        total + r.size,
                    )
                # Colour: the JPEG where the points land looks like the object, not like its surroundings.
                shown = np.isin(view.solid, solid)
                if shown.sum() < 30:
                    continue
                rr, cc = np.nonzero(shown)
                around = np.zeros_like(shown)
                around[rr.min() : rr.max() + 1, cc.min() : cc.max() + 1] = True
                around &= ~shown
                if around.sum() < 30:
                    continue
                at_points = jpeg[uv[mine, 1].astype(int), uv[mine, 0].astype(int)].mean(axis=0)
                to_object = np.linalg.norm(at_points - small[shown].mean(axis=0))
                colour_votes.append(to_object < np.linalg.norm(at_points - small[around].mean(axis=0)))

    rate = {k: {c: a / t for c, (a, t) in v.items()} for k, v in hits.items()}
    for category in INTEREST_CATEGORIES:
        if category in rate["compensated"]:
            assert rate["compensated"][category] >= 0.9, rate
    overall = {k: sum(a for a, _ in v.values()) / sum(t for _, t in v.values()) for k, v in hits.items()}
    assert overall["compensated"] >= 0.95, rate
    assert overall["compensated"] >= overall["uncompensated"] + 0.01, overall
    assert len(colour_votes) >= 40 and np.mean(colour_votes) >= 0.8, (
        len(colour_votes),
        np.mean(colour_votes),
    )
