"""``python -m serve.segment`` on the real scans of ../shared/data/real (nuScenes, KITTI,
SemanticKITTI), run as a user runs it (a subprocess), checked against the service and against
readers that are not the writers:

- the label files are byte for byte the labels a real server's ``POST /segment`` answers for the
  same files and model (and a SemanticKITTI-class model's ``.label`` files decode to `Segmenter`'s);
- every bird's-eye PNG is the labels' picture: each non-background pixel of the picture is the
  palette colour of a class present, the dominant classes' colours appear, and the legend, read back
  from its pixels, lists each class with its point count;
- the labelled PLY (read by plyfile) and PCD (read by pypcd4 and by a parser written here) hold
  every point with its label and colour; the ``.rrd`` read back by rerun holds the class ids;
- on the real scene-0916 sample the camera overlay is written, has the camera image's size and
  shows the predicted classes' palette colours where the points project;
- a bad file (unknown suffix, missing, truncated, malformed header) is reported and skipped, the
  other scans are written, and the exit status is non-zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from seg3d.birdseye import BACKGROUND, birdseye
from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI
from seg3d.labelfiles import decode_label_file
from seg3d.points import PointFormat, read_points, write_points
from seg3d.scans import real_scans
from serve.model import load_model
from serve.segment import ScanJob, main, output_stem, plan_outputs
from serve.settings import DEFAULT_MODEL_DIR, ServeSettings
from tests.seg3d.test_birdseye import read_legend

ROOT = Path(__file__).resolve().parents[2]
SIZE = 800  # the default picture size: the legend starts at this column
SAMPLE = "b5989651183643369174912bc5641d3b"  # scene-0916's first sample (LIDAR_TOP and CAM_FRONT real)

try:
    import rerun  # noqa: F401

    HAVE_RERUN = True
except ImportError:
    HAVE_RERUN = False


def run_cli(*args: object, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serve.segment", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@dataclass
class Run:
    process: subprocess.CompletedProcess[str]
    out: Path
    scans: list[Path]
    summary: dict

    def output(self, scan: Path, suffix: str) -> Path:
        """Where a scan's output is (--out mirrors the scans' folders below their common parent): beside
        its label file, the first output the summary lists."""
        record = next(r for r in self.summary["scans"] if Path(r["scan"]) == scan)
        folder = Path(record["outputs"][0]).parent
        return folder / f"{output_stem(scan)}{suffix}"


@pytest.fixture(scope="module")
def real_paths() -> list[Path]:
    scans = [s.path for s in real_scans()]
    if not scans:
        pytest.skip("real scans not found (set SEG3D_REAL_DATA or place ../shared/data/real)")
    return scans


@pytest.fixture(scope="module")
def run(tiny_export: Path, real_paths: list[Path], tmp_path_factory) -> Run:
    """One run over every real scan, with every optional output, on the exported test model and the
    backend the test server uses."""
    out = tmp_path_factory.mktemp("segment") / "out"
    extra = ["--rrd"] if HAVE_RERUN else []
    process = run_cli(
        *real_paths,
        "--model",
        tiny_export,
        "--backend",
        "onnxruntime",
        "--out",
        out,
        "--ply",
        "--pcd",
        *extra,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    summary = json.loads((out / "summary.json").read_text())
    return Run(process, out, real_paths, summary)


def labels_of(run: Run, scan: Path) -> np.ndarray:
    return decode_label_file(run.output(scan, "_lidarseg.bin").read_bytes(), NUSCENES_LIDARSEG)


def test_every_real_scan_is_written_and_summarised(run: Run) -> None:
    assert f"segmented {len(run.scans)} of {len(run.scans)} scan(s)" in run.process.stdout
    assert [Path(r["scan"]) for r in run.summary["scans"]] == run.scans and run.summary["failed"] == []
    suffixes = ["_lidarseg.bin", "_birdseye.png", "_labelled.ply", "_labelled.pcd"]
    suffixes += [".rrd"] if HAVE_RERUN else []
    for record in run.summary["scans"]:
        scan = Path(record["scan"])
        assert [Path(p) for p in record["outputs"]] == [run.output(scan, s) for s in suffixes]
        assert all(Path(p).is_file() for p in record["outputs"])
        assert sum(record["classes"].values()) == record["points"]
    # KITTI's and SemanticKITTI's 000000.bin both exist: the outputs keep their folders apart.
    folders = {run.output(s, "").parent.relative_to(run.out) for s in run.scans}
    assert Path("kitti/object/training/velodyne") in folders
    assert Path("semantickitti/sequences/00/velodyne") in folders
    assert not [p for p in run.out.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_labels_are_the_service_answer(run: Run, server) -> None:
    """The label file of each scan is the service's binary answer for the same file: one uint8 per
    input point, in input order, byte for byte."""
    with server.client() as client:
        for scan in run.scans:
            fmt = PointFormat.for_path(scan)
            assert fmt is not None
            response = client.post(
                "/segment",
                params={"format": fmt.value},
                content=scan.read_bytes(),
                headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
            )
            assert response.status_code == 200, response.text
            data = run.output(scan, "_lidarseg.bin").read_bytes()
            assert (
                len(data) == int(response.headers["X-Num-Points"]) == read_points(scan, fmt, 255.0).shape[0]
            )
            assert data == response.content, scan.name


def test_pictures_show_the_labels_in_the_palette(run: Run) -> None:
    palette = [tuple(c) for c in NUSCENES_LIDARSEG.colours]
    for scan in run.scans:
        labels = labels_of(run, scan)
        fmt = PointFormat.for_path(scan)
        assert fmt is not None
        points = read_points(scan, fmt, 255.0)
        image = png(run.output(scan, "_birdseye.png"))
        picture = image[:SIZE, :SIZE]
        # Every painted pixel is the palette colour of a class some point in the picture has.
        inside = (np.abs(points[:, 0]) < 40) & (np.abs(points[:, 1]) < 40)
        present = np.bincount(labels[inside], minlength=len(palette))
        painted = {tuple(c) for c in np.unique(picture.reshape(-1, 3), axis=0).tolist()} - {BACKGROUND}
        assert painted <= {palette[i] for i in np.flatnonzero(present)}, scan.name
        # The dominant classes show (2 % of the points in the picture or more).
        dominant = {palette[i] for i in np.flatnonzero(present >= 0.02 * inside.sum())}
        assert dominant and dominant <= painted, scan.name
        # It is the very picture of these points and labels.
        assert np.array_equal(picture, birdseye(points, labels, NUSCENES_LIDARSEG.colours, size=SIZE))
        # The legend, read from the pixels: every class with its count and colour, and nothing else.
        lines = read_legend(image[:, SIZE:])
        counts = np.bincount(labels, minlength=len(palette))
        assert lines[1][0] == f"{labels.size:,} points, {np.count_nonzero(counts)} classes"
        listed = {}
        for text, swatch in lines[3:]:
            if swatch is not None:
                name, count, _share = text.split()
                listed[name] = (int(count.replace(",", "")), swatch)
        assert listed == {
            NUSCENES_LIDARSEG.names[i]: (int(counts[i]), palette[i]) for i in np.flatnonzero(counts)
        }, scan.name


def read_pcd(path: Path) -> dict[str, np.ndarray]:
    """A binary PCD's fields, read from the format's description (not with seg3d.pcd)."""
    data = path.read_bytes()
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = data.index(b"\n", pos)
        line = data[pos:end].decode("ascii").strip()
        pos = end + 1
        if line.startswith("#") or not line:
            continue
        key, *values = line.split()
        header[key] = values
        if key == "DATA":
            break
    assert header["DATA"] == ["binary"]
    kinds = {"F": "f", "U": "u", "I": "i"}
    dtype = np.dtype(
        [
            (name, f"<{kinds[t]}{s}")
            for name, s, t in zip(header["FIELDS"], header["SIZE"], header["TYPE"], strict=True)
        ]
    )
    points = int(header["POINTS"][0])
    records = np.frombuffer(data, dtype=dtype, count=points, offset=pos)
    assert pos + points * dtype.itemsize == len(data)
    return {name: records[name] for name in dtype.names or ()}


def test_labelled_files_load_back_with_their_labels(run: Run) -> None:
    plyfile = pytest.importorskip("plyfile", reason="plyfile (a dev dependency) is not installed")
    colours = np.asarray(NUSCENES_LIDARSEG.colours, dtype=np.uint8)
    for scan in run.scans:
        labels = labels_of(run, scan)
        fmt = PointFormat.for_path(scan)
        assert fmt is not None
        points = read_points(scan, fmt, 255.0)
        ply = plyfile.PlyData.read(str(run.output(scan, "_labelled.ply")))
        vertex = ply["vertex"]
        assert [p.name for p in vertex.properties] == [
            "x", "y", "z", "intensity", "red", "green", "blue", "label"
        ]  # fmt: skip
        assert vertex.count == points.shape[0]
        xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
        assert np.array_equal(xyz, points[:, :3]) and np.array_equal(vertex["label"], labels)
        rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
        assert np.array_equal(rgb, colours[labels])
        readers = [read_pcd]
        try:  # pypcd4 (a dev dependency) too, where installed
            from pypcd4 import PointCloud

            readers.append(lambda path: PointCloud.from_path(path).pc_data)
        except ImportError:
            pass
        for read in readers:
            pcd = read(run.output(scan, "_labelled.pcd"))
            assert np.array_equal(pcd["label"], labels)
            assert np.array_equal(np.stack([pcd["x"], pcd["y"], pcd["z"]], axis=1), points[:, :3])
            packed = np.ascontiguousarray(pcd["rgb"]).view("<u4")
            unpacked = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1)
            assert np.array_equal(unpacked, colours[labels])


@pytest.mark.skipif(not HAVE_RERUN, reason="rerun-sdk (the viz extra) is not installed")
def test_recordings_hold_the_class_ids(run: Run) -> None:
    from tests.seg3d.test_recording import read_recording

    for scan in run.scans[:: max(1, len(run.scans) // 3)]:  # a few: each read back takes a while
        positions, class_ids, context = read_recording(run.output(scan, ".rrd"))
        assert np.array_equal(class_ids, labels_of(run, scan))
        assert positions.shape[0] == class_ids.size
        assert [name for _, name, _ in context] == list(NUSCENES_LIDARSEG.names)


def test_the_nuscenes_overlay_of_scene_0916(devkit_root: Path, tmp_path: Path) -> None:
    """The bundled model on the real scene-0916 sample, with the tables completed as the devkit
    fixture does: the overlay is written, has the camera image's size, and shows the classes of the
    points that project into the image in their palette colours; the labels are `Segmenter`'s."""
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    from nuscenes.nuscenes import NuScenes

    from tests.conftest import REAL_VERSION
    from training.data.nuscenes_geometry import lidar_to_camera, project_to_image

    out = tmp_path / "out"
    process = run_cli(
        "--nuscenes-root",
        devkit_root,
        "--sample",
        SAMPLE,
        "--backend",
        "onnxruntime",
        "--out",
        out,
        "--quiet",
    )
    assert process.returncode == 0, process.stdout + process.stderr
    nusc = NuScenes(version=REAL_VERSION, dataroot=str(devkit_root), verbose=False)
    sample = nusc.get("sample", SAMPLE)
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    camera = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
    scan = devkit_root / lidar["filename"]
    stem = output_stem(scan)
    labels = decode_label_file((out / f"{stem}_lidarseg.bin").read_bytes(), NUSCENES_LIDARSEG)
    # The service's segmenter on the same file gives the same labels.
    model = load_model(ServeSettings(model=DEFAULT_MODEL_DIR, backend="onnxruntime"))
    points = read_points(scan, PointFormat.NUSCENES, model.manifest.config.input.intensity_max)
    assert np.array_equal(labels, model.segmenter.segment(points).labels)

    overlay = png(out / f"{stem}_CAM_FRONT.png")
    photo = png(devkit_root / camera["filename"])
    assert overlay.shape == photo.shape == (camera["height"], camera["width"], 3)  # 900 x 1600
    # Where the points land in the image (the projection the devkit's, checked in training's tests).
    sensor = nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
    xyz = lidar_to_camera(
        points[:, :3],
        nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"]),
        nusc.get("ego_pose", lidar["ego_pose_token"]),
        nusc.get("ego_pose", camera["ego_pose_token"]),
        sensor,
    )
    uv, depth = project_to_image(xyz, sensor["camera_intrinsic"])
    h, w = photo.shape[:2]
    seen = (depth > 1) & (uv[:, 0] > 1) & (uv[:, 0] < w - 1) & (uv[:, 1] > 1) & (uv[:, 1] < h - 1)
    in_view = np.bincount(labels[seen], minlength=len(NUSCENES_LIDARSEG))
    palette = NUSCENES_LIDARSEG.colours
    colours, counts = np.unique(overlay.reshape(-1, 3), axis=0, return_counts=True)
    drawn = {tuple(c): int(n) for c, n in zip(colours.tolist(), counts, strict=True)}
    colours, counts = np.unique(photo.reshape(-1, 3), axis=0, return_counts=True)
    before = {tuple(c): int(n) for c, n in zip(colours.tolist(), counts, strict=True)}
    # Each class with points in view shows as dots of its exact palette colour (a dot is about 5
    # pixels of it; dots overlap, so ask for 2 a point).
    assert np.count_nonzero(in_view >= 10) >= 3
    for i in np.flatnonzero(in_view >= 10):
        assert drawn.get(palette[i], 0) >= 2 * in_view[i] + before.get(palette[i], 0), (
            NUSCENES_LIDARSEG.names[i]
        )
    # A class predicted for no point in view adds no pixel of its colour.
    for i in np.flatnonzero(in_view == 0):
        assert drawn.get(palette[i], 0) <= before.get(palette[i], 0) + 2, NUSCENES_LIDARSEG.names[i]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, real_paths: list[Path]) -> tuple[Path, dict[str, Path]]:
    """A good nuScenes sweep beside a truncated copy, a file with an unknown suffix, a missing file
    and a PCD with a malformed header."""
    folder = tmp_path_factory.mktemp("inputs")
    good = next(p for p in real_paths if p.name.endswith(".pcd.bin"))
    shutil.copy(good, folder / "good.pcd.bin")
    data = good.read_bytes()
    (folder / "truncated.pcd.bin").write_bytes(data[: len(data) - 7])  # not a whole record
    (folder / "cloud.xyz").write_bytes(data)
    (folder / "broken.pcd").write_bytes(b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4\nDATA binary\n")
    return folder, {
        "good": folder / "good.pcd.bin",
        "truncated": folder / "truncated.pcd.bin",
        "unknown": folder / "cloud.xyz",
        "missing": folder / "absent.bin",
        "broken": folder / "broken.pcd",
    }


def test_bad_scans_are_reported_and_skipped_and_the_rest_written(bad_inputs, tmp_path: Path) -> None:
    _, files = bad_inputs
    out = tmp_path / "out"
    order = ["unknown", "good", "truncated", "missing", "broken"]
    process = run_cli(*(files[k] for k in order), "--backend", "onnxruntime", "--out", out)
    assert process.returncode == 1, process.stdout + process.stderr
    errors = process.stderr
    assert (
        f"{files['unknown']}: cannot tell the point format from the name 'cloud.xyz': give --format" in errors
    )
    assert f"{files['missing']}: no such file" in errors
    assert f"{files['truncated']}:" in errors and "not a multiple of 20" in errors
    assert f"{files['broken']}: PCD header" in errors
    assert f"{files['broken']}: {files['broken']}" not in errors  # the path is said once
    assert "segmented 1 of 5 scan(s)" in process.stdout and "4 failed" in process.stdout
    assert (out / "good_lidarseg.bin").stat().st_size == files["good"].stat().st_size // 20
    assert (out / "good_birdseye.png").is_file()
    written = sorted(p.name for p in out.iterdir())
    assert written == ["good_birdseye.png", "good_lidarseg.bin", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(r["scan"]) for r in summary["scans"]] == [files["good"]]
    assert {Path(f["scan"]) for f in summary["failed"]} == {files[k] for k in order if k != "good"}


def test_fail_fast_stops_before_the_model_loads(bad_inputs, tmp_path: Path) -> None:
    _, files = bad_inputs
    process = run_cli(files["good"], files["unknown"], "--fail-fast", "--out", tmp_path / "out")
    assert process.returncode == 2, process.stdout + process.stderr
    assert "cloud.xyz" in process.stderr and not (tmp_path / "out").exists()
    # --format names the layout of a file whose name does not: the same file is then segmented.
    process = run_cli(
        files["unknown"], "--format", "nuscenes", "--backend", "onnxruntime", "--out", tmp_path / "o2"
    )
    assert process.returncode == 0, process.stderr
    assert (tmp_path / "o2" / "cloud_lidarseg.bin").stat().st_size == files["good"].stat().st_size // 20


def test_argument_errors_exit_2_before_any_work(
    bad_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _, files = bad_inputs
    out = tmp_path / "out"
    assert main([]) == 2
    assert "give at least one SCAN or --sample" in capsys.readouterr().err
    assert main([str(files["good"]), "--sample", SAMPLE, "--out", str(out)]) == 2
    assert "--sample needs --nuscenes-root" in capsys.readouterr().err
    assert main([str(files["good"]), "--model", str(tmp_path), "--out", str(out)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err
    inputs = tmp_path / "inputs"  # an output of one scan would replace another scan
    inputs.mkdir()
    shutil.copy(files["good"], inputs / "a.pcd.bin")
    shutil.copy(files["good"], inputs / "a_birdseye.png")
    assert (
        main(
            [
                str(inputs / "a.pcd.bin"),
                str(inputs / "a_birdseye.png"),
                "--format",
                "nuscenes",
                "--out",
                str(inputs),
            ]
        )
        == 2
    )
    assert "would overwrite an input scan" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "rerun", None)  # rerun-sdk not installed
    assert main([str(files["good"]), "--rrd", "--out", str(out)]) == 2
    assert "pip install -e '.[viz]'" in capsys.readouterr().err
    assert not out.exists()


def test_semantickitti_models_write_label_files(tmp_path: Path, real_paths: list[Path]) -> None:
    """A SemanticKITTI-class model writes ``.label`` files (uint32 raw ids) that decode to the labels
    of the service's segmenter on the same scan."""
    import export.to_trt as to_trt

    model_dir = tmp_path / "sk"
    args = ["--config", "semantickitti_small", "--random-init", "--seed", "3", "--out", str(model_dir)]
    assert to_trt.main([*args, "--skip-parity"]) == 0
    scan = next(p for p in real_paths if "semantickitti" in p.parts)
    out = tmp_path / "out"
    process = run_cli(scan, "--model", model_dir, "--backend", "onnxruntime", "--out", out, "--quiet")
    assert process.returncode == 0, process.stderr
    data = (out / f"{output_stem(scan)}.label").read_bytes()
    model = load_model(ServeSettings(model=model_dir, backend="onnxruntime"))
    points = read_points(scan, PointFormat.KITTI, model.manifest.config.input.intensity_max)
    expected = model.segmenter.segment(points).labels
    assert len(data) == 4 * points.shape[0]
    assert np.array_equal(decode_label_file(data, SEMANTICKITTI), expected)
    legend = read_legend(png(out / f"{output_stem(scan)}_birdseye.png")[:, SIZE:])
    names = {text.split()[0] for text, swatch in legend if swatch is not None}
    assert names == {SEMANTICKITTI.names[i] for i in np.unique(expected)}


def test_pcd_and_ply_copies_of_a_real_sweep_get_its_labels(real_paths: list[Path], tmp_path: Path) -> None:
    """A real nuScenes sweep saved as PCD and PLY (format from the name) is labelled as the .bin."""
    sweep = next(p for p in real_paths if p.name.endswith(".pcd.bin"))
    points = read_points(sweep, PointFormat.NUSCENES, 255.0)
    shutil.copy(sweep, tmp_path / "sweep.pcd.bin")
    write_points(tmp_path / "sweep.pcd", points, PointFormat.PCD, 255.0)
    write_points(tmp_path / "sweep.ply", points, PointFormat.PLY, 255.0)
    out = tmp_path / "out"
    names = ["sweep.pcd.bin", "sweep.pcd", "sweep.ply"]
    process = run_cli(*(tmp_path / n for n in names), "--backend", "onnxruntime", "--out", out, "--quiet")
    assert process.returncode == 0, process.stdout + process.stderr
    # The three share the stem "sweep": each output takes its scan's whole name.
    labels = [(out / f"{n}_lidarseg.bin").read_bytes() for n in names]
    assert len(labels[0]) == points.shape[0] and labels[0] == labels[1] == labels[2]


def test_output_names_keep_scans_apart(tmp_path: Path) -> None:
    """One folder: STEM_*; scans of one folder with the same stem: their whole names; several
    folders: the folders below their common parent."""
    a, b = tmp_path / "in" / "scan.pcd.bin", tmp_path / "in" / "scan.bin"
    c = tmp_path / "in" / "seq" / "000000.bin"
    jobs = [ScanJob(p, None) for p in (a, b, c)]
    plan_outputs(jobs, tmp_path / "out")
    assert [j.output("_birdseye.png") for j in jobs] == [
        tmp_path / "out" / "scan.pcd.bin_birdseye.png",
        tmp_path / "out" / "scan.bin_birdseye.png",
        tmp_path / "out" / "seq" / "000000_birdseye.png",
    ]
    assert [j.title for j in jobs] == ["scan.pcd.bin", "scan.bin", "seq/000000.bin"]
    jobs = [ScanJob(p, None) for p in (a, tmp_path / "in" / "other.bin")]
    plan_outputs(jobs, tmp_path / "out")
    assert [j.output(".rrd").name for j in jobs] == ["scan.rrd", "other.rrd"]
    assert (
        output_stem(Path("n015__LIDAR_TOP__1538984233547259.pcd.bin")) == "n015__LIDAR_TOP__1538984233547259"
    )
    assert [output_stem(Path(n)) for n in ("000000.bin", "x.PCD", "y.ply", "z.xyz")] == [
        "000000",
        "x",
        "y",
        "z",
    ]


def test_help_names_the_command_and_why_it_is_in_serve() -> None:
    process = run_cli("--help", timeout=120)
    assert process.returncode == 0
    assert "python -m serve.segment" in process.stdout
    assert "rather than `python -m seg3d segment`" in process.stdout
    assert "seg3d, the shared core, never imports serve" in " ".join(process.stdout.split())
