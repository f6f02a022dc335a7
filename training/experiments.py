"""``python -m training.experiments``: the paper's experiments as a controlled re-run, over seeds.

Trains named variants (arms) of one config, each once per seed, evaluates every run on the held-out
split and writes a Markdown report (default docs/experiments.md) with means over seeds and 95 %
intervals: the comparison of 2DDATA with 2DPASS, the ablations (3D auxiliary heads, Local Object
Branch, LOB attention, auxiliary-term averaging) and the class analysis.

The arms (`ARMS`) are the base config with some `BranchConfig` fields changed; ``--seeds`` sets
``loop.seed``, which every arm shares, so arms are compared seed by seed (paired differences,
`training.intervals`). Runs land in ``--work/<arm>/seed-<n>``: a run whose ``best.pt`` and
``metrics.json`` exist is reused, one with ``last.pt`` only is resumed, so the command continues after
an interruption; a run folder whose recorded recipe (config, steps, seed, data) differs from the one
asked for is refused rather than reused. The report states what came out, whatever it is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from seg3d.checkpoint import MODES, Mode
from seg3d.helptext import plain
from seg3d.io import write_atomic
from seg3d.sysinfo import machine_info
from training.config import TrainConfig, load_train_config
from training.data.synthetic import read_recipe
from training.evaluate import interest_groups
from training.intervals import Estimate, estimate, paired_difference
from training.model import build_training_model, parameter_counts
from training.model.config import BranchConfig, term_kind
from training.runs import (
    RUN_RECIPE,
    config_digest,
    read_json,
    read_train_log,
    recipe_mismatches,
    train_and_evaluate,
    write_run_recipe,
)

__all__ = ["ARMS", "CONTRASTS", "MODES", "Arm", "Contrast", "RunResult", "Setup", "main", "render_report"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = ROOT / "runs" / "experiments"
DEFAULT_OUT = ROOT / "docs" / "experiments.md"
DEFAULT_SEEDS = (0, 1, 2)


class Arm(BaseModel):
    """One variant of the base config: its mode, the other `BranchConfig` fields it sets, and what it
    is for. Fields it does not name keep the base config's values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode
    branch: dict[str, float | bool | str] = {}
    description: str

    @field_validator("branch")
    @classmethod
    def _branch_fields(cls, value: dict[str, float | bool | str]) -> dict[str, float | bool | str]:
        unknown = sorted(set(value) - (set(BranchConfig.model_fields) - {"mode"}))
        if unknown:
            raise ValueError(f"not BranchConfig fields (or mode, set apart): {unknown}")
        return value

    def config(self, base: TrainConfig, name: str, seed: int) -> TrainConfig:
        """``base`` with this arm's branch fields and ``loop.seed = seed``, validated as a whole (a mode
        that needs cameras the base config lacks fails here, before any training)."""
        data = base.model_dump(mode="json")
        data["name"] = f"{base.name}_{name}"
        data["branch"] = {**data["branch"], **self.branch, "mode": self.mode}
        data["loop"] = {**data["loop"], "seed": seed}
        return TrainConfig.model_validate(data)


_NO_BRANCH = {"seg2d_weight": 0.0, "fused_weight": 0.0, "kl_weight": 0.0, "aux3d_weight": 0.0}

#: The arms, by name. Report tables list them in this order.
ARMS: dict[str, Arm] = {
    "3d": Arm(mode="3d", description="the 3D encoder alone (mode 3d: no images, no auxiliary heads)"),
    "3d_paired": Arm(
        mode="2dpass",
        branch=_NO_BRANCH,
        description="3D only inside the 2D pipeline: mode 2dpass with seg2d, fused, kl and aux3d weights 0",
    ),
    "2dpass": Arm(mode="2dpass", description="2DPASS: MSFSKD with the per-scale 3D auxiliary heads"),
    "2dpass_noaux": Arm(
        mode="2dpass", branch={"aux3d_weight": 0.0}, description="2DPASS without the 3D auxiliary heads"
    ),
    "2ddata": Arm(mode="2ddata", description="2DDATA: Local Object Branch, box_token attention, aux heads"),
    "2ddata_noaux": Arm(
        mode="2ddata", branch={"aux3d_weight": 0.0}, description="2DDATA without the 3D auxiliary heads"
    ),
    "2ddata_auxavg": Arm(
        mode="2ddata",
        branch={"aux3d_average": True},
        description="2DDATA with each scale's auxiliary term at aux3d_weight / S",
    ),
    "2ddata_pointweights": Arm(
        mode="2ddata",
        branch={"lob_attention": "point_weights"},
        description="2DDATA with point_weights attention (each point's own feature scaled by its weight)",
    ),
}


class Contrast(NamedTuple):
    """A difference ``a − b`` of two arms, in report section ``section``; ``question`` says what the
    difference measures."""

    section: str
    a: str
    b: str
    question: str


#: The report's comparisons, by section (in the order the sections appear).
CONTRASTS: tuple[Contrast, ...] = (
    Contrast("Comparison", "2ddata", "2dpass", "2DDATA against its 2DPASS baseline"),
    Contrast("Auxiliary 3D heads", "2dpass", "2dpass_noaux", "what the auxiliary heads add to 2DPASS"),
    Contrast("Auxiliary 3D heads", "2ddata", "2ddata_noaux", "what the auxiliary heads add to 2DDATA"),
    Contrast(
        "Local Object Branch",
        "2ddata",
        "3d_paired",
        "2DDATA against the 3D encoder alone in the same pipeline: the LOB and the auxiliary heads together",
    ),
    Contrast(
        "Local Object Branch",
        "2ddata_noaux",
        "3d_paired",
        "the LOB alone: neither side has auxiliary heads",
    ),
    Contrast(
        "LOB attention",
        "2ddata_pointweights",
        "2ddata",
        "the point_weights reading of the in-box attention against box_token",
    ),
    Contrast(
        "Auxiliary-term averaging",
        "2ddata_auxavg",
        "2ddata",
        "each scale's auxiliary term at aux3d_weight / S against at aux3d_weight",
    ),
    Contrast(
        "Baselines",
        "3d_paired",
        "3d",
        "pipeline check: the 3D-only baseline inside the 2D pipeline against mode 3d",
    ),
    Contrast("Baselines", "2dpass", "3d_paired", "2DPASS against its paired 3D-only baseline"),
)

#: The contrast sections that stand alone, with their headings; the others are ablations.
TOP_LEVEL = {"Comparison": "Comparison: 2DDATA against 2DPASS", "Baselines": "Baselines"}

#: The goal the issue set: each arm's interest mIoU at least the next one's, intervals apart.
GOAL_ORDER = ("2ddata", "2dpass", "3d_paired")

#: The training log's prefix of the per-term gradient norms into the 3D encoder.
GRAD3D = "grad3d/"

#: The loss-term kinds of the gradient table, in column order (a multi-scale kind sums its scales).
TERM_KINDS = ("seg3d", "aux3d", "fused", "kl", "seg2d")

#: The summary figures of an evaluation's ``crop`` section, with their report labels.
FIGURES = (("miou", "mIoU"), ("miou_interest", "interest mIoU (*)"), ("miou_other", "other mIoU"))


@dataclass(frozen=True)
class RunResult:
    """One finished run: its evaluation's ``crop`` figures and its training log's budget.

    ``term_norms`` holds, per loss term (``seg3d``, ``aux3d/0`` ...), the norms of its weighted
    gradient into the 3D encoder on the steps that measured them (``loop.term_grad_norms_every``);
    empty when the run measured none."""

    arm: str
    seed: int
    crop: dict[str, Any]
    steps: int
    train_minutes: float
    grad_norms: tuple[float, ...]
    term_norms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """What the report's setup section states."""

    command: str
    machine: dict[str, object]
    data_root: str
    data_recipe: dict[str, object] | None
    seeds: tuple[int, ...]
    max_steps: int


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    arms = list(dict.fromkeys(args.arms))
    seeds = tuple(dict.fromkeys(args.seeds))
    try:
        base = load_train_config(args.config)
        if base.data.dataset != "nuscenes":
            raise ValueError("the experiments need a nuScenes config (the interest classes are nuScenes')")
        if args.max_steps is None:
            if base.loop.max_steps is None:
                raise ValueError(f"config {base.name} sets no loop.max_steps: give --max-steps")
            args.max_steps = base.loop.max_steps
        configs = {(arm, seed): ARMS[arm].config(base, arm, seed) for arm in arms for seed in seeds}
    except (FileNotFoundError, ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_recipe = read_recipe(args.data_root)
    recipes = {
        key: {
            "arm": key[0],
            "config": base.name,
            "config_sha256": config_digest(config),
            "max_steps": args.max_steps,
            "seed": key[1],
            # A generated data set is named by its generator arguments; other data by its location.
            "data": data_recipe or {"root": str(args.data_root.resolve())},
        }
        for key, config in configs.items()
    }
    # Every run folder is checked before anything trains: a refusal after hours of training helps nobody.
    stale: dict[Path, list[str]] = {}
    for (arm, seed), recipe in recipes.items():
        run = _run_dir(args.work, arm, seed)
        if _holds_something(run) and (fields := recipe_mismatches(read_json(run / RUN_RECIPE), recipe)):
            stale[run] = fields
    if stale:
        lines = "\n".join(f"  {run}: {'; '.join(fields)}" for run, fields in stale.items())
        print(
            f"error: --work {args.work} holds runs made by another recipe than the one asked for:\n{lines}\n"
            "Reusing them would report figures of runs other than the ones described. Use a fresh --work, "
            "or delete those run folders to retrain them.",
            file=sys.stderr,
        )
        return 2
    results: list[RunResult] = []
    for (arm, seed), config in configs.items():
        run = _run_dir(args.work, arm, seed)
        metrics = read_json(run / "metrics.json") if (run / "best.pt").exists() else None
        if metrics is not None:
            print(f"{arm} seed {seed}: reusing {run}", flush=True)
        else:
            if not (run / RUN_RECIPE).exists():
                write_run_recipe(run, recipes[arm, seed])
            config_path = run.parent / f"{run.name}.yaml"
            write_atomic(config_path, config.to_yaml())
            metrics = train_and_evaluate(
                config_path, args.data_root, run, args.max_steps, base.data.val_split
            )
        log = read_train_log(run)
        results.append(
            RunResult(
                arm=arm,
                seed=seed,
                crop=metrics["crop"],
                steps=log[-1]["step"],
                train_minutes=log[-1]["train_s"] / 60,
                grad_norms=tuple(row["grad_norm"] for row in log),
                term_norms=_term_norms(log),
            )
        )
    params = {
        arm: parameter_counts(
            build_training_model(configs[arm, seeds[0]].model, configs[arm, seeds[0]].branch)
        )
        for arm in arms
    }
    setup = Setup(
        command=_command(args, arms, seeds),
        machine=machine_info(),
        data_root=str(args.data_root),
        data_recipe=data_recipe,
        seeds=seeds,
        max_steps=args.max_steps,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, render_report(setup, base, results, params))
    print(f"report written to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments",
        description=plain(__doc__, first_paragraph=True),
        epilog="Arms: "
        + "; ".join(f"{name}: {arm.description}" for name, arm in ARMS.items())
        + ". A finished run (WORK/ARM/seed-N with best.pt and metrics.json) is reused and an interrupted "
        "one resumed. Exit codes: 0 done, 2 bad config, or a run folder made by another recipe (config, "
        "steps, seed, data; the message names the fields).",
    )
    parser.add_argument(
        "--config",
        default="experiments",
        help="training config the arms vary (bundled name or YAML; default experiments: the demo's 3D "
        "encoder, image_encoder small, for data made with the generator's --camera-cues)",
    )
    parser.add_argument("--data-root", required=True, type=Path, help="nuScenes-layout data (e.g. synthetic)")
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=list(ARMS), metavar="ARM", help="arms (default all)"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=list(DEFAULT_SEEDS),
        metavar="N",
        help="seeds, each a run per arm with loop.seed = N (default 0 1 2)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="optimiser steps per run (default: the config's loop.max_steps)",
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="run folders: WORK/ARM/seed-N")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path")
    return parser


def _term_norms(log: list[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
    """Per loss term, its ``grad3d/<term>`` values in the training log, in step order."""
    norms: dict[str, list[float]] = {}
    for row in log:
        for key, value in row.items():
            if key.startswith(GRAD3D):
                norms.setdefault(key.removeprefix(GRAD3D), []).append(float(value))
    return {term: tuple(values) for term, values in norms.items()}


def _run_dir(work: Path, arm: str, seed: int) -> Path:
    return work / arm / f"seed-{seed}"


def _holds_something(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def _command(args: argparse.Namespace, arms: list[str], seeds: tuple[int, ...]) -> str:
    parts = ["python -m training.experiments", f"--config {args.config}", f"--data-root {args.data_root}"]
    if arms != list(ARMS):
        parts.append("--arms " + " ".join(arms))
    parts += ["--seeds " + " ".join(map(str, seeds)), f"--max-steps {args.max_steps}"]
    # The default paths are this checkout's: naming them would tie the command to one machine.
    if args.work != DEFAULT_WORK:
        parts.append(f"--work {args.work}")
    if args.out != DEFAULT_OUT:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------
# The report


def render_report(
    setup: Setup, base: TrainConfig, results: Sequence[RunResult], params: dict[str, dict[str, int]]
) -> str:
    """The Markdown report of ``results`` (any arms of `ARMS`, any seeds; figures are fractions)."""
    arms = [name for name in ARMS if any(r.arm == name for r in results)]
    by_arm = {arm: {r.seed: r for r in results if r.arm == arm} for arm in arms}
    groups = interest_groups(base)
    classes = list(results[0].crop["iou"])
    sections = [
        _setup_section(setup, base, arms),
        _summary_section(arms, by_arm),
        _goal_section(by_arm),
        *_contrast_sections(by_arm),
        _class_section(arms, by_arm, classes, set(groups["interest"])),
        _gradient_section(arms, by_arm),
        _budget_section(base, arms, by_arm, params),
        _runs_section(arms, by_arm),
    ]
    return "\n\n".join(s.strip("\n") for s in sections) + "\n"


def _setup_section(setup: Setup, base: TrainConfig, arms: list[str]) -> str:
    m = setup.machine
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", CPU only"
    memory = f", {m['memory_gib']} GiB" if m.get("memory_gib") else ""
    data = f"`{setup.data_root}`"
    if setup.data_recipe:
        r = setup.data_recipe
        data += (
            f" (generated by {r.get('generator')}: {r.get('version')}, {r.get('scenes')} scenes × "
            f"{r.get('samples_per_scene')} keyframes, generator seed {r.get('seed')}, LiDAR {r.get('lidar')}"
            + (", `--camera-cues`" if r.get("camera_cues") else "")
            + ")"
        )
    loop = base.loop
    branch = ", ".join(
        f"`{k}: {json.dumps(v)}`" for k, v in base.branch.model_dump(mode="json").items() if k != "mode"
    )
    arm_rows = "\n".join(
        f"| {name} | {ARMS[name].mode} | {_changes(ARMS[name])} | {ARMS[name].description} |" for name in arms
    )
    return f"""# The paper's experiments, controlled: arms × seeds

Regenerate with `{setup.command}`.

- Machine: {m.get("cpu")} ({m.get("logical_cores")} logical cores{memory}){gpu}; Python {m.get("python")},
  torch {m.get("torch")}.
- Base config: `{base.name}` (3D model `{base.model.name}`);
  batch {loop.batch_size} × accumulate {loop.accumulate}, optimiser steps per run: {setup.max_steps}.
  Its branch fields, which every arm keeps unless its row below changes them: {branch}.
- Seeds: {", ".join(map(str, setup.seeds))}. Each seed sets `loop.seed` (initialisation, sampling and
  augmentation streams) and is shared by every arm, so arms are compared seed by seed.
- Data: {data}; training split `{base.data.nuscenes.split}`, metrics on the held-out
  `{base.data.val_split}` split (crop, 1 vote).

Figures are percentages: the mean over seeds ± the half-width of its 95 % Student-t interval
(n − 1 degrees of freedom). With one seed there is no interval, and the cell says "(1 seed)". A class
IoU is undefined when the class is absent from the validation scenes and never predicted; such a run is
left out of that class's mean, and the cell says in how many seeds the class was scored ("2 of 3
seeds"). Differences are paired by seed: the mean of the per-seed differences and the 95 % t-interval
of that mean.

| arm | mode | branch changes | what it is |
|---|---|---|---|
{arm_rows}"""


def _changes(arm: Arm) -> str:
    return ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in arm.branch.items()) or "—"


def _summary_section(arms: list[str], by_arm: dict[str, dict[int, RunResult]]) -> str:
    header = "| arm | seeds | " + " | ".join(label for _, label in FIGURES) + " | training min |"
    rows = [
        f"| {arm} | {len(by_arm[arm])} | "
        + " | ".join(_cell(estimate(r.crop.get(key) for r in by_arm[arm].values())) for key, _ in FIGURES)
        + f" | {statistics.mean(r.train_minutes for r in by_arm[arm].values()):.1f} |"
        for arm in arms
    ]
    return (
        "## Summary per arm (%)\n\n(*) interest classes: the Local Object Branch's box classes.\n\n"
        + header
        + "\n|---|---:|"
        + "---:|" * (len(FIGURES) + 1)
        + "\n"
        + "\n".join(rows)
    )


def _goal_section(by_arm: dict[str, dict[int, RunResult]]) -> str:
    """The issue's goal, checked on the interest mIoU: 2ddata ≥ 2dpass ≥ 3d_paired, each arm's 95 %
    interval wholly above the next one's; the paired differences beside it."""
    title = "## Goal: " + " ≥ ".join(GOAL_ORDER) + " on the interest classes, intervals apart"
    missing = [arm for arm in GOAL_ORDER if arm not in by_arm]
    if missing:
        return f"{title}\n\nNot checked: needs arm{'s' if len(missing) > 1 else ''} {', '.join(missing)}."
    arms = {arm: estimate(r.crop.get("miou_interest") for r in by_arm[arm].values()) for arm in GOAL_ORDER}
    rows, failures = [], []
    for upper, lower in itertools.pairwise(GOAL_ORDER):
        a, b = arms[upper], arms[lower]
        apart = a.low is not None and b.high is not None and a.low > b.high
        holds = a.mean >= b.mean and apart
        if not holds:
            failures.append(f"{upper} ≥ {lower} ({'mean lower' if a.mean < b.mean else 'intervals overlap'})")
        d = paired_difference(
            {s: r.crop.get("miou_interest") for s, r in by_arm[upper].items()},
            {s: r.crop.get("miou_interest") for s, r in by_arm[lower].items()},
        )
        rows.append(
            f"| {upper} ≥ {lower} | {_cell(a)} | {_cell(b)} | {'yes' if apart else 'no'} | "
            f"{_difference_cell(d)} | {'yes' if holds else 'no'} |"
        )
    verdict = (
        "Met: each arm's interval lies wholly above the next one's."
        if not failures
        else "Not met: " + "; ".join(failures) + "."
    )
    return (
        f"{title}\n\n{verdict} The per-arm intervals are the summary's; the paired difference (by seed) "
        "is the sharper test of the same order.\n\n"
        "| order | upper arm (%) | lower arm (%) | intervals apart? | paired difference [95 %] | holds? |\n"
        "|---|---:|---:|---|---:|---|\n" + "\n".join(rows)
    )


def _contrast_sections(by_arm: dict[str, dict[int, RunResult]]) -> list[str]:
    """The comparison, the ablations (one subsection each) and the baselines, in `CONTRASTS` order."""
    sections: dict[str, list[str]] = {}
    for contrast in CONTRASTS:
        heading = "###" if contrast.section in TOP_LEVEL else "####"
        sections.setdefault(contrast.section, []).append(_contrast(contrast, by_arm, heading))
    parts: list[str] = []
    for section, blocks in sections.items():
        if section in TOP_LEVEL:
            parts.append(f"## {TOP_LEVEL[section]}\n\n" + "\n\n".join(blocks))
        else:
            if not any(p.startswith("## Ablations") for p in parts):
                parts.append(
                    "## Ablations\n\nEach removes or changes one part; differences are paired by seed."
                )
            parts.append(f"### {section}\n\n" + "\n\n".join(blocks))
    return parts


def _contrast(contrast: Contrast, by_arm: dict[str, dict[int, RunResult]], heading: str) -> str:
    name = f"{contrast.a} − {contrast.b}"
    missing = [arm for arm in (contrast.a, contrast.b) if arm not in by_arm]
    if missing:
        needs = f"arm{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        return f"{heading} {name}\n\n{_sentence(contrast.question)} Not run: needs {needs} (see --arms)."
    differences = {
        key: paired_difference(
            {s: r.crop.get(key) for s, r in by_arm[contrast.a].items()},
            {s: r.crop.get(key) for s, r in by_arm[contrast.b].items()},
        )
        for key, _ in FIGURES
    }
    rows = "\n".join(
        f"| {label} | {_signed(d.mean)} | {_interval(d)} | {d.n} | {_verdict(d, contrast)} |"
        for label, d in ((label, differences[key]) for key, label in FIGURES)
    )
    return (
        f"{heading} {name}\n\n{_sentence(contrast.question)} {_statement(differences['miou'], contrast)}\n\n"
        "| figure | difference (points) | 95 % interval | paired seeds | interval excludes 0? |\n"
        f"|---|---:|---|---:|---|\n{rows}"
    )


def _sentence(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}."


def _statement(d: Estimate, contrast: Contrast) -> str:
    """One plain sentence on the mIoU difference, derived from the figures alone."""
    if d.n == 0:
        return "No seed has a defined mIoU difference."
    head = f"mIoU: {contrast.a} − {contrast.b} = {_signed(d.mean)} points"
    if d.half_width is None:
        return f"{head} on one seed; one seed gives no interval, so this is not evidence either way."
    if d.excludes_zero:
        side = "higher" if d.mean > 0 else "lower"
        return (
            f"{head} (95 % interval {_interval(d)}, {d.n} paired seeds): the interval excludes 0, "
            f"{contrast.a} scores {side} than {contrast.b} on these seeds."
        )
    return (
        f"{head} (95 % interval {_interval(d)}, {d.n} paired seeds): the interval includes 0, "
        "so these seeds show no difference either way."
    )


def _verdict(d: Estimate, contrast: Contrast) -> str:
    if d.n == 0:
        return "no defined pairs"
    if d.excludes_zero is None:
        return "no interval (1 seed)"
    if d.excludes_zero:
        return f"yes: {contrast.a} {'higher' if d.mean > 0 else 'lower'}"
    return "no"


def _class_section(
    arms: list[str], by_arm: dict[str, dict[int, RunResult]], classes: list[str], interest: set[str]
) -> str:
    def label(name: str) -> str:
        return f"{name} *" if name in interest else name

    rows = "\n".join(
        f"| {label(name)} | "
        + " | ".join(_cell(estimate(r.crop["iou"].get(name) for r in by_arm[arm].values())) for arm in arms)
        + " |"
        for name in classes
    )
    table = "| class | " + " | ".join(arms) + " |\n|---|" + "---:|" * len(arms) + f"\n{rows}"
    paired = [c for c in CONTRASTS if c.section in ("Comparison", "Local Object Branch")]
    paired = [c for c in paired if c.a in by_arm and c.b in by_arm]
    differences = ""
    if paired:
        diff_rows = "\n".join(
            f"| {label(name)} | "
            + " | ".join(
                _difference_cell(
                    paired_difference(
                        {s: r.crop["iou"].get(name) for s, r in by_arm[c.a].items()},
                        {s: r.crop["iou"].get(name) for s, r in by_arm[c.b].items()},
                    )
                )
                for c in paired
            )
            + " |"
            for name in classes
        )
        differences = (
            "\n\n### Per-class differences (points), paired by seed, with 95 % intervals\n\n"
            "| class | " + " | ".join(f"{c.a} − {c.b}" for c in paired) + " |\n|---|" + "---:|" * len(paired)
            + f"\n{diff_rows}"
        )  # fmt: skip
    return (
        "## Class analysis\n\n### Per-class IoU (%), mean over seeds ± 95 % half-width\n\n"
        f"Interest classes (the Local Object Branch's box classes) are marked *.\n\n{table}{differences}"
    )


def _gradient_section(arms: list[str], by_arm: dict[str, dict[int, RunResult]]) -> str:
    """Which loss terms drive the 3D encoder: per arm and term kind, the median over the measured
    steps (every seed) of the term's gradient norm into the encoder, per-scale kinds summed."""
    rows = []
    for arm in arms:
        steps = _kind_norms_per_step(by_arm[arm].values())
        if not steps:
            continue
        cells = [
            f"{statistics.median(values):.3f}" if (values := [s[k] for s in steps if k in s]) else "—"
            for k in TERM_KINDS
        ]
        ratios = [s["aux3d"] / s["seg3d"] for s in steps if s.get("seg3d") and "aux3d" in s]
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "—"
        rows.append(f"| {arm} | {len(steps)} | " + " | ".join(cells) + f" | {ratio} |")
    title = "## What drives the 3D encoder\n\n"
    if not rows:
        return f"{title}No run measured per-term gradients (`loop.term_grad_norms_every`)."
    return (
        f"{title}"
        "Norm of each weighted loss term's gradient into the 3D encoder's parameters, measured every "
        "`loop.term_grad_norms_every` steps: the median over those steps of every seed. A per-scale kind "
        "(aux3d, fused, kl) is the sum of its scales' norms, an upper bound on the norm of their summed "
        "gradient. A term of weight 0, or one that does not reach the 3D encoder (seg2d in 2ddata), is "
        "0. The last column is the median per-step ratio of the auxiliary heads' pull to the main loss's.\n\n"
        "| arm | measured steps | " + " | ".join(TERM_KINDS) + " | aux3d ÷ seg3d |\n"
        "|---|---:|" + "---:|" * (len(TERM_KINDS) + 1) + "\n" + "\n".join(rows)
    )


def _kind_norms_per_step(runs: Iterable[RunResult]) -> list[dict[str, float]]:
    """Per measured step of every run, each term kind's norm (per-scale terms summed)."""
    steps: list[dict[str, float]] = []
    for run in runs:
        count = min((len(v) for v in run.term_norms.values()), default=0)
        for i in range(count):
            kinds: dict[str, float] = {}
            for term, values in run.term_norms.items():
                kind = term_kind(term)
                kinds[kind] = kinds.get(kind, 0.0) + values[i]
            steps.append(kinds)
    return steps


def _budget_section(
    base: TrainConfig,
    arms: list[str],
    by_arm: dict[str, dict[int, RunResult]],
    params: dict[str, dict[str, int]],
) -> str:
    clip = base.optim.grad_clip
    rows = []
    for arm in arms:
        runs = by_arm[arm].values()
        norms = [n for r in runs for n in r.grad_norms]
        clipped = None if clip is None or not norms else sum(n > clip for n in norms) / len(norms)
        p = params.get(arm, {})
        steps = sorted({r.steps for r in runs})
        rows.append(
            f"| {arm} | {p.get('encoder3d', 0):,} | {p.get('encoder2d', 0):,} | {p.get('branch', 0):,} | "
            f"{', '.join(map(str, steps))} | {statistics.mean(r.train_minutes for r in runs):.1f} | "
            f"{statistics.median(norms) if norms else float('nan'):.2f} | {_pct(clipped)} |"
        )
    return f"""## Parameters and budget

Gradient norms are the total norm over all trained parameters before clipping at `optim.grad_clip`
= {clip}, over every step of every seed; "clipped" is the share of steps where clipping scaled the
update down. Training minutes are the mean over seeds.

| arm | 3D encoder | 2D encoder | branch | steps | training min | median grad norm | clipped % |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}"""


def _runs_section(arms: list[str], by_arm: dict[str, dict[int, RunResult]]) -> str:
    rows = "\n".join(
        f"| {arm} | {seed} | "
        + " | ".join(_pct(run.crop.get(key)) for key, _ in FIGURES)
        + f" | {run.steps} | {run.train_minutes:.1f} |"
        for arm in arms
        for seed, run in sorted(by_arm[arm].items())
    )
    return (
        "## Runs\n\nEvery run's figures (%), from `WORK/<arm>/seed-<n>/metrics.json`.\n\n"
        "| arm | seed | " + " | ".join(label for _, label in FIGURES) + " | steps | training min |\n"
        "|---|---:|" + "---:|" * (len(FIGURES) + 2) + f"\n{rows}"
    )  # fmt: skip


def _pct(value: float | None) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f}"


def _signed(value: float) -> str:
    if value != value:
        return "—"
    # Rounded first, so that a difference that rounds to zero reads +0.0 rather than -0.0.
    return f"{round(100 * value, 1) + 0.0:+.1f}"


def _cell(e: Estimate) -> str:
    """``mean ± half-width`` in percent, saying when there is no interval or when seeds were left out."""
    if e.n == 0:
        return "—"
    text = _pct(e.mean) if e.half_width is None else f"{_pct(e.mean)} ± {100 * e.half_width:.1f}"
    if e.missing:
        return f"{text} ({e.n} of {e.n + e.missing} seeds)"
    return f"{text} (1 seed)" if e.n == 1 else text


def _interval(d: Estimate) -> str:
    if d.low is None or d.high is None:
        return "—"
    return f"{_signed(d.low)} to {_signed(d.high)}"


def _difference_cell(d: Estimate) -> str:
    if d.n == 0:
        return "—"
    text = _signed(d.mean) if d.half_width is None else f"{_signed(d.mean)} [{_interval(d)}]"
    return f"{text} ({d.n} pairs)" if d.missing else text


if __name__ == "__main__":
    raise SystemExit(main())
