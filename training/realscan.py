"""``python -m training.realscan``: how a model does on real, labelled LiDAR scans.

    python -m training.realscan --model models/demo
    python -m training.realscan --model best.pt --semantickitti ~/semantickitti --sequences 8

The model (an export folder, run as the service runs it, or a checkpoint of any mode) labels every
point of each scan. Two yardsticks, each optional:

- **SemanticKITTI** (``--semantickitti ROOT``, ``sequences/NN/velodyne`` + ``labels``): the ground
  truth is read in the model's classes through the declared class mapping
  (`seg3d.classes.class_mapping`, printed with the figures); points of classes the mapping leaves
  out are not scored. Per-class IoU and accuracy (recall), point accuracy, and the mIoU over the
  mapped classes that occur in the ground truth or the predictions (`training.metrics`' rule: a
  mapped class the model predicts on a scan that has none scores 0).
- **KITTI object frames** (``--kitti-objects DIR``, ``velodyne`` + ``calib`` + ``label_2``): the share
  of the points inside each kind of ground-truth box (Car, Truck, Pedestrian) that the model gives
  that kind's class; the same for SqueezeSeg's KITTI frames (``--squeezeseg FILE.npy``), whose
  per-point labels its authors made from KITTI's 3D boxes (front 90° of the scan only).

Without ``--semantickitti``, ``--kitti-objects`` or ``--squeezeseg``, all three run on the shared
real scans (``$SEG3D_REAL_DATA`` or ``../shared/data/real``). ``--json FILE`` writes the figures;
``--pictures DIR`` writes bird's-eye PNGs (`seg3d.birdseye`) of the first labelled SemanticKITTI scan
as the model labels it and as its mapped ground truth, and of a real nuScenes sweep (``--nuscenes
SWEEP``, default the first shared one) as the model labels it.
Every point of a scan gets a label (points outside the model's crop take their nearest in-crop
label, as in the service), and scores count every point.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from seg3d.birdseye import birdseye, write_png
from seg3d.classes import SEMANTICKITTI, ClassMapping, ClassTable, class_mapping
from seg3d.config import ModelConfig
from seg3d.helptext import plain
from seg3d.io import write_atomic
from seg3d.points import PointFormat, read_points, to_model_intensity
from seg3d.scans import real_data_dir
from training.data.kitti_objects import KittiCalibration, object_frames, points_in_box, read_boxes
from training.data.semantickitti import SemanticKittiLabelMap
from training.metrics import ConfusionMatrix

__all__ = [
    "BOX_CLASSES",
    "SQUEEZESEG_KINDS",
    "BoxShare",
    "Labeller",
    "SemanticKittiScores",
    "birdseye_pictures",
    "box_shares",
    "card_section",
    "load_labeller",
    "main",
    "real_scan_figures",
    "semantickitti_scores",
    "shared_nuscenes_sweep",
    "squeezeseg_shares",
]

#: ``(N, 4)`` float32 points (x, y, z, intensity in the model's scale) → ``(N,)`` class ids.
Labeller = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.integer[Any]]]

#: KITTI box kinds scored by `box_shares`, and the nuScenes-lidarseg class each one's points should get.
BOX_CLASSES: dict[str, str] = {"Car": "car", "Truck": "truck", "Pedestrian": "pedestrian"}
#: SqueezeSeg's point labels (made by its authors from KITTI's 3D boxes) → the KITTI box kind.
SQUEEZESEG_KINDS: dict[int, str] = {1: "Car", 2: "Pedestrian"}


@dataclass(frozen=True)
class SemanticKittiScores:
    """Figures over the scored points (ground truth mapped to a class the model has)."""

    scans: tuple[str, ...]
    mapping: ClassMapping
    classes: tuple[str, ...]  # the mapping's target classes, in model order
    iou: tuple[float, ...]  # NaN: the class is absent from the ground truth and the predictions
    accuracy: tuple[float, ...]  # recall per class; NaN where absent
    points: tuple[int, ...]  # ground-truth points per class
    point_accuracy: float
    scored_points: int
    total_points: int

    @property
    def miou(self) -> float:
        """Mean IoU over the mapped classes present in the ground truth or the predictions."""
        present = [v for v in self.iou if not math.isnan(v)]
        return float(np.mean(present)) if present else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "scans": list(self.scans),
            "mapping": self.mapping.describe(),
            "miou": _none(self.miou),
            "point_accuracy": _none(self.point_accuracy),
            "scored_points": self.scored_points,
            "total_points": self.total_points,
            "classes": {
                name: {"iou": _none(i), "accuracy": _none(a), "points": n}
                for name, i, a, n in zip(self.classes, self.iou, self.accuracy, self.points, strict=True)
            },
        }


@dataclass(frozen=True)
class BoxShare:
    """Points inside the ground-truth boxes of one kind, and how many got that kind's class."""

    kind: str
    target: str
    boxes: int | None  # None: the source gives per-point box labels, not boxes
    points: int
    correct: int
    frames: tuple[str, ...]
    source: str  # KITTI object boxes, or SqueezeSeg labels

    @property
    def share(self) -> float:
        return self.correct / self.points if self.points else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "class": self.target,
            "boxes": self.boxes,
            "points": self.points,
            "correct": self.correct,
            "share": _none(self.share),
            "frames": list(self.frames),
        }


@dataclass
class _Tally:
    """Running counts of one box kind over the frames of a source."""

    target: int  # the model class the kind's points should get
    boxes: int = 0
    points: int = 0
    correct: int = 0
    frames: list[str] = field(default_factory=list)

    def add(self, inside: npt.NDArray[np.bool_], labels: npt.NDArray[np.int64], frame: str) -> None:
        self.points += int(inside.sum())
        self.correct += int((labels[inside] == self.target).sum())
        if frame not in self.frames:
            self.frames.append(frame)

    def share(self, kind: str, model_classes: ClassTable, source: str, boxes: bool = True) -> BoxShare:
        name = model_classes.names[self.target]
        frames = tuple(self.frames)
        return BoxShare(kind, name, self.boxes if boxes else None, self.points, self.correct, frames, source)


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def _labelled_scans(root: Path, sequences: Sequence[int] | None = None) -> list[tuple[Path, Path]]:
    """``(scan, label)`` of every labelled scan of ``root``'s sequences (default: every sequence with a
    ``labels/`` folder), in order; an unlabelled scan has nothing to score or show.

    Raises:
        FileNotFoundError: no ``sequences/``, a sequence without ``velodyne/``, or no labelled scan.
    """
    if not (root / "sequences").is_dir():
        raise FileNotFoundError(f"{root}: no sequences/ folder (expected a SemanticKITTI root)")
    folders = (
        [root / "sequences" / f"{s:02d}" for s in sequences]
        if sequences
        else sorted(p for p in (root / "sequences").iterdir() if (p / "labels").is_dir())
    )
    pairs = []
    for folder in folders:
        if not (folder / "velodyne").is_dir():
            raise FileNotFoundError(f"{folder}: no velodyne/ folder")
        for scan in sorted((folder / "velodyne").glob("*.bin")):
            label = folder / "labels" / f"{scan.stem}.label"
            if label.is_file():
                pairs.append((scan, label))
    if not pairs:
        raise FileNotFoundError(f"{root}: no scan with a labels/*.label file in {[f.name for f in folders]}")
    return pairs


def semantickitti_scores(
    labeller: Labeller,
    root: str | Path,
    model_classes: ClassTable,
    intensity_max: float,
    sequences: Sequence[int] | None = None,
    label_config: str | Path | None = None,
) -> SemanticKittiScores:
    """Score ``labeller`` on every labelled scan of ``root``'s sequences (all with labels by default).

    Args:
        labeller: the model (`load_labeller`), whose outputs index ``model_classes``.
        root: the folder holding ``sequences/``.
        model_classes: the model's class table; the ground truth is mapped into it.
        intensity_max: the model's intensity scale (remission 0–1 is converted to it).
        sequences: sequence numbers; default every sequence with a ``labels/`` folder.
        label_config: ``semantic-kitti.yaml``; default ``root/semantic-kitti.yaml``.

    Raises:
        FileNotFoundError: no ``sequences/``, no label config, or no labelled scan.
        ValueError: no mapping from SemanticKITTI's classes to the model's.
    """
    root = Path(root)
    label_map = SemanticKittiLabelMap.from_yaml(label_config or root / "semantic-kitti.yaml")
    mapping = class_mapping(SEMANTICKITTI, model_classes)
    pairs = _labelled_scans(root, sequences)
    k = len(model_classes)
    matrix = ConfusionMatrix(k)
    total = 0
    for scan, label in pairs:
        points = read_points(scan, PointFormat.KITTI, intensity_max)
        raw = np.fromfile(label, dtype=np.uint32)
        if raw.shape[0] != points.shape[0]:
            raise ValueError(f"{label}: {raw.shape[0]} labels for {points.shape[0]} points in {scan}")
        truth = mapping.apply(label_map.to_train(raw))
        predicted = np.asarray(labeller(points), dtype=np.int64)
        if predicted.shape != truth.shape:
            raise ValueError(
                f"the model gave {predicted.shape[0]} labels for {truth.shape[0]} points of {scan}"
            )
        matrix.update(torch.from_numpy(predicted), torch.from_numpy(truth))
        total += int(points.shape[0])
    # IoU by `ConfusionMatrix.report`'s rule (predictions count on scored points only); the
    # mapping's targets are the classes scored, in model order.
    report = matrix.report(model_classes.names)
    index = [model_classes.names.index(n) for n in mapping.targets]
    counts = matrix.counts.double()
    truth_points = counts.sum(1)
    accuracy = [float(counts[c, c] / truth_points[c]) if truth_points[c] > 0 else float("nan") for c in index]
    return SemanticKittiScores(
        scans=tuple(f"{s.parent.parent.name}/{s.stem}" for s, _ in pairs),
        mapping=mapping,
        classes=mapping.targets,
        iou=tuple(report.iou[c - 1] for c in index),
        accuracy=tuple(accuracy),
        points=tuple(int(truth_points[c]) for c in index),
        point_accuracy=report.accuracy,
        scored_points=int(counts[1:].sum()),
        total_points=total,
    )


def box_shares(
    labeller: Labeller, root: str | Path, model_classes: ClassTable, intensity_max: float
) -> list[BoxShare]:
    """For each kind of `BOX_CLASSES` with a class in ``model_classes``: the points inside its
    ground-truth boxes over every frame of ``root`` (`training.data.kitti_objects.object_frames`)
    and the share the model labels with that class. A point inside two boxes counts for each.

    Raises:
        FileNotFoundError: ``root`` is not a KITTI object folder, or has no complete frame.
    """
    frames = object_frames(root)
    if not frames:
        raise FileNotFoundError(f"{root}: no frame with velodyne/, calib/ and label_2/ files")
    tallies = {
        kind: _Tally(model_classes.names.index(target))
        for kind, target in BOX_CLASSES.items()
        if target in model_classes.names
    }
    for frame in frames:
        frame_boxes = [b for b in read_boxes(frame.labels) if b.kind in tallies]
        if not frame_boxes:
            continue
        cloud = read_points(frame.scan, PointFormat.KITTI, intensity_max)
        rect = KittiCalibration.read(frame.calibration).velo_to_rect(cloud[:, :3])
        labels = np.asarray(labeller(cloud), dtype=np.int64)
        for box in frame_boxes:
            tallies[box.kind].boxes += 1
            tallies[box.kind].add(points_in_box(rect, box), labels, frame.name)
    return [t.share(kind, model_classes, "KITTI object boxes") for kind, t in tallies.items()]


def squeezeseg_shares(
    labeller: Labeller, files: Sequence[Path], model_classes: ClassTable, intensity_max: float
) -> list[BoxShare]:
    """`box_shares` for SqueezeSeg's KITTI frames: ``(64, 512, 6)`` float32 front-view projections
    (x, y, z, remission 0–1, range, label) whose labels mark the points inside KITTI's 3D boxes
    (1 car, 2 pedestrian, 3 cyclist). The cells with a return (range > 0) are the cloud; the model
    sees only that front 90° of the scan.

    Raises:
        ValueError: an array of another shape.
    """
    tallies = {
        value: _Tally(model_classes.names.index(BOX_CLASSES[kind]))
        for value, kind in SQUEEZESEG_KINDS.items()
        if BOX_CLASSES[kind] in model_classes.names
    }
    for path in files:
        grid = np.load(path)
        if grid.ndim != 3 or grid.shape[2] != 6:
            raise ValueError(f"{path}: shape {grid.shape}, a SqueezeSeg frame is (H, W, 6)")
        cells = grid[grid[..., 4] > 0]
        cloud = np.ascontiguousarray(cells[:, :4], dtype=np.float32)
        cloud[:, 3] = to_model_intensity(cloud[:, 3], 1.0, intensity_max)
        labels = np.asarray(labeller(cloud), dtype=np.int64)
        for value, tally in tallies.items():
            inside = cells[:, 5] == value
            if inside.any():
                tally.add(inside, labels, path.stem)
    return [
        t.share(SQUEEZESEG_KINDS[value], model_classes, "SqueezeSeg labels", boxes=False)
        for value, t in tallies.items()
    ]


def load_labeller(model: str | Path, backend: str = "auto") -> tuple[Labeller, ModelConfig, str]:
    """The model as a labeller, with its config and a one-line description.

    An export folder runs exactly as the service runs it (`serve.model.load_model`: verified
    manifest, ``backend``, nearest-in-crop fill); a checkpoint file runs its 3D encoder with the
    ``torch`` backend through the same `serve.segmenter.Segmenter`.
    """
    from serve.backends import TorchBackend
    from serve.model import load_model
    from serve.segmenter import Segmenter
    from serve.settings import ServeSettings

    path = Path(model)
    if path.is_dir():
        loaded = load_model(ServeSettings(model=path, backend=backend))
        segmenter = loaded.segmenter
        what = f"export {path} (model {loaded.name}, backend {segmenter.backend.name})"
    else:
        from seg3d.checkpoint import load_checkpoint, load_encoder

        checkpoint = load_checkpoint(path)
        config = checkpoint.model_config
        encoder = load_encoder(checkpoint, "table", fold=True)
        segmenter = Segmenter(config, TorchBackend(encoder, config, "cpu", "torch"), max_points=10_000_000)
        what = f"checkpoint {path} (mode {checkpoint.mode}, config {config.name})"
    return (lambda points: segmenter.segment(points).labels), segmenter.config, what


def birdseye_pictures(
    model: str | Path,
    out: str | Path,
    semantickitti: Path | None,
    nuscenes_sweep: Path | None,
    backend: str = "auto",
    label_config: Path | None = None,
    sequences: Sequence[int] | None = None,
) -> list[Path]:
    """Write bird's-eye PNGs of real scans labelled by ``model`` into ``out``; returns their paths.

    ``birdseye-semantickitti.png`` and ``birdseye-semantickitti-truth.png``: the first labelled scan
    of ``semantickitti`` (of ``sequences``, read as `semantickitti_scores` reads them) as the model
    labels it and as its ground truth reads in the model's classes (unmapped classes in the ignore
    colour); ``birdseye-nuscenes.png``: ``nuscenes_sweep`` as the model labels it. KITTI's frame has
    x forward (forward is to the right), nuScenes' LIDAR_TOP y (up).
    """
    labeller, config, _ = load_labeller(model, backend)
    classes, intensity_max = config.classes, config.input.intensity_max
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if semantickitti is not None:
        scan, label = _labelled_scans(Path(semantickitti), sequences)[0]
        label_map = SemanticKittiLabelMap.from_yaml(
            label_config or Path(semantickitti) / "semantic-kitti.yaml"
        )
        points = read_points(scan, PointFormat.KITTI, intensity_max)
        truth = class_mapping(SEMANTICKITTI, classes).apply(
            label_map.to_train(np.fromfile(label, dtype=np.uint32))
        )
        for name, labels in (("semantickitti", labeller(points)), ("semantickitti-truth", truth)):
            write_png(out / f"birdseye-{name}.png", birdseye(points, np.asarray(labels), classes.colours))
            written.append(out / f"birdseye-{name}.png")
    if nuscenes_sweep is not None:
        points = read_points(nuscenes_sweep, PointFormat.NUSCENES, intensity_max)
        write_png(
            out / "birdseye-nuscenes.png", birdseye(points, np.asarray(labeller(points)), classes.colours)
        )
        written.append(out / "birdseye-nuscenes.png")
    return written


def real_scan_figures(
    model: str | Path,
    semantickitti: Path | None,
    objects: Path | None,
    backend: str = "auto",
    sequences: Sequence[int] | None = None,
    label_config: Path | None = None,
    squeezeseg: Sequence[Path] = (),
) -> dict[str, Any]:
    """Both yardsticks (each where its root is given) as JSON-ready figures: what ``--json`` writes
    and a model card quotes (`card_section`)."""
    labeller, config, what = load_labeller(model, backend)
    figures: dict[str, Any] = {"model": what}
    if semantickitti is not None:
        figures["semantickitti"] = semantickitti_scores(
            labeller, semantickitti, config.classes, config.input.intensity_max, sequences, label_config
        ).as_dict()
    shares = []
    if objects is not None:
        shares += box_shares(labeller, objects, config.classes, config.input.intensity_max)
    if squeezeseg:
        shares += squeezeseg_shares(labeller, squeezeseg, config.classes, config.input.intensity_max)
    if shares:
        figures["kitti_boxes"] = [s.as_dict() for s in shares]
    return figures


def card_section(figures: dict[str, Any]) -> str:
    """The "Real scans" section of a model card from `real_scan_figures`' output."""
    lines = ["## Real scans (`python -m training.realscan`)", ""]
    sk = figures.get("semantickitti")
    if sk:
        lines += [
            f"SemanticKITTI {', '.join(sk['scans'])} ({sk['scored_points']:,} of {sk['total_points']:,} "
            f"points scored), ground truth read in the model's classes: "
            f"**mIoU {_pct_or_dash(sk['miou'])} %, point accuracy {_pct_or_dash(sk['point_accuracy'])} %**.",
            "",
            "| class | from SemanticKITTI | IoU % | accuracy % | points |",
            "|---|---|---:|---:|---:|",
        ]
        sources = {line.split(" ← ")[0]: line.split(" ← ")[1] for line in sk["mapping"] if " ← " in line}
        for name, c in sk["classes"].items():
            lines.append(
                f"| {name} | {sources.get(name, '')} | {_pct_or_dash(c['iou'])} | "
                f"{_pct_or_dash(c['accuracy'])} | {c['points']:,} |"
            )
        ignored = [line for line in sk["mapping"] if line.startswith("ignored: ")]
        if ignored:
            lines += [
                "",
                f"Not scored ({ignored[0][len('ignored: ') :]}): no class of the model means the same.",
            ]
    boxes = figures.get("kitti_boxes")
    if boxes:
        lines += [
            "",
            "KITTI frames: points inside ground-truth 3D boxes given the box's class (object frames: "
            "the boxes of label_2; SqueezeSeg: its per-point labels made from KITTI's boxes).",
            "",
            "| source | box | class | boxes | points | share % |",
            "|---|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {b['source']} | {b['kind']} | {b['class']} | "
            f"{'—' if b['boxes'] is None else b['boxes']} | {b['points']:,} | {_pct_or_dash(b['share'])} |"
            for b in boxes
        ]
    return "\n".join(lines) + "\n"


def _pct_or_dash(value: float | None) -> str:
    return "—" if value is None else _pct(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.realscan",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="an export folder (manifest.json) or a checkpoint file"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        help="backend for an export folder, as `python -m serve --backend` (default auto: the fastest)",
    )
    parser.add_argument(
        "--semantickitti", type=Path, help="a SemanticKITTI root (sequences/, semantic-kitti.yaml)"
    )
    parser.add_argument(
        "--sequences", type=int, nargs="+", help="SemanticKITTI sequences (default: every one with labels/)"
    )
    parser.add_argument(
        "--label-config", type=Path, help="semantic-kitti.yaml (default ROOT/semantic-kitti.yaml)"
    )
    parser.add_argument(
        "--kitti-objects", type=Path, help="a KITTI object folder (velodyne/, calib/, label_2/)"
    )
    parser.add_argument(
        "--squeezeseg",
        type=Path,
        nargs="+",
        help="SqueezeSeg KITTI frames (.npy, 64x512x6 with per-point labels made from KITTI's 3D boxes)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--pictures",
        type=Path,
        help="also write bird's-eye PNGs of a SemanticKITTI scan (labelled and ground truth) and a "
        "nuScenes sweep into this folder",
    )
    parser.add_argument(
        "--nuscenes",
        type=Path,
        help="the nuScenes sweep (.pcd.bin) of --pictures (default: the first shared real sweep)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    semantickitti, objects, squeezeseg = args.semantickitti, args.kitti_objects, list(args.squeezeseg or [])
    if semantickitti is None and objects is None and not squeezeseg:
        shared = real_data_dir()
        if shared is None:
            print(
                "error: give --semantickitti, --kitti-objects or --squeezeseg (no shared real scans "
                "found: set SEG3D_REAL_DATA)",
                file=sys.stderr,
            )
            return 2
        semantickitti, objects = shared / "semantickitti", shared / "kitti" / "object"
        squeezeseg = sorted((shared / "kitti_squeezeseg").glob("*.npy"))
    try:
        figures = real_scan_figures(
            args.model, semantickitti, objects, args.backend, args.sequences, args.label_config, squeezeseg
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except Exception as exc:  # the model did not load: one line naming it and the cause
        print(f"error: {args.model}: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"model: {figures['model']}\n")
    print(card_section(figures))
    if args.json:
        write_atomic(args.json, json.dumps(figures, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.pictures:
        sweep = args.nuscenes or shared_nuscenes_sweep()
        try:
            pictures = birdseye_pictures(
                args.model,
                args.pictures,
                semantickitti,
                sweep,
                args.backend,
                args.label_config,
                args.sequences,
            )
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(str(p) for p in pictures))
    return 0


def shared_nuscenes_sweep() -> Path | None:
    """The first real nuScenes sweep of the shared real scans, if there are any."""
    shared = real_data_dir()
    sweeps = sorted((shared / "nuscenes" / "samples" / "LIDAR_TOP").glob("*.pcd.bin")) if shared else []
    return sweeps[0] if sweeps else None


if __name__ == "__main__":
    sys.exit(main())
