"""Training configs: every bundled one loads; unknown fields and inconsistent sections are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TRAINING_CONFIG_DIR, TrainConfig, load_train_config


@pytest.mark.parametrize("name", sorted(p.stem for p in TRAINING_CONFIG_DIR.glob("*.yaml")))
def test_bundled_configs_load(name: str) -> None:
    config = load_train_config(name)
    assert config.name == name
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config  # round trip (checkpoints)


def test_nuscenes_configs_follow_the_recipe() -> None:
    modes = {load_train_config(f"nuscenes_{m}").branch.mode for m in ("3d", "2dpass", "2ddata")}
    assert modes == {"3d", "2dpass", "2ddata"}
    config = load_train_config("nuscenes_2ddata")
    assert config.model.name == "nuscenes_full" and config.optim.lr == 0.24 and config.t_max == 76
    assert config.loop.batch_size * config.loop.accumulate == 32


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"bundled: .*nuscenes_2ddata"):
        load_train_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: tiny\nloop: {epochs: 2, batchsize: 4}\n")
    with pytest.raises(ValueError, match=r"batchsize[\s\S]*Extra inputs are not permitted"):
        load_train_config(bad)
    bad.write_text("name: x\nmodel: tiny\nbranch: {mode: 2ddata}\ndata: {nuscenes: {cameras: none}}\n")
    with pytest.raises(ValueError, match="needs camera images"):
        load_train_config(bad)
    bad.write_text("name: x\nmodel: no_such_model\n")
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_train_config(bad)
