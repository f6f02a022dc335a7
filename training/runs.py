"""The training and evaluation CLIs run as subprocesses, as the one-command workflows
(`training.demo`, `training.experiments`) chain them. A step whose output exists is skipped, so an
interrupted workflow continues where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["read_train_log", "run_command", "train_and_evaluate"]


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
