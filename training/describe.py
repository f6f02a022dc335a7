"""``python -m training.describe --config CONFIG``: parameters per part of a training model.

Prints the 3D encoder (the part that is exported), the 2D encoder and the fusion branch (MSFSKD in
mode ``2dpass``, the Local Object Branch with its auxiliary heads in ``2ddata``), and, at the
nuScenes full configuration, the paper's figures beside them: 45.6 M for the 3D encoder (2DPASS
README) and about 4.4 M training-only parameters for the LOB (2DDATA).
"""

from __future__ import annotations

import argparse
import json
import sys

from seg3d.checkpoint import MODES, Mode
from seg3d.helptext import plain
from training.config import TRAINING_CONFIG_DIR, load_train_config
from training.model import build_training_model, parameter_counts
from training.model.image_encoder import ImageBackbone

__all__ = ["main"]

PAPER = {"encoder3d": "45.6 M (2DPASS README)", "branch:2ddata": "≈4.4 M (2DDATA paper)"}

#: The fusion branch of each mode (`seg3d.checkpoint.MODES`), as the table names it.
BRANCH_NAMES: dict[Mode, str] = {
    "3d": "(none)",
    "2dpass": "MSFSKD",
    "2ddata": "Local Object Branch + aux heads",
}

#: The 2D encoder row of the table, by `BranchConfig.image_encoder`.
IMAGE_ENCODER_NAMES: dict[ImageBackbone, str] = {
    "resnet34": "ResNet-34 + decoders",
    "small": "small backbone + decoders",
}


def main(argv: list[str] | None = None) -> int:
    bundled = ", ".join(sorted(p.stem for p in TRAINING_CONFIG_DIR.glob("*.yaml")))
    parser = argparse.ArgumentParser(
        prog="python -m training.describe", description=plain(__doc__, first_paragraph=True)
    )
    parser.add_argument(
        "--config", required=True, help=f"training config: YAML path or bundled name ({bundled})"
    )
    parser.add_argument("--mode", choices=MODES, help="override the config's mode")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        config = load_train_config(args.config)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    branch = config.branch if args.mode is None else config.branch.model_copy(update={"mode": args.mode})
    counts = parameter_counts(build_training_model(config.model, branch))
    if args.json:
        print(json.dumps({"config": config.name, "mode": branch.mode, "model": config.model.name, **counts}))
        return 0
    full = config.model.name == "nuscenes_full"
    branch_name = BRANCH_NAMES[branch.mode]
    rows = [
        ("3D encoder (exported)", counts["encoder3d"], PAPER["encoder3d"] if full else ""),
        (f"2D encoder ({IMAGE_ENCODER_NAMES[branch.image_encoder]})", counts["encoder2d"], ""),
        (
            f"branch: {branch_name}",
            counts["branch"],
            PAPER["branch:2ddata"] if full and branch.mode == "2ddata" else "",
        ),
        ("total (training)", counts["total"], ""),
    ]
    print(f"{config.name}: mode {branch.mode}, 3D model {config.model.name}\n")
    print("| part | parameters | millions | paper |\n|---|---:|---:|---|")
    for name, value, paper in rows:
        print(f"| {name} | {value:,} | {value / 1e6:.2f} M | {paper} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
