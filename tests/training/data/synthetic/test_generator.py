"""The default synthetic dataset is a nuScenes-lidarseg dataset as far as nuscenes-devkit can tell."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from seg3d.classes import NUSCENES_RAW_CLASSES, NUSCENES_TRAIN_CLASSES, nuscenes_train_id
from tests.training.data.synthetic.conftest import VERSION
from training.data.synthetic.checks import CAMERAS, sweep
from training.data.synthetic.world import CATEGORIES

TOKEN = re.compile(r"^[0-9a-f]{32}$")


def test_devkit_loads_every_table(synthetic, synthetic_nusc) -> None:
    root, _ = synthetic
    nusc = synthetic_nusc
    counts = {name: len(getattr(nusc, name)) for name in nusc.table_names}
    assert counts == {
        "category": 32, "attribute": 8, "visibility": 4, "instance": counts["instance"], "sensor": 7,
        "calibrated_sensor": 70, "ego_pose": 350, "log": 10, "scene": 10, "sample": 50, "sample_data": 350,
        "sample_annotation": counts["sample_annotation"], "map": 4, "lidarseg": 50,
    }  # fmt: skip
    assert counts["instance"] > 300 and counts["sample_annotation"] > 5 * 200
    by_index = sorted(nusc.category, key=lambda c: c["index"])
    assert [c["name"] for c in by_index] == list(NUSCENES_RAW_CLASSES)
    assert [c["index"] for c in by_index] == list(range(32))
    assert nusc.lidarseg_idx2name_mapping == dict(enumerate(NUSCENES_RAW_CLASSES))
    for name in nusc.table_names:
        for record in getattr(nusc, name):
            assert name == "visibility" or TOKEN.match(record["token"]), (name, record["token"])
    tables = sorted(p.stem for p in (root / VERSION).glob("*.json"))
    assert tables == sorted(nusc.table_names)


def test_scenes_come_from_the_devkit_splits(synthetic_nusc) -> None:
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    names = {s["name"] for s in synthetic_nusc.scene}
    assert names == set(splits["mini_train"]) | set(splits["mini_val"])
    nusc = synthetic_nusc
    locations = {nusc.get("log", s["log_token"])["location"] for s in nusc.scene}
    assert {"boston-seaport", "singapore-onenorth"} <= locations
    for scene in nusc.scene:
        samples, token = [], scene["first_sample_token"]
        while token:
            samples.append(nusc.get("sample", token))
            token = samples[-1]["next"]
        assert len(samples) == scene["nbr_samples"] == 5
        assert samples[-1]["token"] == scene["last_sample_token"]
        assert all(s["scene_token"] == scene["token"] for s in samples)
        gaps = np.diff([s["timestamp"] for s in samples])
        assert np.all(np.abs(gaps - 500_000) <= 6_000), gaps  # keyframes at 2 Hz


def test_every_sample_has_a_sweep_and_six_images_with_their_own_poses(synthetic_nusc) -> None:
    nusc = synthetic_nusc
    for sample in nusc.sample:
        assert set(sample["data"]) == {"LIDAR_TOP", *CAMERAS}
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidar_pose = nusc.get("ego_pose", lidar["ego_pose_token"])
        assert lidar["timestamp"] == sample["timestamp"] == lidar_pose["timestamp"]
        assert lidar["fileformat"] == "pcd" and lidar["filename"].endswith(".pcd.bin")
        for channel in CAMERAS:
            camera = nusc.get("sample_data", sample["data"][channel])
            pose = nusc.get("ego_pose", camera["ego_pose_token"])
            assert camera["is_key_frame"] and camera["fileformat"] == "jpg"
            assert (camera["width"], camera["height"]) == (1600, 900)
            assert pose["timestamp"] == camera["timestamp"]
            # Exposed a few tens of ms before the LiDAR timestamp, while the ego moves on.
            assert -50_000 < camera["timestamp"] - lidar["timestamp"] < 0
            moved = np.linalg.norm(np.subtract(lidar_pose["translation"], pose["translation"]))
            assert 0.0 < moved < 0.5
            assert Path(nusc.get_sample_data_path(camera["token"])).is_file()
    first = nusc.get("sample_data", nusc.sample[0]["data"]["CAM_FRONT"])
    with Image.open(nusc.get_sample_data_path(first["token"])) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (1600, 900), "RGB")
    # sample_data chains per sensor within a scene
    for record in nusc.sample_data:
        if record["next"]:
            following = nusc.get("sample_data", record["next"])
            assert following["channel"] == record["channel"] and following["prev"] == record["token"]
            assert following["timestamp"] > record["timestamp"]


def test_lidarseg_has_one_label_per_point_and_sweeps_look_like_nuscenes(synthetic_nusc) -> None:
    from nuscenes.utils.data_classes import LidarPointCloud

    nusc = synthetic_nusc
    seen = np.zeros(len(NUSCENES_RAW_CLASSES), dtype=np.int64)
    counts = []
    for sample in nusc.sample:
        token = sample["data"]["LIDAR_TOP"]
        points, labels = sweep(nusc, token)
        cloud = LidarPointCloud.from_file(nusc.get_sample_data_path(token))
        record = nusc.get("lidarseg", token)
        assert record["sample_data_token"] == token
        assert record["filename"] == f"lidarseg/{VERSION}/{token}_lidarseg.bin"
        assert labels.dtype == np.uint8 and labels.shape == (points.shape[0],) == (cloud.nbr_points(),)
        assert labels.max() < len(NUSCENES_RAW_CLASSES)
        ring, intensity = points[:, 4], points[:, 3]
        assert np.array_equal(ring, np.round(ring)) and ring.min() == 0 and ring.max() == 31
        assert (
            np.array_equal(intensity, np.round(intensity)) and intensity.min() >= 0 and intensity.max() <= 255
        )
        assert np.linalg.norm(points[:, :3], axis=1).max() < 81.0  # 80 m range, plus noise and foliage
        seen += np.bincount(labels, minlength=len(NUSCENES_RAW_CLASSES))
        counts.append(points.shape[0])
    assert min(counts) >= 20_000 and max(counts) <= 40_000, (min(counts), max(counts))
    train = np.zeros(len(NUSCENES_TRAIN_CLASSES), dtype=np.int64)
    np.add.at(train, [nuscenes_train_id(n) for n in NUSCENES_RAW_CLASSES], seen)
    missing = [NUSCENES_TRAIN_CLASSES[i] for i in range(1, 17) if train[i] == 0]
    assert not missing, dict(zip(NUSCENES_TRAIN_CLASSES, train.tolist(), strict=True))
    # A few ego returns (rings 0-7 off the roof) and spurious points, as in real sweeps.
    assert seen[NUSCENES_RAW_CLASSES.index("vehicle.ego")] > 0 and seen[0] > 0


def test_annotations_are_consistent_boxes(synthetic_nusc) -> None:
    from nuscenes.utils.geometry_utils import points_in_box

    from training.data.nuscenes_geometry import Pose

    nusc = synthetic_nusc
    attributes = {a["token"] for a in nusc.attribute}
    for annotation in nusc.sample_annotation:
        assert annotation["category_name"] in CATEGORIES
        assert annotation["visibility_token"] in {"1", "2", "3", "4"}
        assert set(annotation["attribute_tokens"]) <= attributes
        assert np.isclose(np.linalg.norm(annotation["rotation"]), 1.0) and min(annotation["size"]) > 0.3
        assert annotation["num_radar_pts"] == 0
    for instance in nusc.instance:
        chain, token = [], instance["first_annotation_token"]
        while token:
            chain.append(nusc.get("sample_annotation", token))
            token = chain[-1]["next"]
        assert (
            len(chain) == instance["nbr_annotations"]
            and chain[-1]["token"] == instance["last_annotation_token"]
        )
        assert {a["instance_token"] for a in chain} == {instance["token"]}
    # num_lidar_pts is the devkit's count of points in the box.
    checked = 0
    for sample in nusc.sample[::7]:
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        points, _ = sweep(nusc, lidar["token"])
        world = Pose.from_record(nusc.get("ego_pose", lidar["ego_pose_token"])).apply(
            Pose.from_record(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])).apply(
                points[:, :3].astype(np.float64)
            )
        )
        for token in sample["anns"]:
            annotation = nusc.get("sample_annotation", token)
            inside = int(points_in_box(nusc.get_box(token), world.T).sum())
            assert abs(inside - annotation["num_lidar_pts"]) <= max(2, 0.02 * inside), (annotation, inside)
            checked += annotation["num_lidar_pts"] > 0
    assert checked > 50


def test_map_masks_hold_the_drives(synthetic_nusc) -> None:
    nusc = synthetic_nusc
    for log in nusc.log:
        mask = nusc.get("map", log["map_token"])["mask"]
        assert mask.mask().dtype == np.uint8
        tokens = [
            s["data"]["LIDAR_TOP"]
            for s in nusc.sample
            if nusc.get("scene", s["scene_token"])["log_token"] == log["token"]
        ]
        xy = np.array(
            [
                nusc.get("ego_pose", nusc.get("sample_data", t)["ego_pose_token"])["translation"][:2]
                for t in tokens
            ]
        )
        assert len(xy) == 5 and mask.is_on_mask(xy[:, 0], xy[:, 1]).all()  # the ego drives on the road
        assert not mask.is_on_mask(xy[:, 0], xy[:, 1] + 1000).any()  # off the map


def test_devkit_renders_the_dataset(synthetic_nusc, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nuscenes.utils.geometry_utils import BoxVisibility

    nusc = synthetic_nusc
    sample = nusc.sample[12]
    bev, overlay = tmp_path / "bev.png", tmp_path / "overlay.png"
    nusc.render_sample_data(sample["data"]["LIDAR_TOP"], show_lidarseg=True, out_path=str(bev), verbose=False)
    nusc.render_pointcloud_in_image(
        sample["token"], camera_channel="CAM_FRONT", show_lidarseg=True, out_path=str(overlay), verbose=False
    )
    plt.close("all")
    assert (tmp_path / "bev.png").stat().st_size > 10_000 and (
        tmp_path / "overlay.png"
    ).stat().st_size > 10_000
    _, boxes, intrinsic = nusc.get_sample_data(sample["data"]["CAM_FRONT"], box_vis_level=BoxVisibility.ALL)
    assert intrinsic.shape == (3, 3) and boxes


def test_report_matches_the_files(synthetic, synthetic_nusc) -> None:
    root, report = synthetic
    nusc = synthetic_nusc
    assert report.root == root and (report.scenes, report.samples, report.workers) == (10, 50, 2)
    sizes = sorted(
        Path(nusc.get_sample_data_path(s["data"]["LIDAR_TOP"])).stat().st_size // 20 for s in nusc.sample
    )
    assert sorted(report.points_per_sweep) == sizes
    assert sum(report.label_counts.values()) == sum(sizes)
    assert report.instances == len(nusc.instance) and report.annotations == len(nusc.sample_annotation)
    # Written through a staging folder that is gone once the dataset is in place.
    assert not [p for p in root.parent.iterdir() if p.name != root.name]
    lidarseg = json.loads((root / VERSION / "lidarseg.json").read_text())
    assert len(list((root / "lidarseg" / VERSION).iterdir())) == len(lidarseg) == 50
