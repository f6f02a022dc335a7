"""python -m serve.label: label whole data sets offline, on this machine or on a Ray cluster.

    python -m serve.label --out runs/preds --nuscenes /data/nuscenes --version v1.0-trainval --split val
    python -m serve.label --out runs/preds --semantickitti /data/semantickitti --sequences 8
    python -m serve.label --out runs/labels --files 'logs/**/*.pcd' --workers 2
    python -m serve.label --out runs/preds --nuscenes /data/nuscenes --engine ray --workers 8 \\
        --ray-address auto --gpus-per-worker 0.25 --backend torch

Inputs (one of):
  --nuscenes ROOT     the LIDAR_TOP key frames of a nuScenes root (every scene of --version, a
                      --split or named --scenes), written in the lidarseg layout: OUT is a root
                      that NuScenes(version, dataroot=OUT) loads with the predictions as its
                      lidarseg labels (OUT/lidarseg/VERSION/TOKEN_lidarseg.bin: raw category
                      indices as category.json numbers them; OUT/VERSION/lidarseg.json and
                      category.json; the other tables and samples/, sweeps/, maps/ linked from
                      ROOT), so the devkit's renderers and this project's training read them;
                      with --layout submission, the lidarseg challenge's layout instead
                      (OUT/lidarseg/SPLIT/TOKEN_lidarseg.bin: class indices 1-16;
                      OUT/SPLIT/submission.json), which the devkit's LidarSegEval scores
  --semantickitti ROOT
                      ROOT/sequences/NN/velodyne/*.bin (every sequence or --sequences) into
                      OUT/sequences/NN/predictions/*.label: one uint32 per point, the raw
                      SemanticKITTI id (learning_map_inv), the semantic-kitti-api's layout
  --files GLOB        a folder or glob ('**' for any depth) of point files in any supported
                      format (seg3d.points: nuScenes .pcd.bin, KITTI .bin, PCD, PLY, or --format),
                      one label file per input below OUT in their folder layout
A model of other classes than the layout's is read in them through the declared class mapping
(seg3d.classes: nuScenes <-> SemanticKITTI by name); a class it leaves out is written as ignore.

Each file is labelled by the service's own path (serve.segmenter: the crop, the backend, each point
outside the crop labelled as its nearest in-crop point): one label per input point, in input
order, the labels POST /segment answers for the same file and model. Every label file is written
atomically (complete or absent). OUT/label-job.json records the model (its manifest's SHA-256) and
the inputs before any label is written; OUT/label-summary.json the counts, points, throughput and
every failed file with its reason, at the end or when interrupted.

--resume continues a job in the same OUT: an output that is there and verifies (one record per
input point, every record a label this layout writes) is skipped, the rest are labelled; a folder
whose job record names another model or other inputs is refused. Without --resume, OUT must be
new or empty.

Engines: --engine local runs --workers processes on this machine, each loading the model once;
--engine ray runs Ray Data (the file list through map_batches with a callable class: each actor
loads the model once) with --workers actors of --cpus-per-worker CPUs and --gpus-per-worker GPUs,
on the cluster at --ray-address or a local one started for the job (pip install -e '.[ray]').
With the same --backend and --threads both write the same bytes.

Exit codes:
  0   the job ran: every file labelled, or the failed ones recorded in the summary
  1   --strict and a file failed (the job stops at the first)
  2   bad arguments: flags, a root that is not the layout it claims, an OUT that is not new
      (or, with --resume, holds another job), nuscenes-devkit missing for --nuscenes
  3   the model failed to load
  4   the engine failed (Ray missing or unreachable, a worker process died)
  130 interrupted (Ctrl-C); the summary says what was done, --resume continues
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import get_args

from tqdm import tqdm

from seg3d.io import file_sha256, remove_stale_temporaries, write_atomic
from seg3d.manifest import ManifestError, load_manifest
from seg3d.overlay import DevkitMissingError
from seg3d.points import PointFormat
from serve.label.engines import EngineError, RayOptions, run_local, run_ray
from serve.label.job import JOB_RECORD, JobRecord, JobSummary, ModelRecord, Tally, read_record
from serve.label.sources import FileSource, LayoutError, NuScenesSource, SemanticKittiSource, Source
from serve.label.tasks import Outcome, Task, TaskResult
from serve.label.worker import WorkerOptions
from serve.model import ModelLoadError
from serve.segment import add_reader_options
from serve.settings import DEFAULT_MODEL_DIR, BackendChoice

__all__ = ["main"]

EXIT_STRICT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_MODEL_FAILED = 3
EXIT_ENGINE_FAILED = 4
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serve.label",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_DIR, help="export folder (default: models/demo)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder: new or empty, or this job's with --resume"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--nuscenes", type=Path, metavar="ROOT", help="a nuScenes root")
    source.add_argument(
        "--semantickitti", type=Path, metavar="ROOT", help="a SemanticKITTI root (holding sequences/)"
    )
    source.add_argument("--files", metavar="GLOB", help="a folder or glob of point files")
    parser.add_argument("--version", help="nuScenes table folder (default: the root's only one)")
    parser.add_argument(
        "--split", help="nuScenes: a devkit split (train, val, mini_val, test, …); default every scene"
    )
    parser.add_argument("--scenes", nargs="+", default=(), metavar="NAME", help="nuScenes: these scenes only")
    parser.add_argument(
        "--layout",
        choices=("lidarseg", "submission"),
        default="lidarseg",
        help="nuScenes output layout (default lidarseg: a root the devkit loads; submission: the "
        "challenge's, needs --split)",
    )
    parser.add_argument(
        "--sequences",
        nargs="+",
        type=int,
        default=(),
        metavar="N",
        help="SemanticKITTI: these sequences only",
    )
    parser.add_argument(
        "--format",
        type=PointFormat,
        choices=list(PointFormat),
        default=None,
        help="--files: the files' point format (default: from each file's name)",
    )
    add_reader_options(parser)
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where to run (default local)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (local) or actors (ray), each loading the model once (default 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="inference threads per worker (default: this machine's CPUs / --workers for local, "
        "--cpus-per-worker for ray); the same value on both engines gives the same bytes",
    )
    parser.add_argument(
        "--backend",
        choices=[b for b in get_args(BackendChoice) if b != "auto"],
        default="onnxruntime",
        help="inference backend of every worker (default onnxruntime; torch for a GPU, tensorrt "
        "where the export has an engine)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (auto, ray://host:10001); default a local one",
    )
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPUs per actor (default 1)")
    parser.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="Ray: GPUs per actor, fractions share one (default 0)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a job in OUT: keep the outputs that verify"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first failed file, exit status 1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _source(args: argparse.Namespace) -> Source:
    if args.nuscenes is not None:
        return NuScenesSource(args.nuscenes, args.version, args.split, tuple(args.scenes), args.layout)
    nuscenes_only = [
        f for f, v in (("--version", args.version), ("--split", args.split), ("--scenes", args.scenes)) if v
    ]
    if nuscenes_only:
        raise LayoutError(f"{', '.join(nuscenes_only)} are for --nuscenes")
    if args.semantickitti is not None:
        return SemanticKittiSource(args.semantickitti, tuple(args.sequences))
    if args.sequences:
        raise LayoutError("--sequences is for --semantickitti")
    return FileSource(args.files, args.format)


def _check_out(out: Path, record: JobRecord, resume: bool, source: Source) -> None:
    """OUT must be new or empty, or (with --resume) hold this very job."""
    if isinstance(source, NuScenesSource) and out.resolve() == source.root.resolve():
        raise LayoutError(f"--out {out} is the nuScenes root itself: its tables and labels would be replaced")
    earlier = read_record(out)
    if earlier is None:
        if out.is_dir() and any(out.iterdir()) and not resume:
            raise LayoutError(f"--out {out} is not empty and holds no label job: choose a new folder")
        return
    if not resume:
        raise LayoutError(
            f"--out {out} holds an earlier label job: give --resume to continue it, or a new folder"
        )
    differs = record.mismatch(earlier)
    if differs:
        raise LayoutError(f"--out {out} holds another job; its {'; '.join(differs)}")


def _remove_stale_temporaries(out: Path, tasks: Sequence[Task]) -> None:
    """Remove what a killed run left of the label files it was writing (`seg3d.io.atomic_writer`'s
    ``.NAME.*.tmp`` beside each output): never a label file, only its unfinished copy."""
    names: dict[Path, set[str]] = {}
    for task in tasks:
        output = out / task.output
        names.setdefault(output.parent, set()).add(output.name)
    for folder, outputs in names.items():
        remove_stale_temporaries(folder, outputs)


def _results(args: argparse.Namespace, tasks: list[Task], options: WorkerOptions) -> Iterator[TaskResult]:
    if args.engine == "ray":
        ray = RayOptions(args.ray_address, args.workers, args.cpus_per_worker, args.gpus_per_worker)
        return run_ray(tasks, options, ray)
    return run_local(tasks, options, args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        print("error: --workers and --threads must be at least 1", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    try:
        manifest = load_manifest(args.model)
    except (FileNotFoundError, ManifestError, ValueError) as exc:
        print(f"error: --model {args.model}: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    classes = manifest.config.classes
    try:
        source = _source(args)
        # never read a label file as an input: a point-file glob may reach into OUT
        out = args.out.resolve()
        tasks = [t for t in source.tasks(classes) if not Path(t.source).resolve().is_relative_to(out)]
        if not tasks:
            raise LayoutError("no input to label outside --out")
        encoding = source.encoding(classes)
        record = JobRecord(
            model=ModelRecord(
                folder=str(args.model),
                name=manifest.model.name,
                manifest_sha256=file_sha256(Path(args.model) / "manifest.json"),
                classes=classes.name,
            ),
            inputs={
                **source.describe(),
                "intensity_max": args.intensity_max,
                "no_intensity": args.no_intensity,
            },
            encoding=encoding.encoding.value,
        )
        _check_out(args.out, record, args.resume, source)
    except (LayoutError, DevkitMissingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if args.threads is not None:
        threads = args.threads
    elif args.engine == "ray":
        threads = max(1, int(args.cpus_per_worker))
    else:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / JOB_RECORD, record.model_dump_json(indent=2) + "\n")
    if args.resume:
        _remove_stale_temporaries(args.out, tasks)
    options = WorkerOptions(
        args.model,
        args.out,
        encoding,
        args.backend,
        threads,
        args.resume,
        args.intensity_max,
        args.no_intensity,
    )
    summary = JobSummary(
        job=record, engine=args.engine, workers=args.workers, threads_per_worker=threads, inputs=len(tasks)
    )
    tally = Tally(summary)
    interrupted, code = False, 0
    bar = tqdm(total=len(tasks), unit="scan", disable=args.no_progress, file=sys.stderr)
    try:
        for result in _results(args, tasks, options):
            tally.add(result)
            bar.update()
            bar.set_postfix(failed=summary.failed, refresh=False)
            if result.outcome is Outcome.FAILED:
                named = (
                    result.reason if result.source in result.reason else f"{result.source}: {result.reason}"
                )
                tqdm.write(f"failed: {named}", file=sys.stderr)
                if args.strict:
                    code = EXIT_STRICT_FAILED
                    break
    except ModelLoadError as exc:
        print(f"error: the model failed to load: {exc}", file=sys.stderr)
        code = EXIT_MODEL_FAILED
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_ENGINE_FAILED
    except KeyboardInterrupt:
        interrupted, code = True, EXIT_INTERRUPTED
    finally:
        bar.close()
    source.finalize(args.out)
    path = tally.close(interrupted).write(args.out)
    print(
        f"{summary.written} written, {summary.skipped} skipped, {summary.failed} failed of {len(tasks)} "
        f"({summary.points:,} points, {summary.scans_per_s} scans/s); summary: {path}",
        file=sys.stderr,
    )
    return code
