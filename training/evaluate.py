"""``python -m training.evaluate``: per-class IoU of a checkpoint's 3D encoder on a split.

    python -m training.evaluate --checkpoint runs/demo-train/best.pt --data-root runs/demo-data

The split defaults to the checkpoint's validation split (its config's ``data.val_split``).
Prints a Markdown IoU table with the mIoU, the mIoU of the interest classes (the classes of the
Local Object Branch's boxes) and of the others, for the crop (2DPASS's metric) and the full scan
(points outside the crop take their nearest in-crop label, as the service does). ``--json`` writes
the same figures; ``--submission DIR`` writes the nuScenes-lidarseg submission layout:
``DIR/lidarseg/<split>/<lidar token>_lidarseg.bin`` (uint8 labels 1–16, one per file point) and
``DIR/<split>/submission.json``. The full scan is evaluated on any labelled split of either data
set (`training.data.protocol.EvaluationDataset`); ``--submission`` is for nuScenes only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg3d.checkpoint import CheckpointError, load_checkpoint, load_encoder
from seg3d.classes import nuscenes_train_id
from seg3d.helptext import plain
from seg3d.io import write_atomic
from training.config import TrainConfig
from training.data.nuscenes import version_splits
from training.data.protocol import EvaluationDataset
from training.datasets import build_dataset
from training.evaluation import evaluate_dataset

__all__ = ["interest_groups", "main"]


def interest_groups(config: TrainConfig) -> dict[str, list[str]]:
    """Training classes of the interest categories, and the other classes (nuScenes only)."""
    names = config.model.class_names
    interest = sorted(
        {names[nuscenes_train_id(c)] for c in config.data.nuscenes.interest_classes} - {names[0]}
    )
    return {"interest": interest, "other": [n for n in names[1:] if n not in interest]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=plain(__doc__, first_paragraph=True),
        epilog="Prints per-class IoU tables for the crop (2DPASS's metric) and the full scan. Exit codes: "
        "0 done, 2 bad arguments, checkpoint or data (the message says what and how to fix it).",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a checkpoint written by training.train (OUT/best.pt or OUT/last.pt); its config says the "
        "model, the data set and its version",
    )
    parser.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="data set root, of the data set and (nuScenes) table version the checkpoint was trained "
        "on (its config's data.nuscenes.version)",
    )
    parser.add_argument(
        "--split",
        default=None,
        help="split to evaluate: a devkit split of the checkpoint's version (v1.0-trainval: train, val; "
        "v1.0-mini: mini_train, mini_val; v1.0-test: test, unlabelled: submission only) or train/val "
        "(SemanticKITTI). Default: the checkpoint's validation split (its config's data.val_split: "
        "val for the bundled nuScenes configs and the demo)",
    )
    parser.add_argument(
        "--tta",
        type=int,
        default=1,
        help="test-time votes (random yaw + translation; default 1: no augmentation)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures as JSON here (default: printed only)"
    )
    parser.add_argument(
        "--submission",
        type=Path,
        default=None,
        help="write the nuScenes-lidarseg submission layout here (nuScenes only; default: none)",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="evaluate the first N samples only (default: every sample of the split)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.tta < 1:
        print("error: --tta must be at least 1", file=sys.stderr)
        return 2
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        if "config" not in checkpoint.training:
            raise CheckpointError(
                f"{args.checkpoint}: no training config inside (not written by training.train)"
            )
        config = TrainConfig.model_validate(checkpoint.training["config"])
        encoder = load_encoder(checkpoint, backend="table", device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.split = args.split or config.data.val_split
    try:
        dataset = build_dataset(config, args.data_root, args.split, training=False)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if config.data.dataset == "nuscenes":
            print(
                f"note: {args.checkpoint} was trained on nuScenes {config.data.nuscenes.version} "
                f"(config {config.name!r}); evaluation reads that version's tables, so --data-root must "
                f"hold {config.data.nuscenes.version}/ and --split be one of its splits "
                f"({', '.join(version_splits(config.data.nuscenes.version))})",
                file=sys.stderr,
            )
        return 2
    nuscenes = config.data.dataset == "nuscenes"
    submission = (
        _submission_writer(args.submission, args.split, dataset) if args.submission and nuscenes else None
    )
    if args.submission and not nuscenes:
        print("error: --submission is for nuScenes", file=sys.stderr)
        return 2
    labelled = args.split != "test"
    evaluation = evaluate_dataset(
        encoder,
        dataset,
        config.model,
        args.device,
        votes=args.tta,
        max_samples=args.max_samples,
        full_scan=labelled,
        on_prediction=submission,
    )
    groups = interest_groups(config) if nuscenes else {}
    if labelled:
        print(f"## {args.checkpoint} on {args.split} ({len(dataset)} samples, {args.tta} vote(s))\n")
        print("### Crop (2DPASS metric)\n")
        print(evaluation.crop.table(groups))
        if evaluation.full_scan is not None:
            print("\n### Full scan (out-of-crop points take the nearest in-crop label)\n")
            print(evaluation.full_scan.table(groups))
    if args.json:
        figures = {
            "checkpoint": str(args.checkpoint),
            "split": args.split,
            "votes": args.tta,
            "crop": {
                **evaluation.crop.as_dict(),
                **{f"miou_{g}": evaluation.crop.group_miou(n) for g, n in groups.items()},
            },
        }
        if evaluation.full_scan is not None:
            figures["full_scan"] = {
                **evaluation.full_scan.as_dict(),
                **{f"miou_{g}": evaluation.full_scan.group_miou(n) for g, n in groups.items()},
            }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, json.dumps(figures, indent=2))
    if args.submission:
        meta = {
            "use_camera": False,
            "use_lidar": True,
            "use_radar": False,
            "use_map": False,
            "use_external": False,
        }
        (args.submission / args.split).mkdir(parents=True, exist_ok=True)
        write_atomic(args.submission / args.split / "submission.json", json.dumps({"meta": meta}, indent=2))
        print(f"submission written to {args.submission}")
    return 0


def _submission_writer(
    root: Path, split: str, dataset: EvaluationDataset
) -> Callable[[int, np.ndarray], None]:
    """Writes each sample's full-scan labels (1–16: predictions never take the ignore class)."""
    folder = root / "lidarseg" / split
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int, labels: np.ndarray) -> None:
        write_atomic(folder / dataset.submission_name(index), labels.astype(np.uint8).tobytes())

    return write


if __name__ == "__main__":
    raise SystemExit(main())
