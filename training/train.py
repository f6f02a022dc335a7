"""``python -m training.train``: train a 2DDATA / 2DPASS / 3D-only model from a YAML config.

Single process::

    python -m training.train --config demo --data-root data/synthetic --out runs/demo

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
        epilog="Checkpoints: OUT/last.pt (every loop.checkpoint_every steps, each validation, the end) and "
        "OUT/best.pt (best validation mIoU); both load with export/to_trt.py --checkpoint. "
        "TensorBoard logs: OUT/tensorboard.",
    )
    parser.add_argument(
        "--config", required=True, help=f"training config: a YAML path or a bundled name ({bundled})"
    )
    parser.add_argument(
        "--data-root", required=True, type=Path, help="data set root (nuScenes layout or SemanticKITTI)"
    )
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints, config and logs")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many optimiser steps in total"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda:<local rank> if available, else cpu)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
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
