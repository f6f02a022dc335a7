"""training.describe: parameter counts per part, exact at the nuScenes full configuration."""

from __future__ import annotations

import json

import pytest

import training.experiments
import training.model.config
from seg3d.checkpoint import MODES, Mode
from training.describe import BRANCH_NAMES, main


def test_full_config_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "nuscenes_2ddata"]) == 0
    table = capsys.readouterr().out
    assert "| 3D encoder (exported) | 45,614,865 | 45.61 M | 45.6 M (2DPASS README) |" in table
    assert "| 2D encoder (ResNet-34 + decoders) | 26,433,920 |" in table
    assert main(["--config", "nuscenes_2ddata", "--mode", "2dpass", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["branch"] == 2_197_469  # MSFSKD, docs/architecture.md §4
    assert counts["total"] == 45_614_865 + 26_433_920 + 2_197_469
    assert main(["--config", "nuscenes_3d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 45_614_865


def test_unknown_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "nope"]) == 2
    assert "bundled:" in capsys.readouterr().err


def test_training_uses_the_one_definition_of_modes() -> None:
    """`seg3d.checkpoint.Mode`/`MODES` are the modes everywhere in training."""
    assert training.model.config.Mode is Mode and training.experiments.MODES is MODES
    assert tuple(BRANCH_NAMES) == MODES
