"""``python -m training.experiments``: the paper's three experiments on the data we have.

Trains modes ``3d``, ``2dpass`` and ``2ddata`` of one config with the same seed, data, and step budget,
evaluates each on the held-out split, and writes a Markdown report (default `docs/experiments.md`):

- the comparison: 2DDATA against its 2DPASS baseline;
- the ablation: 2DDATA against the 3D encoder alone (no Local Object Branch);
- the class analysis: per-class IoU, and the mean over the interest classes (the LOB's box classes)
  against the mean over the others.

Runs land in ``--work/<mode>``; a mode whose ``best.pt`` exists is not retrained, so the command
continues after an interruption. The report states what came out, whatever it is.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from seg3d.checkpoint import MODES
from seg3d.helptext import plain
from seg3d.io import write_atomic
from seg3d.sysinfo import machine_info
from training.config import TrainConfig, load_train_config
from training.evaluate import interest_groups
from training.model import build_training_model, parameter_counts
from training.runs import read_train_log, train_and_evaluate

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments", description=plain(__doc__, first_paragraph=True)
    )
    parser.add_argument(
        "--config", default="demo", help="training config whose mode is varied (default demo)"
    )
    parser.add_argument("--data-root", required=True, type=Path, help="nuScenes-layout data (e.g. synthetic)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "experiments", help="run folders")
    parser.add_argument("--max-steps", type=int, default=600, help="optimiser steps per mode (default 600)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "experiments.md", help="report path")
    args = parser.parse_args(argv)
    base = load_train_config(args.config)
    results: dict[str, dict] = {}
    args.work.mkdir(parents=True, exist_ok=True)
    for mode in MODES:
        run = args.work / mode
        config_path = args.work / f"{mode}.yaml"
        config = base.model_copy(
            update={"name": f"{base.name}_{mode}", "branch": base.branch.model_copy(update={"mode": mode})}
        )
        write_atomic(config_path, config.to_yaml())
        metrics = train_and_evaluate(config_path, args.data_root, run, args.max_steps, base.data.val_split)
        log = read_train_log(run)
        norms = [row["grad_norm"] for row in log]
        clip = config.optim.grad_clip
        results[mode] = {
            "metrics": metrics,
            "params": parameter_counts(build_training_model(config.model, config.branch)),
            "steps": log[-1]["step"],
            "train_minutes": log[-1]["train_s"] / 60,
            "grad_norm": statistics.median(norms),
            "clipped": None if clip is None else sum(n > clip for n in norms) / len(norms),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, _report(args, base, results))
    print(f"report written to {args.out}")
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _report(args: argparse.Namespace, base: TrainConfig, results: dict[str, dict]) -> str:
    groups = interest_groups(base)
    classes = list(results["3d"]["metrics"]["crop"]["iou"])
    header = "| class | " + " | ".join(MODES) + " |\n|---|" + "---:|" * len(MODES)
    rows = [
        f"| {name}{' *' if name in groups['interest'] else ''} | "
        + " | ".join(_pct(results[m]["metrics"]["crop"]["iou"][name]) for m in MODES)
        + " |"
        for name in classes
    ]
    summary = [
        ("mIoU", "miou"),
        ("mIoU, interest classes (*)", "miou_interest"),
        ("mIoU, other classes", "miou_other"),
    ]
    rows += [
        f"| **{label}** | "
        + " | ".join(f"**{_pct(results[m]['metrics']['crop'][key])}**" for m in MODES)
        + " |"
        for label, key in summary
    ]
    params = "\n".join(
        f"| {m} | {r['params']['encoder3d']:,} | {r['params']['encoder2d']:,} | {r['params']['branch']:,} | "
        f"{r['steps']} | {r['train_minutes']:.1f} | {r['grad_norm']:.2f} | {_pct(r['clipped'])} |"
        for m, r in results.items()
    )
    d = {m: results[m]["metrics"]["crop"] for m in MODES}
    deltas = "\n".join(
        f"| {label} | "
        + " | ".join(_signed(d[a][key] - d[b][key]) for key in ("miou", "miou_interest", "miou_other"))
        + " |"
        for label, a, b in (
            ("comparison: 2DDATA − 2DPASS", "2ddata", "2dpass"),
            ("ablation: 2DDATA − 3D only", "2ddata", "3d"),
            ("2DPASS − 3D only", "2dpass", "3d"),
        )
    )
    machine = machine_info()
    clip = base.optim.grad_clip
    return f"""# The paper's three experiments, on synthetic data

Command: `python -m training.experiments --config {args.config} --data-root {args.data_root}
--max-steps {args.max_steps}` on {machine["cpu"]} ({machine["logical_cores"]} cores), CPU only.
Same seed, data, and step budget for every mode; metrics on the held-out `{base.data.val_split}` scenes (crop,
1 vote). These are synthetic scenes and a small CPU budget: the numbers test the pipeline and the
direction of effects, not the paper's nuScenes figures.

## Per-class IoU (%)

{header}
{chr(10).join(rows)}

## Comparison and ablation (mIoU points)

| | all classes | interest classes | other classes |
|---|---:|---:|---:|
{deltas}

## Parameters and budget

Gradient norms are the total norm over all trained parameters before clipping at `optim.grad_clip`
= {clip}; "clipped" is the share of steps where clipping scaled the update down.

| mode | 3D encoder | 2D encoder | branch | steps | training min | median grad norm | clipped % |
|---|---:|---:|---:|---:|---:|---:|---:|
{params}
"""


def _signed(value: float) -> str:
    return f"{100 * value:+.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
