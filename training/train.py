"""``python -m training.train``: train a 2DDATA / 2DPASS / 3D-only model from a YAML config.

Single process::

    python -m training.train --config demo --data-root runs/demo-data --out runs/demo-train --max-steps 40

Several processes (DistributedDataParallel; NCCL on GPUs, gloo on CPU)::

    torchrun --nproc_per_node 4 -m training.train --config nuscenes_2ddata \
        --data-root /data/nuscenes --out runs/x

Exit codes: 0 done, 2 bad arguments or data (the message says what), 130 interrupted (the last
checkpoint is complete; continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seg3d.helptext import plain
from training.config import TRAINING_CONFIG_DIR, load_train_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    bundled = ", ".join(sorted(p.stem for p in TRAINING_CONFIG_DIR.glob("*.yaml")))
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=plain(__doc__, first_paragraph=True),
        epilog="Data: trains on the config's training split (nuScenes: data.nuscenes.split of the "
        "data.nuscenes.version table folder; train / v1.0-trainval in the bundled configs) and validates on "
        "data.val_split (val) every loop.val_every epochs and once more at the end. "
        "Checkpoints: OUT/last.pt (every loop.checkpoint_every steps, each validation, the end) and "
        "OUT/best.pt (best validation mIoU; always written by the end of a run); both load with "
        "training.evaluate and export/to_trt.py --checkpoint. Logs: OUT/train_log.jsonl (one line per "
        "step), OUT/config.yaml, OUT/tensorboard. Exit codes: 0 done, 2 bad arguments or data (the message "
        "says what and how to fix it), 130 interrupted (continue with --resume).",
    )
    parser.add_argument(
        "--config", required=True, help=f"training config: a YAML path or a bundled name ({bundled})"
    )
    parser.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="data set root: nuScenes layout (holding the config's data.nuscenes.version folder, e.g. "
        "from python -m training.data.synthetic) or SemanticKITTI",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="run folder for checkpoints, config and logs; must not hold a run unless --resume",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimiser steps in total, validating and writing best.pt and last.pt at "
        "the end; a per-step cosine schedule spans it (default: the config's loop.max_steps, else "
        "loop.epochs epochs; demo: 600 steps)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (default: start a new run)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device; a bare 'cuda' means cuda:<local rank> under torchrun, cuda:0 otherwise "
        "(default: cuda:<local rank> if available, else cpu)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "spconv", "table"),
        default=None,
        help="sparse-conv backend for training; both share one state dict. auto: spconv on a CUDA "
        "device when a CUDA build of spconv (spconv-cu126) imports, else table with present taps; "
        "spconv: CUDA only; the choice is printed at start (default: the config's loop.backend, auto)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: a bar over the run's steps)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        print("error: --max-steps must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_train_config(args.config)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from training.loop import train

    try:
        result = train(
            config,
            args.data_root,
            args.out,
            max_steps=args.max_steps,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
            backend=args.backend,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted; continue with --resume (last complete checkpoint in {args.out})", file=sys.stderr
        )
        return 130
    print(
        f"done: {result.steps} steps, {result.epochs_done} epochs, last loss {result.last_loss:.4f}, "
        f"best val mIoU {result.best_miou:.4f}, skipped steps {result.skipped_steps}; "
        f"checkpoints in {result.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
