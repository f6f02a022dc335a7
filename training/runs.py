"""The training and evaluation CLIs run as subprocesses, as the one-command workflows
(`training.demo`, `training.experiments`) chain them. A step whose output exists is skipped, so an
interrupted workflow continues where it stopped.

A workflow that reuses outputs checks first that they were made by the recipe it asks for: the
synthetic data set records its arguments (``synthetic.json``, `training.data.synthetic.read_recipe`)
and a run folder its recipe (``recipe.json``, `write_run_recipe`); `recipe_mismatches` names the
fields that differ."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from seg3d.io import write_atomic
from training.config import TrainConfig

__all__ = [
    "RUN_RECIPE",
    "config_digest",
    "read_json",
    "read_train_log",
    "recipe_mismatches",
    "run_command",
    "train_and_evaluate",
    "write_run_recipe",
]

#: The file in a run folder that records how the run was made (config, steps, seed, data).
RUN_RECIPE = "recipe.json"


def config_digest(config: TrainConfig) -> str:
    """SHA-256 of the config's fields (not of its file: comments and layout do not count)."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_run_recipe(run: Path, recipe: dict[str, Any]) -> None:
    """Record ``recipe`` in ``run/recipe.json`` (atomically), before the run's outputs exist."""
    run.mkdir(parents=True, exist_ok=True)
    write_atomic(run / RUN_RECIPE, json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def recipe_mismatches(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """``field: recorded X, asked Y`` for each field that differs (nested fields dotted), or one line
    saying no recipe is recorded; empty when ``recorded`` is exactly ``wanted``."""
    if recorded is None:
        return ["no recorded recipe (made by hand, or by an older version of the tools)"]
    old, new = _flatten(recorded), _flatten(wanted)
    return [
        f"{key}: recorded {_show(old.get(key, _MISSING))}, asked {_show(new.get(key, _MISSING))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _MISSING) != new.get(key, _MISSING)
    ]


_MISSING = object()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    return (
        "nothing"
        if not isinstance(value, str | int | float | bool | list | type(None))
        else json.dumps(value)
    )


def run_command(command: list[str]) -> None:
    """Print ``command`` and run it; a non-zero exit raises `subprocess.CalledProcessError`."""
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def train_and_evaluate(
    config: str | Path, data_root: Path, run: Path, max_steps: int, split: str
) -> dict[str, Any]:
    """Train ``config`` into ``run`` for ``max_steps`` (skipped when ``best.pt`` exists, resumed when
    ``last.pt`` does), evaluate ``best.pt`` on ``split`` into ``run/metrics.json`` and return those
    figures."""
    python = sys.executable
    if not (run / "best.pt").exists():
        resume = ["--resume"] if (run / "last.pt").exists() else []
        run_command([python, "-m", "training.train", "--config", str(config), "--data-root", str(data_root),
                     "--out", str(run), "--max-steps", str(max_steps), *resume])  # fmt: skip
    metrics = run / "metrics.json"
    run_command([python, "-m", "training.evaluate", "--checkpoint", str(run / "best.pt"),
                 "--data-root", str(data_root), "--split", split, "--json", str(metrics)])  # fmt: skip
    return json.loads(metrics.read_text())


def read_train_log(run: Path) -> list[dict[str, Any]]:
    """The rows of ``run/train_log.jsonl``, one per optimiser step."""
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
