"""``python -m training.demo``: rebuild the bundled demo model (`models/demo`) from nothing.

1. generate the synthetic nuScenes-format dataset (`training.data.synthetic`, v1.0-trainval names,
   so the devkit's train/val splits hold out whole scenes);
2. train ``training/configs/demo.yaml`` (mode 2ddata, tiny 3D encoder) on CPU;
3. evaluate the best checkpoint on the held-out val scenes;
4. export it with ``export/to_trt.py`` (ONNX + manifest; a TensorRT engine where TensorRT exists);
5. write ``MODEL_CARD.md`` and ``metrics.json`` beside the export.

Every step is skipped when its output already exists, so an interrupted rebuild continues.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seg3d.helptext import plain
from seg3d.io import write_atomic
from training.runs import read_train_log, run_command, train_and_evaluate

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"scenes": 40, "samples_per_scene": 5, "seed": 0, "max_steps": 600}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.demo", description=plain(__doc__, first_paragraph=True)
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs", help="dataset and run folder (default runs/)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "models" / "demo", help="export folder (default models/demo)"
    )
    parser.add_argument(
        "--scenes", type=int, default=DEFAULTS["scenes"], help="synthetic scenes (default 40)"
    )
    parser.add_argument("--samples-per-scene", type=int, default=DEFAULTS["samples_per_scene"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument(
        "--max-steps", type=int, default=DEFAULTS["max_steps"], help="training steps (default 600)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the export already in --out (e.g. the bundled model)",
    )
    args = parser.parse_args(argv)
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        # Refused before the data and the training, not after them: export would refuse it too.
        print(
            f"error: --out {args.out} exists and is not empty; pass --overwrite to replace it",
            file=sys.stderr,
        )
        return 2
    data, run = args.work / "demo-data", args.work / "demo-train"
    python = sys.executable
    if not (data / "v1.0-trainval" / "lidarseg.json").exists():
        run_command([python, "-m", "training.data.synthetic", "--out", str(data),
                     "--scenes", str(args.scenes), "--samples-per-scene", str(args.samples_per_scene),
                     "--seed", str(args.seed), "--version", "v1.0-trainval", "--overwrite"])  # fmt: skip
    figures = train_and_evaluate("demo", data, run, args.max_steps, "val")
    run_command([python, str(ROOT / "export" / "to_trt.py"), "--checkpoint", str(run / "best.pt"),
                 "--out", str(args.out), *(["--overwrite"] if args.overwrite else [])])  # fmt: skip
    log = read_train_log(run)
    write_atomic(args.out / "metrics.json", json.dumps(figures, indent=2))
    write_atomic(args.out / "MODEL_CARD.md", _card(args, figures, log, log[-1].get("train_s")))
    print(f"demo model written to {args.out}")
    return 0


def _card(args: argparse.Namespace, figures: dict, log: list[dict], train_seconds: float | None) -> str:
    crop = figures["crop"]
    rows = "\n".join(
        f"| {name} | {'—' if value is None else f'{100 * value:.1f}'} |"
        for name, value in crop["iou"].items()
    )
    timing = (
        "training time not recorded in this run's log"
        if train_seconds is None
        else f"{train_seconds / 60:.1f} min of training wall time (data loading in, validation out)"
    )
    command = (
        f"python -m training.demo --scenes {args.scenes} --samples-per-scene {args.samples_per_scene} "
        f"--seed {args.seed} --max-steps {args.max_steps}"
    )
    return f"""# Demo model: 2DDATA, tiny 3D encoder, synthetic scenes only

The service's default model. It exists so that `python -m serve` works out of the box and the whole
pipeline (data → training → export → serving) is exercised end to end. **It has never seen real
LiDAR data**: expect poor labels on real nuScenes sweeps. Train `training/configs/nuscenes_2ddata.yaml`
on nuScenes-lidarseg for a real model.

## Reproduce

    {command}

(generates the data set, trains, evaluates, exports; each step is skipped when its output exists.)

## Data

Synthetic nuScenes-format data set (`python -m training.data.synthetic --version v1.0-trainval
--scenes {args.scenes} --samples-per-scene {args.samples_per_scene} --seed {args.seed}`): procedural streets
ray-cast with the nuScenes HDL-32E geometry, six cameras, lidarseg labels and 3D boxes. The devkit's
splits apply to its scene names: training on the `train` scenes, the metrics below on the held-out
`val` scenes.

## Model and training

- config `training/configs/demo.yaml`: mode `2ddata` (ResNet-34 2D encoder + Local Object Branch during
  training), 3D encoder `tiny` (0.2 m cells, width 32, scales 2/4/8/16); only the 3D encoder is exported;
- {len(log)} optimiser steps of batch 2 on CPU: {timing};
- final training loss {log[-1]["loss"]:.3f} (sum of every term of the 2DDATA loss).

## Metrics on the held-out synthetic val scenes (crop, 1 vote)

| class | IoU % |
|---|---:|
{rows}
| **mIoU** | **{100 * crop["miou"]:.1f}** |

mIoU of the LOB interest classes: {100 * crop.get("miou_interest", float("nan")):.1f} %;
of the other classes: {100 * crop.get("miou_other", float("nan")):.1f} %. Full-scan figures are in
`metrics.json`.

## Limits

- Synthetic scenes only; no claim about real data.
- Intensity contract, ranges and classes are those of nuScenes (see `manifest.json`): the service
  accepts nuScenes, KITTI and xyzi point files.
"""


if __name__ == "__main__":
    raise SystemExit(main())
