"""``python -m training.data.synthetic.sample``: a legal sample scan for the README's examples.

The files it writes must read back with the service's own reader, come with one truth label per
point, be the same bytes for a seed, and be segmented well by the bundled demo model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_TRAIN_CLASSES
from seg3d.points import PointFormat, read_points
from training.data.synthetic.sample import RAW_TO_TRAIN, main, sample_sweep

ROOT = Path(__file__).resolve().parents[4]
DEMO_MODEL = ROOT / "models" / "demo"


def _write(tmp_path: Path, name: str, *args: str) -> tuple[Path, Path]:
    out, labels = tmp_path / name, tmp_path / f"{name}.labels"
    assert main(["--out", str(out), "--labels", str(labels), *args]) == 0
    return out, labels


def test_help_explains_every_flag_and_the_licence() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training.data.synthetic.sample", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for flag in ("--out", "--format", "--seed", "--labels", "--overwrite"):
        assert flag in text
    for fmt in PointFormat:
        assert f"{fmt.value}: {fmt.description}" in text
    assert "synthetic" in text and "free to use" in text


@pytest.mark.parametrize("fmt", list(PointFormat))
def test_every_format_reads_back_to_the_labelled_sweep(tmp_path: Path, fmt: PointFormat, capsys) -> None:
    out, labels = _write(tmp_path, f"scan.{fmt.value}.bin", "--format", fmt.value, "--seed", "3")
    line = capsys.readouterr().out.strip()
    sweep = sample_sweep(3).sweep
    n = sweep.points.shape[0]
    assert "\n" not in line and line.startswith(f"{out}: {n} points, format {fmt.value}")
    if not fmt.self_describing:  # PCD and PLY add a header
        assert out.stat().st_size == n * 4 * fmt.columns
    truth = np.fromfile(labels, dtype=np.uint8)
    assert truth.shape == (n,)
    points = read_points(out, fmt, 255.0)  # the service's reader, a nuScenes-scale model
    assert points.shape == (n, 4)
    np.testing.assert_allclose(points[:, :3], sweep.points[:, :3])
    if fmt.has_intensity:  # back in the 0-255 scale, whatever scale the file holds
        np.testing.assert_allclose(points[:, 3], sweep.points[:, 3], rtol=1e-6, atol=1e-4)
    else:
        assert not points[:, 3].any()
    if fmt is PointFormat.NUSCENES:  # the ring column, 0..31, firing by firing
        rings = np.fromfile(out, "<f4").reshape(n, 5)[:, 4]
        assert rings.tolist() == sweep.points[:, 4].tolist() and set(rings) <= set(range(32))
    if fmt is PointFormat.KITTI:
        reflectance = np.fromfile(out, "<f4").reshape(n, 4)[:, 3]
        assert reflectance.min() >= 0 and 0.1 < reflectance.max() <= 1


def test_labels_are_training_ids_of_the_raw_labels() -> None:
    sample = sample_sweep(0)
    raw = sample.sweep.labels
    assert RAW_TO_TRAIN.shape == (32,) and RAW_TO_TRAIN.max() == len(NUSCENES_TRAIN_CLASSES) - 1
    assert RAW_TO_TRAIN[0] == 0 and RAW_TO_TRAIN[31] == 0  # noise and the ego vehicle: ignore
    assert RAW_TO_TRAIN[17] == NUSCENES_TRAIN_CLASSES.index("car")
    np.testing.assert_array_equal(sample.train_labels, RAW_TO_TRAIN[raw])
    # A street: most of the 16 classes present, the ground classes among them, and raw ids that
    # are not training ids (ids 17+ exist raw), so a missing conversion would show.
    present = set(np.unique(sample.train_labels).tolist())
    assert {11, 13, 15} <= present and len(present) >= 12
    assert raw.max() > 16 and sample.train_labels.max() <= 16


def test_same_seed_same_bytes_other_seed_other_street(tmp_path: Path) -> None:
    a, a_labels = _write(tmp_path, "a.bin")
    b, b_labels = _write(tmp_path, "b.bin", "--seed", "0")
    c, c_labels = _write(tmp_path, "c.bin", "--seed", "1")
    assert a.read_bytes() == b.read_bytes() and a_labels.read_bytes() == b_labels.read_bytes()
    assert a.read_bytes() != c.read_bytes() and a_labels.read_bytes() != c_labels.read_bytes()


def test_refuses_to_replace_without_overwrite(tmp_path: Path, capsys) -> None:
    out, labels = _write(tmp_path, "scan.pcd.bin")
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["--out", str(out), "--seed", "1"]) == 2
    assert f"--out {out} exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    other = tmp_path / "other.bin"
    assert main(["--out", str(other), "--labels", str(labels), "--seed", "1"]) == 2  # labels too
    assert "--labels" in capsys.readouterr().err and not other.exists()
    assert main(["--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert out.read_bytes() != before
    assert main(["--out", str(tmp_path), "--overwrite"]) == 2  # a folder is never replaced
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.pcd.bin", "scan.pcd.bin.labels"]


def test_creates_missing_folders(tmp_path: Path) -> None:
    out = tmp_path / "samples" / "kitti" / "000000.bin"
    assert main(["--out", str(out), "--format", "kitti"]) == 0
    assert read_points(out, "kitti", 255.0).shape[0] > 20_000


#: Point accuracy of the demo model (ONNX Runtime, as served) on samples, labels 0 left out. Measured
#: 2026-11-30 with the mode-3d demo model: seed 0 89.0 %, 1 86.3 %, 2 87.6 % (30 seeds: mean 83.6 %,
#: 66.6–91.5 %). A model answering the most frequent class scores 28–43 %; without intensity (format
#: xyz) the demo model scores about the same (83.7 %): it was trained not to lean on intensity.
DEMO_ACCURACY = {0: 0.890, 1: 0.863, 2: 0.876}
MARGIN = 0.15


def test_demo_model_segments_a_sample_well(tmp_path: Path) -> None:
    from serve.model import load_model
    from serve.settings import ServeSettings

    model = load_model(ServeSettings(model=DEMO_MODEL, backend="onnxruntime"))
    scores = {}
    for seed, measured in DEMO_ACCURACY.items():
        out, labels = _write(tmp_path, f"{seed}.pcd.bin", "--seed", str(seed))
        predicted = model.segmenter.handle(out.read_bytes(), "nuscenes").labels  # as POST /segment
        truth = np.fromfile(labels, dtype=np.uint8)
        assert predicted.shape == truth.shape
        scored = truth != 0
        accuracy = float((predicted[scored] == truth[scored]).mean())
        majority = np.bincount(truth[scored]).max() / scored.sum()
        scores[seed] = round(accuracy, 3)
        assert accuracy >= measured - MARGIN, scores
        assert accuracy >= majority + 0.3, (scores, majority)
