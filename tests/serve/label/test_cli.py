"""python -m serve.label on the local engine: the nuScenes lidarseg root the devkit loads, the
SemanticKITTI layout on the real scans against the running service's labels, bad files, and the
refusals (exit codes of the command's --help)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, NUSCENES_TO_SEMANTICKITTI
from seg3d.labelfiles import SEMANTICKITTI_RAW_IDS, nuscenes_raw_labels
from seg3d.points import PointFormat, read_points
from seg3d.scans import real_data_dir
from serve.label.cli import main
from tests.serve.conftest import Server

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")


def _service_labels(server: Server, path: Path, fmt: str) -> np.ndarray:
    with server.client() as client:
        response = client.post(
            f"/segment?format={fmt}",
            content=path.read_bytes(),
            headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
        )
    assert response.status_code == 200, response.text[:300]
    return np.frombuffer(response.content, dtype=np.uint8)


def _summary(out: Path) -> dict:
    return json.loads((out / "label-summary.json").read_text())


def test_nuscenes_predictions_root_loads_in_the_devkit_with_the_services_labels(
    synthetic_nuscenes: Path, server: Server, tmp_path: Path
) -> None:
    from nuscenes.nuscenes import NuScenes

    out = tmp_path / "preds"
    args = ["--model", str(server.model_dir), "--out", str(out), "--nuscenes", str(synthetic_nuscenes)]
    assert main([*args, "--split", "mini_val", "--no-progress"]) == 0
    nusc = NuScenes("v1.0-mini", str(out), verbose=False)
    truth = NuScenes("v1.0-mini", str(synthetic_nuscenes), verbose=False)
    summary = _summary(out)
    assert len(nusc.lidarseg) == summary["written"] == summary["inputs"] == 10 and summary["failed"] == 0
    raw_index = truth.lidarseg_name2idx_mapping
    points = 0
    for record in nusc.lidarseg:
        sweep = synthetic_nuscenes / truth.get("sample_data", record["sample_data_token"])["filename"]
        written = np.fromfile(out / record["filename"], dtype=np.uint8)
        expected = nuscenes_raw_labels(_service_labels(server, sweep, "nuscenes"), raw_index)
        np.testing.assert_array_equal(written, expected)
        points += written.size
    assert summary["points"] == points and summary["scans_per_s"] > 0
    assert summary["job"]["model"]["manifest_sha256"] and summary["job"]["inputs"]["split"] == "mini_val"
    # the devkit reads the predictions through the data set's own category numbering
    assert nusc.lidarseg_name2idx_mapping == raw_index
    record = nusc.lidarseg[0]
    sample = nusc.get("sample_data", record["sample_data_token"])["sample_token"]
    nusc.get_sample_lidarseg_stats(sample, sort_by="count")  # reads the file by its record


@pytest.mark.skipif(real_data_dir() is None, reason="real scans not found")
def test_semantickitti_real_scans_get_raw_ids_of_the_services_labels(server: Server, tmp_path: Path) -> None:
    root = real_data_dir() / "semantickitti"  # type: ignore[operator]
    out = tmp_path / "preds"
    code = main(
        [
            "--model",
            str(server.model_dir),
            "--out",
            str(out),
            "--semantickitti",
            str(root),
            "--sequences",
            "0",
        ]
    )
    assert code == 0
    scans = sorted((root / "sequences" / "00" / "velodyne").glob("*.bin"))
    assert scans and _summary(out)["written"] == len(scans)
    lookup = np.asarray(SEMANTICKITTI_RAW_IDS, dtype=np.uint32)[NUSCENES_TO_SEMANTICKITTI.lookup()]
    for scan in scans:
        label = out / "sequences" / "00" / "predictions" / f"{scan.stem}.label"
        raw = np.fromfile(label, dtype="<u4")
        assert raw.size == scan.stat().st_size // 16  # one uint32 per point
        np.testing.assert_array_equal(raw, lookup[_service_labels(server, scan, "kitti")])


def test_a_corrupt_file_is_recorded_and_the_others_labelled(
    sweep_files: list[Path], tiny_export: Path, tmp_path: Path
) -> None:
    folder = sweep_files[0].parent
    (folder / "truncated.pcd.bin").write_bytes(sweep_files[0].read_bytes()[:1003])
    nan = read_points(sweep_files[1], PointFormat.NUSCENES, 255.0)
    raw = np.zeros((nan.shape[0], 5), dtype="<f4")
    raw[:, :4] = nan
    raw[7, 1] = np.nan
    raw.tofile(folder / "nan.pcd.bin")
    (folder / "notes.bin.txt").write_text("not a scan")
    out = tmp_path / "labels"
    args = ["--model", str(tiny_export), "--out", str(out), "--files", str(folder / "*"), "--no-progress"]
    assert main(args) == 0
    summary = _summary(out)
    assert (summary["written"], summary["failed"]) == (4, 3)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert "1003 bytes is not a multiple of 20" in reasons["truncated.pcd.bin"]
    assert "NaN" in reasons["nan.pcd.bin"]
    assert "--format" in reasons["notes.bin.txt"]
    for sweep in sweep_files:
        labels = np.fromfile(out / f"{sweep.name.removesuffix('.pcd.bin')}_lidarseg.bin", dtype=np.uint8)
        assert labels.size == sweep.stat().st_size // 20 and labels.max() < len(NUSCENES_LIDARSEG)
    assert not list(out.glob("truncated*")) and not list(out.glob("nan*"))
    strict = tmp_path / "strict"
    assert main([*args[:3], str(strict), *args[4:], "--strict", "--workers", "2"]) == 1
    assert _summary(strict)["failed"] == 1  # it stopped at the first


def test_refusals_exit_2_before_any_work(synthetic_nuscenes: Path, tiny_export: Path, tmp_path: Path) -> None:
    model = ["--model", str(tiny_export)]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    nus = ["--nuscenes", str(synthetic_nuscenes), "--split", "mini_val", "--no-progress"]
    assert main([*model, "--out", str(busy), *nus]) == 2  # not empty, no job of ours
    assert main([*model, "--out", str(synthetic_nuscenes), *nus]) == 2  # the root itself
    assert (
        main([*model, "--out", str(tmp_path / "o"), "--semantickitti", str(tmp_path)]) == 2
    )  # no sequences/
    assert main([*model, "--out", str(tmp_path / "o"), "--files", str(tmp_path / "*.ply")]) == 2  # nothing
    assert main([*model, "--out", str(tmp_path / "o"), "--files", "x", "--split", "val"]) == 2
    assert main(["--model", str(tmp_path), "--out", str(tmp_path / "o"), *nus]) == 2  # no manifest
    assert not (tmp_path / "o").exists()
    done = tmp_path / "done"
    assert main([*model, "--out", str(done), *nus]) == 0
    assert main([*model, "--out", str(done), *nus]) == 2  # an earlier job: --resume or a new folder
    other = [*nus[:3], "mini_train", "--no-progress"]
    assert main([*model, "--out", str(done), *other, "--resume"]) == 2  # another job's folder


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_cannot_load_exits_3(
    sweep_files: list[Path], tiny_export: Path, tmp_path: Path, workers: int
) -> None:
    # TensorRT is not on this machine (and the tiny export has no engine): the workers cannot load
    args = ["--model", str(tiny_export), "--out", str(tmp_path / "o"), "--files", str(sweep_files[0].parent)]
    assert main([*args, "--backend", "tensorrt", "--workers", str(workers), "--no-progress"]) == 3


def test_labels_written_inside_the_input_folder_are_never_read_as_inputs(
    sweep_files: list[Path], tiny_export: Path
) -> None:
    folder = sweep_files[0].parent
    args = [
        "--model",
        str(tiny_export),
        "--out",
        str(folder / "labels"),
        "--files",
        str(folder),
        "--no-progress",
    ]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    summary = _summary(folder / "labels")
    assert (summary["inputs"], summary["skipped"], summary["failed"]) == (4, 4, 0)


def test_the_readers_options_reach_every_worker(tiny_export: Path, tmp_path: Path) -> None:
    points = np.random.default_rng(0).uniform(-20, 20, (500, 3)).astype(np.float32)
    header = (
        "VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        f"WIDTH {len(points)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(points)}\nDATA ascii\n"
    )
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "no-intensity.pcd").write_text(header + "\n".join(" ".join(map(str, p)) for p in points) + "\n")
    args = ["--model", str(tiny_export), "--files", str(folder), "--no-progress", "--workers", "2"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 0
    failure = _summary(tmp_path / "refused")["failures"][0]
    assert "intensity" in failure["reason"] and failure["path"].endswith("no-intensity.pcd")
    assert main([*args, "--out", str(tmp_path / "accepted"), "--no-intensity"]) == 0
    summary = _summary(tmp_path / "accepted")
    assert summary["written"] == 1 and summary["job"]["inputs"]["no_intensity"] is True
    assert np.fromfile(tmp_path / "accepted" / "no-intensity_lidarseg.bin", dtype=np.uint8).size == 500
