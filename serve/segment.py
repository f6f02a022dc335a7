"""python -m serve.segment: segment point files from the command line, writing labels and pictures.

    python -m serve.segment sweeps/*.pcd.bin                               # models/demo -> runs/segment/
    python -m serve.segment scans/*.pcd --model exports/full --out runs/labels --ply --rrd
    python -m serve.segment --nuscenes-root /data/nuscenes --sample TOKEN   # + the camera overlay

Each scan is read by the service's point reader (seg3d.points: nuscenes .pcd.bin, kitti .bin, PCD,
PLY, xyzi, xyz; the format from --format, else from the file name) and segmented by the service's
own path (serve.segmenter.Segmenter: the crop, the backend, each point outside the crop labelled
as its nearest in-crop point), so its labels are the very labels POST /segment answers for the
same file and model. One label per input point, in input order. Per scan STEM (the file name
without .pcd.bin, .bin, .pcd, .ply), in --out:

  STEM_lidarseg.bin     the labels, nuScenes-class model: one uint8 per point, the class index
                        0-16 (the lidarseg challenge's indices; POST /segment's binary answer)
  STEM.label            the labels, SemanticKITTI-class model: one uint32 per point, the raw
                        SemanticKITTI id (learning_map_inv) in the low 16 bits, instance 0
  STEM_birdseye.png     the cloud seen from above in the class colours (seg3d.classes), with a
                        legend: each class present, its colour, its point count and share
  STEM_labelled.ply     --ply: binary PLY, x y z intensity red green blue label per point
  STEM_labelled.pcd     --pcd: binary PCD, x y z intensity label rgb per point
  STEM.rrd              --rrd: a Rerun recording, the points with their class ids and an
                        annotation context of the class names and colours (needs rerun-sdk:
                        pip install '.[viz]'); open it with `rerun STEM.rrd`
  STEM_CAM_FRONT.png    --sample: nuscenes-devkit's picture of the labels over the camera image
  summary.json          per scan: its outputs, points, class counts, timings, or its error

Scans spread over several folders keep their folder layout under --out, below the folders'
common parent, so that files of the same name (KITTI's 000000.bin in two sequences) do not meet;
scans of one folder with the same STEM (scan.pcd.bin, scan.bin) take their whole file name as STEM.
Every file is written atomically: it is complete or absent, never half-written.

With --nuscenes-root DIR --sample TOKEN (repeatable) the sample's LIDAR_TOP sweep is segmented too
(besides any SCAN), and the overlay nuscenes-devkit renders from a predictions file
(render_pointcloud_in_image with lidarseg_preds_bin_path) is written for each --camera; the root
needs the tables, the sweep and the camera images, not the lidarseg ground truth.

Bad scans: a file whose format cannot be told from its name (give --format), a missing file, and a
file that cannot be read (truncated, malformed header, NaN) are reported with the reason and
skipped; the other scans are still written and the exit status is 1. With --fail-fast the first
bad scan stops the run (before the model loads when it can be seen from the arguments).

This command is `python -m serve.segment` rather than `python -m seg3d segment`: running an export
folder (verifying its manifest, choosing a backend, the crop and the nearest-in-crop fill) is the
service's code, and seg3d, the shared core, never imports serve. What needs no model (pictures,
label files, recordings, the overlay) is in seg3d.

Exit codes:
  0  every scan was segmented and written;
  1  some scans failed (each reported; the others were written);
  2  bad arguments, before any work: flags, no scan, an output that would replace an input scan,
     --model without a manifest, --rrd without rerun-sdk, --sample without nuscenes-devkit or with
     an unknown token, a bad scan seen from the arguments with --fail-fast;
  3  the model failed to load or warm up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from seg3d.birdseye import birdseye_with_legend, write_png
from seg3d.classes import NUSCENES_LIDARSEG, ClassTable
from seg3d.io import write_atomic
from seg3d.labelfiles import label_file_name, write_label_file
from seg3d.labelled import write_labelled
from seg3d.overlay import (
    DevkitMissingError,
    NuScenesSample,
    OverlayError,
    load_nuscenes,
    render_camera_overlay,
    resolve_sample,
)
from seg3d.points import PointFormat, PointsError, read_points
from seg3d.recording import RerunMissingError, import_rerun, write_recording
from serve.errors import ServiceError
from serve.model import LoadedModel, ModelLoadError, load_model
from serve.settings import DEFAULT_MODEL_DIR, BackendChoice, ServeSettings

__all__ = ["DEFAULT_OUT", "ScanJob", "add_reader_options", "format_of", "main", "output_stem", "plan_outputs"]

DEFAULT_OUT = Path("runs/segment")
EXIT_SOME_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_MODEL_FAILED = 3

#: What a scan's outputs may add to its stem (`seg3d.labelfiles.label_file_name` and the pictures).
_OUTPUT_SUFFIXES = (
    "_lidarseg.bin",
    ".label",
    "_labels.bin",
    "_birdseye.png",
    "_labelled.ply",
    "_labelled.pcd",
    ".rrd",
)

#: Suffixes a scan's name loses to give its outputs' stem (longest first).
_SUFFIXES = (".pcd.bin", ".bin", ".pcd", ".ply")


def output_stem(path: Path) -> str:
    """``n015…__LIDAR_TOP__153….pcd.bin`` → ``n015…__LIDAR_TOP__153…``; ``000000.bin`` → ``000000``."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem or name


@dataclass
class ScanJob:
    """One scan to segment: its file, format, where its outputs go, and the samples it is the
    LIDAR_TOP sweep of (for their camera overlays)."""

    path: Path
    fmt: PointFormat | None
    folder: Path = Path()
    stem: str = ""
    samples: list[NuScenesSample] = field(default_factory=list)
    problem: str | None = None  # why it cannot be segmented, known before any work
    title: str = ""  # the scan's name below the scans' common folder: the picture's title

    def output(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"


def plan_outputs(jobs: Sequence[ScanJob], out: Path) -> None:
    """Give each job its output folder and stem: ``out`` itself when the scans share one folder,
    else ``out`` / the scan's folder relative to the scans' common parent; the stem is
    `output_stem`, or the whole file name for scans of one folder whose stems are the same
    (``scan.pcd.bin`` and ``scan.bin`` write ``scan.pcd.bin_*`` and ``scan.bin_*``).

    Raises:
        ValueError: two different scans would still write the same outputs.
    """
    folders = [job.path.absolute().parent for job in jobs]
    common = Path(os.path.commonpath(folders)) if folders else Path()
    stems: dict[Path, list[ScanJob]] = {}
    for job, folder in zip(jobs, folders, strict=True):
        job.folder = out / folder.relative_to(common)
        job.stem = output_stem(job.path)
        job.title = str(folder.relative_to(common) / job.path.name)
        stems.setdefault(job.folder / job.stem, []).append(job)
    seen: dict[Path, Path] = {}
    for same in stems.values():
        for job in same:
            if len(same) > 1:
                job.stem = job.path.name
            key = job.folder / job.stem
            if key in seen:
                raise ValueError(
                    f"{seen[key]} and {job.path} would write the same outputs ({key}_*): rename one or "
                    "segment them into different --out folders"
                )
            seen[key] = job.path


def format_of(path: Path, given: PointFormat | None) -> tuple[PointFormat | None, str | None]:
    """A point file's format: ``given``, else the one its name implies; or None and why not."""
    if given is not None:
        return given, None
    fmt = PointFormat.for_path(path)
    if fmt is None:
        known = ", ".join(f.value for f in PointFormat)
        return None, f"cannot tell the point format from the name {path.name!r}: give --format ({known})"
    return fmt, None


def _backend_choices() -> tuple[str, ...]:
    return tuple(get_args(BackendChoice))


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """The point reader's options of ``POST /segment`` as flags (``--intensity-max``,
    ``--no-intensity``), shared by the commands that read point files."""
    parser.add_argument(
        "--intensity-max",
        type=float,
        metavar="X",
        help="the maximum of the files' intensity scale (default: the format's: nuscenes 255, kitti 1; "
        "PCD/PLY by the reader's rule for the field), as POST /segment's intensity_max",
    )
    parser.add_argument(
        "--no-intensity",
        action="store_true",
        help="PCD/PLY: accept files without an intensity field (the model then reads intensity 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serve.segment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scans", nargs="*", type=Path, metavar="SCAN", help="point files to segment")
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="export folder (default: the bundled models/demo)",
    )
    parser.add_argument(
        "--format",
        type=PointFormat,
        choices=list(PointFormat),
        help="the layout of every SCAN (default: from each file's name: .pcd.bin nuscenes, other .bin "
        "kitti, .pcd, .ply)",
    )
    add_reader_options(parser)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--backend",
        choices=_backend_choices(),
        default="auto",
        help="inference backend, as python -m serve's (default auto: the fastest that runs here)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: all)")
    parser.add_argument("--ply", action="store_true", help="also write STEM_labelled.ply")
    parser.add_argument("--pcd", action="store_true", help="also write STEM_labelled.pcd")
    parser.add_argument("--rrd", action="store_true", help="also write STEM.rrd (needs rerun-sdk)")
    parser.add_argument(
        "--extent", type=float, default=40.0, help="bird's-eye picture: metres from the sensor to each edge"
    )
    parser.add_argument("--size", type=int, default=800, help="bird's-eye picture: pixels per side")
    parser.add_argument("--nuscenes-root", type=Path, metavar="DIR", help="nuScenes data root, for --sample")
    parser.add_argument(
        "--nuscenes-version",
        metavar="V",
        help="its table folder (v1.0-trainval, v1.0-mini, ...; default: the one folder with sample.json)",
    )
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a nuScenes sample: segment its LIDAR_TOP sweep and draw the labels over its camera image "
        "(repeatable; needs --nuscenes-root and nuscenes-devkit)",
    )
    parser.add_argument(
        "--camera",
        action="append",
        metavar="CHANNEL",
        help="camera of the overlay (repeatable; default CAM_FRONT)",
    )
    parser.add_argument(
        "--dot-size", type=float, default=5.0, help="overlay: the devkit's dot size (points²)"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first bad scan")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no line per scan")
    return parser


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _read(job: ScanJob, model: LoadedModel, args: argparse.Namespace) -> npt.NDArray[np.float32]:
    assert job.fmt is not None
    return read_points(
        job.path,
        job.fmt,
        model.manifest.config.input.intensity_max,
        file_intensity_max=args.intensity_max,
        allow_missing_intensity=args.no_intensity,
    )


def _segment_one(
    job: ScanJob, model: LoadedModel, args: argparse.Namespace, nusc: Any, cameras: list[str]
) -> dict[str, Any]:
    """Segment one scan and write its outputs; the summary record. Raises on a bad scan."""
    classes: ClassTable = model.manifest.config.classes
    start = time.perf_counter()
    points = _read(job, model, args)
    read_ms = (time.perf_counter() - start) * 1e3
    result = model.segmenter.segment(points)
    labels = result.labels
    if labels.shape != (points.shape[0],):  # the service's contract; never write a short file
        raise RuntimeError(f"{labels.size} labels for {points.shape[0]} points")
    start = time.perf_counter()
    job.folder.mkdir(parents=True, exist_ok=True)
    written = [job.folder / label_file_name(job.stem, classes)]
    write_label_file(written[0], labels, classes)
    image, entries = birdseye_with_legend(
        points, labels, classes.names, classes.colours, title=job.title, extent=args.extent, size=args.size
    )
    written.append(job.output("_birdseye.png"))
    write_png(written[-1], image)
    for wanted, fmt, suffix in ((args.ply, PointFormat.PLY, ".ply"), (args.pcd, PointFormat.PCD, ".pcd")):
        if wanted:
            written.append(job.output("_labelled" + suffix))
            write_labelled(written[-1], points, labels, classes, fmt)
    if args.rrd:
        written.append(job.output(".rrd"))
        write_recording(written[-1], points, labels, classes, name=job.stem)
    for sample in job.samples:
        for camera in cameras:
            written.append(job.output(f"_{camera}.png"))
            render_camera_overlay(nusc, sample, labels, classes, written[-1], camera, args.dot_size)
    return {
        "scan": str(job.path),
        "format": job.fmt.value if job.fmt else None,
        "points": int(points.shape[0]),
        "points_in_crop": int(result.points_in_crop),
        "classes": {e.name: e.count for e in entries},
        "outputs": [str(p) for p in written],
        "ms": {
            "read": round(read_ms, 3),
            **{k: round(v, 3) for k, v in result.timing_ms.items()},
            "write": round((time.perf_counter() - start) * 1e3, 3),
        },
        **({"samples": [s.token for s in job.samples]} if job.samples else {}),
    }


def _scan_line(job: ScanJob, record: dict[str, Any]) -> str:
    counts: dict[str, int] = record["classes"]
    total = max(record["points"], 1)
    top = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in list(counts.items())[:3])
    ms = sum(v for k, v in record["ms"].items() if k != "write")
    return f"{job.title}: {record['points']:,} points in {ms:.0f} ms ({top})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad flags
    cameras: list[str] = args.camera or ["CAM_FRONT"]
    if not args.scans and not args.sample:
        parser.print_usage(sys.stderr)
        _error("give at least one SCAN or --sample")
        return EXIT_BAD_ARGUMENTS
    if args.sample and args.nuscenes_root is None:
        _error("--sample needs --nuscenes-root DIR")
        return EXIT_BAD_ARGUMENTS
    if args.extent <= 0 or args.size < 16:
        _error(f"--extent must be positive and --size at least 16, got {args.extent} and {args.size}")
        return EXIT_BAD_ARGUMENTS
    if not (args.model / "manifest.json").is_file():
        _error(f"{args.model} has no manifest.json: point --model at a folder written by export/to_trt.py")
        return EXIT_BAD_ARGUMENTS
    if args.rrd:
        try:
            import_rerun()
        except RerunMissingError as exc:
            _error(str(exc))
            return EXIT_BAD_ARGUMENTS

    # Every scan, its format and its outputs, before any work.
    jobs: dict[Path, ScanJob] = {}
    for path in args.scans:
        fmt, problem = format_of(path, args.format)
        if problem is None and not path.is_file():
            problem = f"no such file: {path}" if not path.exists() else f"not a file: {path}"
        jobs.setdefault(path.resolve(), ScanJob(path, fmt, problem=problem))
    nusc = None
    if args.sample:
        try:
            nusc = load_nuscenes(args.nuscenes_root, args.nuscenes_version)
            samples = [resolve_sample(nusc, token, tuple(cameras)) for token in args.sample]
        except (DevkitMissingError, OverlayError) as exc:
            _error(str(exc))
            return EXIT_BAD_ARGUMENTS
        for sample in samples:
            job = jobs.setdefault(sample.lidar.resolve(), ScanJob(sample.lidar, PointFormat.NUSCENES))
            job.fmt, job.problem = PointFormat.NUSCENES, None  # a nuScenes sweep, whatever --format says
            job.samples.append(sample)
    todo = list(jobs.values())
    try:
        plan_outputs(todo, args.out)
    except ValueError as exc:
        _error(str(exc))
        return EXIT_BAD_ARGUMENTS
    suffixes = [*_OUTPUT_SUFFIXES, *(f"_{camera}.png" for camera in cameras)]
    for job in todo:
        clash = [job.output(s) for s in suffixes if job.output(s).resolve() in jobs]
        if clash:
            _error(f"{clash[0]} would overwrite an input scan: choose another --out")
            return EXIT_BAD_ARGUMENTS
    failures: list[dict[str, Any]] = []
    for job in todo:
        if job.problem is not None:
            job.problem = f"{job.path}: {job.problem}"
            _error(job.problem)
            failures.append({"scan": str(job.path), "error": job.problem})
    if failures and args.fail_fast:
        return EXIT_BAD_ARGUMENTS
    todo = [job for job in todo if job.problem is None]

    records: list[dict[str, Any]] = []
    model: LoadedModel | None = None
    started = time.perf_counter()
    if todo:
        try:
            settings = ServeSettings(model=args.model, backend=args.backend, threads=args.threads)
            model = load_model(settings)
        except ModelLoadError as exc:
            _error(f"the model failed to load: {exc}")
            return EXIT_MODEL_FAILED
        classes = model.manifest.config.classes
        if nusc is not None and classes != NUSCENES_LIDARSEG:
            _error(f"--sample draws nuScenes-lidarseg classes; {args.model} has {classes.name}")
            return EXIT_BAD_ARGUMENTS
        backend = model.segmenter.backend
        if not args.quiet:
            loaded = time.perf_counter() - started
            print(
                f"model {model.name} on {backend.name}/{backend.device} (loaded in {loaded:.1f} s): "
                f"{len(todo)} scan(s) -> {args.out}"
            )
        started = time.perf_counter()
        bar = tqdm(
            todo, unit="scan", disable=True if args.quiet else None, file=sys.stderr, dynamic_ncols=True
        )
        for job in bar:
            bar.set_postfix_str(job.path.name, refresh=False)
            try:
                record = _segment_one(job, model, args, nusc, cameras)
            except (PointsError, ServiceError, OverlayError, OSError, ValueError, RuntimeError) as exc:
                message = str(exc) or type(exc).__name__
                if str(job.path) not in message:  # the reader's messages name the file already
                    message = f"{job.path}: {message}"
                tqdm.write(f"error: {message}", file=sys.stderr)
                failures.append({"scan": str(job.path), "error": message})
                if args.fail_fast:
                    break
                continue
            records.append(record)
            if not args.quiet:
                tqdm.write(_scan_line(job, record), file=sys.stdout)
        bar.close()

    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": str(args.model),
        "model_name": model.name if model else None,
        "backend": model.segmenter.backend.name if model else None,
        "scans": records,
        "failed": failures,
    }
    write_atomic(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    seconds = time.perf_counter() - started
    total = len(records) + len(failures)
    print(
        f"segmented {len(records)} of {total} scan(s) in {seconds:.1f} s"
        + (f"; {len(failures)} failed" if failures else "")
        + f"; outputs in {args.out}"
    )
    for failure in failures:
        print(f"  failed: {failure['error']}", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else 0


if __name__ == "__main__":
    sys.exit(main())
