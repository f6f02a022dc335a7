"""The real-scan yardstick: scoring through the class mapping on hand-built scans, box shares on a
hand-built frame, a perfect labeller on the real scans, and the bundled model against its card."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI_TO_NUSCENES
from seg3d.scans import real_data_dir
from training.data.semantickitti import SemanticKittiLabelMap
from training.realscan import box_shares, card_section, main, semantickitti_scores, squeezeseg_shares

REAL = real_data_dir()
needs_real = pytest.mark.skipif(REAL is None, reason="real scans not found (../shared/data/real)")
NUS = NUSCENES_LIDARSEG.names
DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"


def _ids(*names: str) -> np.ndarray:
    return np.array([NUS.index(n) for n in names])


@needs_real
def test_scores_follow_the_mapping_on_a_hand_built_scan(tmp_path: Path) -> None:
    assert REAL is not None
    root = tmp_path / "sk"
    (root / "sequences" / "00" / "velodyne").mkdir(parents=True)
    (root / "sequences" / "00" / "labels").mkdir()
    shutil.copy(REAL / "semantickitti" / "semantic-kitti.yaml", root)
    # raw ids of semantic-kitti.yaml: 40 road, 48 sidewalk, 10 car, 44 parking (not mapped)
    raw = np.array([40, 40, 40, 40, 48, 48, 48, 10, 10, 44], dtype=np.uint32) | (7 << 16)  # instance bits
    points = np.zeros((10, 4), dtype=np.float32)
    points[:, 0] = np.arange(10)
    points.tofile(root / "sequences" / "00" / "velodyne" / "000000.bin")
    raw.tofile(root / "sequences" / "00" / "labels" / "000000.label")
    predicted = _ids(
        "driveable_surface", "driveable_surface", "driveable_surface", "sidewalk",
        "sidewalk", "sidewalk", "driveable_surface",
        "car", "construction_vehicle",
        "car",  # a parking point: not scored, so not a false positive of car
    )  # fmt: skip
    scores = semantickitti_scores(lambda p: predicted[p[:, 0].astype(int)], root, NUSCENES_LIDARSEG, 255.0)
    by_class = dict(
        zip(scores.classes, zip(scores.iou, scores.accuracy, scores.points, strict=True), strict=True)
    )
    assert by_class["driveable_surface"] == pytest.approx((3 / 5, 3 / 4, 4))
    assert by_class["sidewalk"] == pytest.approx((2 / 4, 2 / 3, 3))
    assert by_class["car"] == pytest.approx((1 / 2, 1 / 2, 2))
    assert all(math.isnan(by_class[n][0]) for n in ("truck", "vegetation", "pedestrian"))
    assert scores.miou == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert scores.point_accuracy == pytest.approx(6 / 9)
    assert (scores.scored_points, scores.total_points) == (9, 10)
    assert scores.mapping is SEMANTICKITTI_TO_NUSCENES


def test_box_shares_count_the_points_inside_each_box(tmp_path: Path) -> None:
    training = tmp_path / "object" / "training"
    for folder in ("velodyne", "calib", "label_2"):
        (training / folder).mkdir(parents=True)
    # Velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd), no shift, no rectification.
    (training / "calib" / "000000.txt").write_text(
        "R0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
    )
    # A car box 10 m ahead, 4 m long along the camera's x (the Velodyne's -y), bottom at z = -1.5.
    (training / "label_2" / "000000.txt").write_text(
        "Car 0 0 0 0 0 0 0 1.5 2.0 4.0 0.0 1.5 10.0 0.0\n"
        "Truck 0 0 0 0 0 0 0 3.0 2.5 8.0 0.0 1.5 40.0 0.0\n"
        "DontCare -1 -1 -10 0 0 0 0 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    inside = [[10.0, y, -1.0] for y in (-1.5, -0.5, 0.0, 0.5, 1.5)]
    outside = [[10.0, 2.5, -1.0], [13.0, 0.0, -1.0], [10.0, 0.0, 0.5]]
    cloud = np.array([[*p, 0.5] for p in inside + outside], dtype=np.float32)
    cloud.tofile(training / "velodyne" / "000000.bin")
    labels = _ids("car", "car", "car", "truck", "terrain", "car", "car", "car")
    shares = {s.kind: s for s in box_shares(lambda p: labels, tmp_path / "object", NUSCENES_LIDARSEG, 255.0)}
    assert (shares["Car"].boxes, shares["Car"].points, shares["Car"].correct) == (1, 5, 3)
    assert shares["Car"].share == pytest.approx(0.6)
    assert (shares["Truck"].points, math.isnan(shares["Truck"].share)) == (0, True)
    assert shares["Pedestrian"].boxes == 0
    figures = {"kitti_boxes": [s.as_dict() for s in shares.values()]}
    assert "| KITTI object boxes | Car | car | 1 | 5 | 60.0 |" in card_section(figures)


def test_squeezeseg_shares_read_the_cells_with_a_return(tmp_path: Path) -> None:
    grid = np.zeros((2, 3, 6), dtype=np.float32)
    # x, y, z, remission, range, label: three car cells, one background cell, two empty cells
    grid[0, 0] = [10, 0, -1, 0.5, 10, 1]
    grid[0, 1] = [10, 1, -1, 0.5, 10, 1]
    grid[0, 2] = [10, 2, -1, 0.5, 10, 1]
    grid[1, 0] = [20, 0, -1, 0.2, 20, 0]
    path = tmp_path / "frame.npy"
    np.save(path, grid)
    seen = []

    def labeller(points: np.ndarray) -> np.ndarray:
        seen.append(points)
        return _ids("car", "car", "terrain", "car")

    (car, pedestrian) = squeezeseg_shares(labeller, [path], NUSCENES_LIDARSEG, 255.0)
    assert seen[0].shape == (4, 4) and seen[0][0, 3] == pytest.approx(127.5)  # remission in the model's scale
    assert (car.kind, car.points, car.correct, car.boxes, car.frames) == ("Car", 3, 2, None, ("frame",))
    assert (pedestrian.points, math.isnan(pedestrian.share)) == (0, True)
    assert "| SqueezeSeg labels | Car | car | — | 3 | 66.7 |" in card_section(
        {"kitti_boxes": [car.as_dict()]}
    )


@needs_real
def test_a_labeller_that_knows_the_truth_scores_everything(tmp_path: Path) -> None:
    """The real scans through the yaml and the mapping: the mapped truth itself scores 100 %."""
    assert REAL is not None
    root = REAL / "semantickitti"
    label_map = SemanticKittiLabelMap.from_yaml(root / "semantic-kitti.yaml")
    truth = {}
    for label in sorted((root / "sequences" / "00" / "labels").glob("*.label")):
        mapped = SEMANTICKITTI_TO_NUSCENES.apply(label_map.to_train(np.fromfile(label, dtype=np.uint32)))
        mapped[mapped == 0] = NUS.index("construction_vehicle")  # unscored points: any label
        truth[mapped.shape[0]] = mapped
    scores = semantickitti_scores(lambda p: truth[p.shape[0]], root, NUSCENES_LIDARSEG, 255.0)
    assert scores.scans == ("00/000000", "00/000001")  # 000003 has no labels: not scored
    assert scores.miou == 1.0 and scores.point_accuracy == 1.0
    present = [n for n, count in zip(scores.classes, scores.points, strict=True) if count]
    assert set(present) >= {"car", "driveable_surface", "sidewalk", "manmade", "vegetation", "terrain"}


@needs_real
def test_the_bundled_model_scores_what_its_card_says(tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    assert main(["--model", str(DEMO), "--backend", "torch", "--json", str(out)]) == 0
    measured = json.loads(out.read_text())
    recorded = json.loads((DEMO / "metrics.json").read_text())["real_scans"]
    card = (DEMO / "MODEL_CARD.md").read_text()
    assert card_section(recorded) in card  # the card quotes metrics.json
    for key in ("miou", "point_accuracy"):
        assert measured["semantickitti"][key] == pytest.approx(recorded["semantickitti"][key], abs=0.01)
    for name, c in recorded["semantickitti"]["classes"].items():
        if c["iou"] is not None:
            assert measured["semantickitti"]["classes"][name]["iou"] == pytest.approx(c["iou"], abs=0.01)
    # The export's checkpoint, run as a checkpoint (torch, no manifest), labels the same.
    assert main(["--model", str(DEMO / "encoder3d.pt"), "--json", str(out)]) == 0
    from_checkpoint = json.loads(out.read_text())
    assert from_checkpoint["model"].startswith("checkpoint ")
    assert from_checkpoint["semantickitti"]["miou"] == pytest.approx(
        measured["semantickitti"]["miou"], abs=1e-3
    )
    for got, want in zip(measured["kitti_boxes"], recorded["kitti_boxes"], strict=True):
        assert (got["kind"], got["points"]) == (want["kind"], want["points"])
        assert got["correct"] == pytest.approx(want["correct"], abs=max(1, 0.01 * want["points"]))


def test_a_wrong_root_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(DEMO), "--backend", "torch", "--semantickitti", str(tmp_path)]) == 2
    assert "label config not found" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.pt"), "--kitti-objects", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@needs_real
def test_pictures_show_the_models_labels_and_the_mapped_truth(tmp_path: Path) -> None:
    from PIL import Image

    from seg3d.birdseye import BACKGROUND, birdseye
    from seg3d.points import PointFormat, read_points
    from training.realscan import load_labeller

    assert REAL is not None
    root = REAL / "semantickitti"
    sweep = sorted((REAL / "nuscenes" / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))[1]
    arguments = ["--model", str(DEMO), "--backend", "torch", "--semantickitti", str(root)]
    assert main([*arguments, "--pictures", str(tmp_path), "--nuscenes", str(sweep)]) == 0
    pictures = {p.name: np.asarray(Image.open(p)) for p in tmp_path.glob("*.png")}
    assert set(pictures) == {
        "birdseye-semantickitti.png",
        "birdseye-semantickitti-truth.png",
        "birdseye-nuscenes.png",
    }
    labeller, config, _ = load_labeller(DEMO, "torch")
    colours = config.classes.colours
    scan = root / "sequences" / "00" / "velodyne" / "000000.bin"  # the first labelled scan
    points = read_points(scan, PointFormat.KITTI, 255.0)
    label_map = SemanticKittiLabelMap.from_yaml(root / "semantic-kitti.yaml")
    truth = SEMANTICKITTI_TO_NUSCENES.apply(
        label_map.to_train(
            np.fromfile(root / "sequences" / "00" / "labels" / "000000.label", dtype=np.uint32)
        )
    )
    assert np.array_equal(pictures["birdseye-semantickitti-truth.png"], birdseye(points, truth, colours))
    assert np.array_equal(pictures["birdseye-semantickitti.png"], birdseye(points, labeller(points), colours))
    nuscenes = read_points(sweep, PointFormat.NUSCENES, 255.0)
    assert np.array_equal(pictures["birdseye-nuscenes.png"], birdseye(nuscenes, labeller(nuscenes), colours))
    # Real pictures: most of the square is empty, and a good share of it holds points.
    for image in pictures.values():
        drawn = (image != BACKGROUND).any(axis=2).mean()
        assert 0.03 < drawn < 0.6
