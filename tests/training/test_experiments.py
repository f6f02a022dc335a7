"""``python -m training.experiments``: the arms, the report from given figures, and two arms × two seeds
trained on the generated data set (a second call reuses the runs; a changed recipe is refused)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import training.experiments as experiments
from training.config import TRAINING_CONFIG_DIR, load_train_config
from training.evaluate import interest_groups
from training.experiments import ARMS, Arm, RunResult, Setup, main, render_report


def test_arms_set_the_branch_and_the_seed() -> None:
    base = load_train_config("demo")
    configs = {name: arm.config(base, name, seed=7) for name, arm in ARMS.items()}
    assert all(c.loop.seed == 7 and c.name == f"demo_{n}" for n, c in configs.items())
    assert {n: c.branch.mode for n, c in configs.items()} == {
        "3d": "3d",
        "3d_paired": "2dpass",
        "2dpass": "2dpass",
        "2dpass_noaux": "2dpass",
        "2ddata": "2ddata",
        "2ddata_noaux": "2ddata",
        "2ddata_auxavg": "2ddata",
        "2ddata_pointweights": "2ddata",
    }
    paired = configs["3d_paired"].branch
    assert (paired.seg2d_weight, paired.fused_weight, paired.kl_weight, paired.aux3d_weight) == (0, 0, 0, 0)
    assert configs["2ddata_noaux"].branch.aux3d_weight == 0 and configs["2ddata"].branch.aux3d_weight == 1
    assert configs["2ddata_auxavg"].branch.aux3d_average and not configs["2ddata"].branch.aux3d_average
    assert configs["2ddata_pointweights"].branch.lob_attention == "point_weights"
    assert configs["2ddata"].branch.lob_attention == "box_token"
    with pytest.raises(ValidationError, match="not BranchConfig fields"):
        Arm(mode="2ddata", branch={"aux_weight": 0.0}, description="a typo")


def _crop(miou: float, iou: dict[str, float | None]) -> dict:
    return {"miou": miou, "miou_interest": miou - 0.1, "miou_other": miou + 0.05, "iou": iou}


def test_report_from_given_figures() -> None:
    """Means, paired intervals and their verdicts as computed by hand; undefined IoUs and single seeds
    are shown as such; contrasts whose arms did not run say so."""
    base = load_train_config("demo")
    groups = interest_groups(base)
    classes = sorted(groups["interest"] + groups["other"])
    mious = {"2dpass": [0.50, 0.52, 0.54], "2ddata": [0.55, 0.58, 0.59], "3d": [0.40]}
    results = []
    for arm, values in mious.items():
        for seed, miou in enumerate(values):
            iou: dict[str, float | None] = dict.fromkeys(classes, miou)
            if arm == "2ddata" and seed == 1:
                iou["barrier"] = None  # absent from val and never predicted in this run
            results.append(RunResult(arm, seed, _crop(miou, iou), 1, 0.5, (0.5, 2.0)))
    setup = Setup(
        "python -m training.experiments …", {"cpu": "a CPU", "logical_cores": 2}, "data", None, (0, 1, 2), 1
    )
    params = {arm: {"encoder3d": 10, "encoder2d": 0, "branch": 0, "total": 10} for arm in mious}
    text = render_report(setup, base, results, params)

    # Summary: 2dpass 52.0 ± t(0.975; 2) · 0.02 / √3 = 4.97 points; 3d has one seed.
    assert "| 2dpass | 3 | 52.0 ± 5.0 | 42.0 ± 5.0 | 57.0 ± 5.0 | 0.5 |" in text
    assert "| 3d | 1 | 40.0 (1 seed) | 30.0 (1 seed) | 45.0 (1 seed) | 0.5 |" in text
    # Comparison: per-seed differences 0.05, 0.06, 0.05: mean 5.33, s = 0.577, h = 1.43 points.
    assert "| mIoU | +5.3 | +3.9 to +6.8 | 3 | yes: 2ddata higher |" in text
    assert "the interval excludes 0, 2ddata scores higher than 2dpass" in text
    assert "#### 2ddata − 3d_paired\n\n2DDATA against the 3D encoder alone" in text
    assert "Not run: needs arm 3d_paired (see --arms)." in text and "## Ablations" in text
    # Class analysis: barrier's 2ddata mean is over the two seeds that scored it: (0.55 + 0.59) / 2.
    barrier = next(line for line in text.splitlines() if line.startswith("| barrier |"))
    assert "57.0 ± " in barrier and "(2 of 3 seeds)" in barrier
    assert "| car * |" in text and "| vegetation |" in text
    assert "| clipped % |" in text and "| 2ddata | 10 | 0 | 0 | 1 | 0.5 | 1.25 | 50.0 |" in text


def test_two_arms_two_seeds_then_reuse(
    synthetic_nuscenes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = yaml.safe_load((TRAINING_CONFIG_DIR / "demo.yaml").read_text())
    config["data"]["nuscenes"].update(version="v1.0-mini", split="mini_train")
    config["data"].update(val_split="mini_val", num_workers=0)
    config["schedule"]["t_max"] = 2
    config["loop"].update(val_every=1000, max_val_samples=2)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    work, report = tmp_path / "work", tmp_path / "docs" / "experiments.md"
    args = ["--config", str(path), "--data-root", str(synthetic_nuscenes), "--work", str(work)]
    args += ["--arms", "3d_paired", "2ddata", "--seeds", "0", "1", "--out", str(report)]
    assert main([*args, "--max-steps", "1"]) == 0

    runs = [work / arm / f"seed-{seed}" for arm in ("3d_paired", "2ddata") for seed in (0, 1)]
    for run in runs:
        assert {"best.pt", "metrics.json", "recipe.json", "train_log.jsonl"} <= {
            p.name for p in run.iterdir()
        }
        written = yaml.safe_load(run.with_suffix(".yaml").read_text())
        assert written["loop"]["seed"] == int(run.name[-1])
    assert yaml.safe_load((work / "3d_paired" / "seed-1.yaml").read_text())["branch"]["fused_weight"] == 0

    text = report.read_text()
    assert "--arms 3d_paired 2ddata --seeds 0 1 --max-steps 1" in text
    for arm in ("3d_paired", "2ddata"):  # two seeds: a mean and an interval for every figure
        row = next(line for line in text.splitlines() if line.startswith(f"| {arm} | 2 |"))
        assert len(re.findall(r"\d+\.\d ± \d+\.\d", row)) == 3, row
    lob = text.split("#### 2ddata − 3d_paired")[1]
    assert re.search(
        r"\| mIoU \| [+-]\d+\.\d \| [+-]\d+\.\d to [+-]\d+\.\d \| 2 \| (no|yes: 2ddata \w+) \|", lob
    )
    assert "| class | 3d_paired | 2ddata |" in text and "| car * |" in text
    assert "Not run: needs arm 2dpass (see --arms)." in text

    # A second call reuses every run: nothing trains or evaluates, and the files are untouched.
    stamps = {p: p.stat().st_mtime_ns for run in runs for p in (run / "best.pt", run / "metrics.json")}

    def no_training(*_: object) -> None:
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(experiments, "train_and_evaluate", no_training)
    report.unlink()
    assert main([*args, "--max-steps", "1"]) == 0
    assert report.read_text() == text
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # Another step budget is another recipe: refused up front, naming the field, nothing trained.
    capsys.readouterr()
    assert main([*args, "--max-steps", "2"]) == 2
    assert "max_steps: recorded 1, asked 2" in capsys.readouterr().err


def test_goal_and_gradient_sections() -> None:
    """The goal check (order and intervals on the interest mIoU) and the per-term gradient table, on
    figures whose outcome is worked out by hand."""
    base = load_train_config("demo")
    groups = interest_groups(base)
    classes = sorted(groups["interest"] + groups["other"])
    # Interest mIoU = mIoU − 10 points (`_crop`): 2ddata 54 ± 5.0, 2dpass 42 ± 5.0, 3d_paired 41.3 ± 5.2.
    mious = {"2ddata": [0.62, 0.64, 0.66], "2dpass": [0.50, 0.52, 0.54], "3d_paired": [0.49, 0.52, 0.53]}
    # Two measured steps per run: aux3d sums its scales (3 then 4) against seg3d (1 then 2).
    norms = {"seg3d": (1.0, 2.0), "aux3d/0": (1.0, 1.0), "aux3d/1": (2.0, 3.0), "fused/0": (0.5, 0.5)}
    results = [
        RunResult(
            arm, seed, _crop(m, dict.fromkeys(classes, m)), 1, 0.5, (0.5,), norms if arm == "2ddata" else {}
        )
        for arm, values in mious.items()
        for seed, m in enumerate(values)
    ]
    setup = Setup("python -m training.experiments …", {"cpu": "a CPU"}, "data", None, (0, 1, 2), 1)
    params = {arm: {"encoder3d": 10, "encoder2d": 0, "branch": 0, "total": 10} for arm in mious}
    text = render_report(setup, base, results, params)

    goal = text.split("## Goal: 2ddata ≥ 2dpass ≥ 3d_paired")[1].split("\n## ")[0]
    assert "Not met: 2dpass ≥ 3d_paired (intervals overlap)." in goal
    assert "| 2ddata ≥ 2dpass | 54.0 ± 5.0 | 42.0 ± 5.0 | yes | +12.0 [+12.0 to +12.0] | yes |" in goal
    assert "| 2dpass ≥ 3d_paired | 42.0 ± 5.0 | 41.3 ± 5.2 | no |" in goal and goal.rstrip().endswith(
        "| no |"
    )

    drives = text.split("## What drives the 3D encoder")[1].split("\n## ")[0]
    assert "| arm | measured steps | seg3d | aux3d | fused | kl | seg2d | aux3d ÷ seg3d |" in drives
    # Six measured steps (two per seed): seg3d median 1.5, aux3d 3.5, ratio median of 3, 2 → 2.5.
    assert "| 2ddata | 6 | 1.500 | 3.500 | 0.500 | — | — | 2.50 |" in drives
    assert "| 2dpass |" not in drives  # measured nothing: no row

    # Without one of the three arms the goal is not checked, and says which is missing.
    partial = render_report(setup, base, [r for r in results if r.arm != "2dpass"], params)
    assert "Not checked: needs arm 2dpass." in partial


def test_step_budget_comes_from_the_config_or_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --max-steps the config's loop.max_steps is the budget; a config without one (the
    epoch-based nuScenes recipe) is refused before anything trains, naming the flag."""
    assert load_train_config("experiments").loop.max_steps is not None
    assert main(["--config", "nuscenes_2ddata", "--data-root", str(tmp_path), "--work", str(tmp_path)]) == 2
    assert "sets no loop.max_steps: give --max-steps" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
