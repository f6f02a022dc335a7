"""The nuScenes loader on the real tables and scans of ../shared/data/real (unlabelled: the extract
has no lidarseg), and its errors for a root that is not a nuScenes layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seg3d.config import load_config
from training.data.augment import IntensityAugment
from training.data.nuscenes import NuScenesDataset, NuScenesOptions, check_nuscenes_layout
from training.data.nuscenes_geometry import lidar_to_camera, project_to_image

from .conftest import REAL_VERSION

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
FRONT = NuScenesOptions(version=REAL_VERSION, split="val", channels=("CAM_FRONT",))


@pytest.fixture(scope="module")
def real_dataset(devkit_root: Path, nusc) -> NuScenesDataset:
    return NuScenesDataset(devkit_root, load_config("nuscenes_full"), FRONT, labelled=False, nusc=nusc)


def _on_disk(dataset: NuScenesDataset) -> list[int]:
    return [
        i for i, s in enumerate(dataset.samples) if s.lidar_path.is_file() and s.cameras[0].path.is_file()
    ]


def test_real_samples_load_with_the_front_camera(real_dataset: NuScenesDataset, nusc) -> None:
    assert len(real_dataset) == 81  # both scenes of the extract are in the devkit's val split
    indices = _on_disk(real_dataset)
    assert len(indices) == 3
    for index in indices:
        sample = real_dataset[index]
        record = real_dataset.samples[index]
        raw = np.fromfile(record.lidar_path, dtype="<f4").reshape(-1, 5)
        assert sample.num_file_points == raw.shape[0] and sample.labels is None
        # evaluation: the crop only, no dropout or augmentation; rows map back to the file
        np.testing.assert_array_equal(sample.points[:, :3].numpy(), raw[sample.indices.numpy(), :3])
        (view,) = sample.views
        assert view.camera == "CAM_FRONT" and view.image.shape == (3, 240, 400)
        # the projected points are exactly those the geometry puts strictly inside the image
        camera = record.cameras[0]
        uv, depth = project_to_image(
            lidar_to_camera(
                sample.points[:, :3].numpy(), record.lidar_sensor, record.lidar_ego, camera.ego, camera.sensor
            ),
            camera.sensor["camera_intrinsic"],
        )
        inside = (depth > 0) & (uv[:, 0] > 0) & (uv[:, 0] < 1600) & (uv[:, 1] > 0) & (uv[:, 1] < 900)
        assert view.point_index.tolist() == np.flatnonzero(inside).tolist()
        assert 2000 < view.point_index.shape[0] < sample.points.shape[0] / 3
        rows, cols = view.pixels.T
        assert (
            int(rows.min()) >= 0 and int(rows.max()) < 240 and int(cols.min()) >= 0 and int(cols.max()) < 400
        )
        # real cars (and pedestrians) of this Singapore scene give fully visible boxes, and every point
        # assigned to a box projects inside it
        assert view.boxes.shape[0] >= 1 and set(view.box_label.tolist()) <= {4, 7, 2, 6, 10}
        owned = view.point_box >= 0
        assert int(owned.sum()) > 0
        box = view.boxes[view.point_box[owned]]
        u = torch.from_numpy(uv[view.point_index[owned].numpy(), 0]).float()
        assert bool(((u >= box[:, 0] - 1e-3) & (u <= box[:, 1] + 1e-3)).all())


def _projected(record, xyz: np.ndarray) -> list[int]:
    camera = record.cameras[0]
    in_camera = lidar_to_camera(xyz, record.lidar_sensor, record.lidar_ego, camera.ego, camera.sensor)
    uv, depth = project_to_image(in_camera, camera.sensor["camera_intrinsic"])
    inside = (depth > 0) & (uv[:, 0] > 0) & (uv[:, 0] < 1600) & (uv[:, 1] > 0) & (uv[:, 1] < 900)
    return np.flatnonzero(inside).tolist()


def test_training_draws_are_seeded_and_project_unaugmented_points(devkit_root: Path, nusc) -> None:
    config = load_config("nuscenes_full")
    a = NuScenesDataset(devkit_root, config, FRONT, training=True, labelled=False, seed=3, nusc=nusc)
    b = NuScenesDataset(devkit_root, config, FRONT, training=True, labelled=False, seed=3, nusc=nusc)
    index = _on_disk(a)[0]
    record = a.samples[index]
    raw = np.fromfile(record.lidar_path, dtype="<f4").reshape(-1, 5)
    first, again = a[index], b[index]
    assert torch.equal(first.points, again.points) and torch.equal(first.views[0].image, again.views[0].image)
    copies = []
    for epoch in range(4):
        a.set_epoch(epoch)
        sample = a[index]
        assert epoch == 0 or not torch.equal(sample.points, first.points)
        # the network sees augmented points, but the camera sees the un-augmented ones
        unaugmented = raw[sample.indices.numpy(), :3]
        assert not np.allclose(sample.points[:, :3].numpy(), unaugmented, atol=1e-2)
        assert sample.views[0].point_index.tolist() == _projected(record, unaugmented)
        # dropout: overwritten points are copies of point 0 (same file row), the rest distinct
        duplicates = sample.indices == sample.indices[0]
        rest = sample.indices[~duplicates]
        assert rest.unique().shape == rest.shape
        copies.append(int(duplicates.sum()) - 1)
    assert max(copies) > 100


def test_layout_errors_name_what_is_missing(devkit_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data root not found"):
        check_nuscenes_layout(tmp_path / "nope", REAL_VERSION)
    with pytest.raises(FileNotFoundError, match=r"table folder .*v1.0-mini is missing.*v1.0-trainval"):
        check_nuscenes_layout(devkit_root, "v1.0-mini")
    with pytest.raises(FileNotFoundError, match=r"lidarseg\.json"):
        check_nuscenes_layout(devkit_root, REAL_VERSION, lidarseg=True)
    broken = tmp_path / "root"
    shutil.copytree(devkit_root / REAL_VERSION, broken / REAL_VERSION)
    (broken / REAL_VERSION / "ego_pose.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing table\(s\) .*ego_pose\.json"):
        check_nuscenes_layout(broken, REAL_VERSION, lidarseg=False)


def test_options_reject_unknown_values() -> None:
    with pytest.raises(ValueError, match="unknown nuScenes categories"):
        NuScenesOptions(interest_classes=("vehicle.spaceship",))
    with pytest.raises(ValueError, match="multiples of 16"):
        NuScenesOptions(image_size=(400, 250))
    with pytest.raises(ValueError, match="subset"):
        NuScenesOptions(channels=("CAM_TOP",))
    with pytest.raises(ValueError, match="extra"):
        NuScenesOptions(camera="all")  # type: ignore[call-arg]


# --- the generated nuScenes-format dataset (labelled, six cameras) -------------------------------

MINI = NuScenesOptions(version="v1.0-mini", split="mini_train")


def _all_samples(root: Path, options: NuScenesOptions, nusc=None, per_scene: int = 3) -> list:
    """The first ``per_scene`` keyframes of every scene of both mini splits."""
    config = load_config("tiny")
    samples = []
    for split in ("mini_train", "mini_val"):
        dataset = NuScenesDataset(root, config, options.model_copy(update={"split": split}), nusc=nusc)
        taken: dict[str, int] = {}
        for i, record in enumerate(dataset.samples):
            taken[record.scene] = taken.get(record.scene, 0) + 1
            if taken[record.scene] <= per_scene:
                samples.append(dataset[i])
    return samples


def test_synthetic_dataset_through_the_loader(synthetic_nuscenes: Path) -> None:
    """Acceptance: one label per point, all 16 classes over the 10 scenes, boxes for every interest
    class, and points assigned to a box mostly (≥ 70 %) of its class."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=str(synthetic_nuscenes), verbose=False)
    samples = _all_samples(synthetic_nuscenes, MINI.model_copy(update={"cameras": "all"}), nusc)
    assert len(samples) == 30
    labels_seen = torch.zeros(17, dtype=torch.int64)
    in_box: dict[int, list[int]] = {}
    box_classes: set[int] = set()
    for sample in samples:
        assert sample.labels is not None and sample.labels.shape[0] == sample.points.shape[0]
        labels_seen += torch.bincount(sample.labels, minlength=17)
        assert len(sample.views) == 6
        claimed = torch.cat([v.point_index for v in sample.views])
        assert claimed.unique().shape == claimed.shape  # a point belongs to one camera at most
        for view in sample.views:
            box_classes |= set(view.box_class.tolist())
            owned = view.point_box >= 0
            truth = sample.labels[view.point_index[owned]]
            expected = view.box_label[view.point_box[owned]]
            for label in expected.unique().tolist():
                hits = in_box.setdefault(label, [0, 0])
                hits[0] += int((truth[expected == label] == label).sum())
                hits[1] += int((expected == label).sum())
    assert bool((labels_seen[1:] > 0).all()), f"classes never seen: {torch.nonzero(labels_seen[1:] == 0)}"
    assert box_classes == set(range(6)), f"interest classes with boxes: {sorted(box_classes)}"
    purity = {label: hit / total for label, (hit, total) in in_box.items()}
    assert min(purity.values()) >= 0.7, f"in-box purity per training class: {purity}"
    assert all(total > 100 for _, total in in_box.values())
    # the devkit's own lidarseg files agree with ours point for point
    record = nusc.get("lidarseg", nusc.sample[0]["data"]["LIDAR_TOP"])
    raw = np.fromfile(synthetic_nuscenes / record["filename"], dtype=np.uint8)
    points = np.fromfile(
        synthetic_nuscenes / nusc.get("sample_data", record["sample_data_token"])["filename"], dtype="<f4"
    ).reshape(-1, 5)
    assert raw.shape[0] == points.shape[0]


def test_one_random_camera_is_seeded(synthetic_nuscenes: Path) -> None:
    config = load_config("tiny")
    a = NuScenesDataset(synthetic_nuscenes, config, MINI, training=True, seed=1)
    b = NuScenesDataset(synthetic_nuscenes, config, MINI, training=True, seed=1)
    picks = [a[i].views[0].camera for i in range(len(a))]
    assert picks == [b[i].views[0].camera for i in range(len(b))]
    assert len(set(picks)) >= 4  # 40 draws among 6 cameras
    assert all(len(a[i].views) == 1 for i in range(3))


def test_point_draws_do_not_depend_on_the_camera_setting(synthetic_nuscenes: Path) -> None:
    """The paired streams: the same sample and epoch get the same dropout and 3D augmentation (and
    intensity randomisation) with a random camera, every camera or none, so mode 3d and the 2D modes
    train on identically augmented clouds."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=str(synthetic_nuscenes), verbose=False)
    intensity = IntensityAugment(drop=0.3, scale_range=(0.5, 1.5))
    datasets = {
        cameras: NuScenesDataset(
            synthetic_nuscenes,
            load_config("tiny"),
            MINI.model_copy(update={"cameras": cameras}),
            training=True,
            seed=5,
            nusc=nusc,
            intensity=intensity,
        )
        for cameras in ("random", "all", "none")
    }
    for epoch in (0, 3):
        for dataset in datasets.values():
            dataset.set_epoch(epoch)
        for index in (0, 7, 21):
            samples = {cameras: dataset[index] for cameras, dataset in datasets.items()}
            reference = samples["none"]
            assert reference.views == ()
            assert len(samples["random"].views) == 1 and len(samples["all"].views) == 6
            for sample in samples.values():
                assert torch.equal(sample.points, reference.points)
                assert sample.labels is not None and reference.labels is not None
                assert torch.equal(sample.labels, reference.labels)
                assert torch.equal(sample.indices, reference.indices)
    # the camera stream is a stream of its own: it still varies the pick over the samples
    picks = {datasets["random"][i].views[0].camera for i in range(12)}
    assert len(picks) >= 3


def test_bad_files_get_errors_that_name_them(synthetic_nuscenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_nuscenes, root, symlinks=True)
    dataset = NuScenesDataset(root, load_config("tiny"), MINI)
    record = dataset.samples[0]
    points = record.lidar_path.read_bytes()

    record.lidar_path.write_bytes(points[:-7])  # not a whole number of 5-float records
    with pytest.raises(ValueError, match=rf"{record.lidar_path.name}.*not a multiple of 20"):
        dataset[0]
    record.lidar_path.write_bytes(points[:-20])  # one point fewer than labels
    with pytest.raises(ValueError, match=rf"{record.lidarseg_path.name} has \d+ labels for \d+ points"):
        dataset[0]
    record.lidar_path.unlink()
    with pytest.raises(FileNotFoundError, match=record.lidar_path.name):
        dataset[0]
    record.lidar_path.write_bytes(points)
    labels = record.lidarseg_path.read_bytes()
    record.lidarseg_path.unlink()
    with pytest.raises(FileNotFoundError, match=record.lidarseg_path.name):
        dataset[0]
    record.lidarseg_path.write_bytes(labels)
    dataset = NuScenesDataset(root, load_config("tiny"), MINI)  # a fresh index
    camera = dataset.samples[1].cameras[0]
    camera.path.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=camera.path.name):
        NuScenesDataset(root, load_config("tiny"), MINI.model_copy(update={"cameras": "all"}))[1]
