"""The README's Training sequence on a fresh clone: the generator's default version is the one the
demo config reads (10 scenes give train and val scenes), a root of another version or an incomplete
one is refused with the fix (the version folders found, the config fields, the generator command),
and ``--help`` explains the defaults in plain text."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import load_train_config
from training.data.nuscenes import NUSCENES_TABLES, check_nuscenes_layout
from training.data.synthetic import generate
from training.data.synthetic.__main__ import _parser as generator_parser
from training.data.synthetic.plan import plan_scenes
from training.train import main as train_main


def test_the_generator_default_is_the_version_the_demo_config_reads() -> None:
    args = generator_parser().parse_args(["--out", "data"])
    config = load_train_config("demo")
    assert args.version == config.data.nuscenes.version == "v1.0-trainval"
    assert inspect.signature(generate).parameters["version"].default == args.version
    # The README's 10 scenes: whole scenes held out, in the splits the demo config trains and validates on.
    splits = create_splits_scenes()
    plans = plan_scenes(args.seed, args.version, 10, 5)
    train = [p.name for p in plans if p.split == "train"]
    val = [p.name for p in plans if p.split == "val"]
    assert (len(train), len(val)) == (8, 2)
    assert set(train) <= set(splits[config.data.nuscenes.split])
    assert set(val) <= set(splits[config.data.val_split])


def create_splits_scenes() -> dict[str, list[str]]:
    splits = pytest.importorskip("nuscenes.utils.splits", reason="nuscenes-devkit is not installed")
    return splits.create_splits_scenes()


def _root(tmp_path: Path, version: str, tables: tuple[str, ...] = (*NUSCENES_TABLES, "lidarseg")) -> Path:
    root = tmp_path / "data"
    (root / version).mkdir(parents=True)
    (root / "samples").mkdir()
    for name in tables:
        (root / version / f"{name}.json").write_text("[]")
    return root


def test_a_missing_root_names_the_generator_command(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        check_nuscenes_layout(root, "v1.0-trainval")
    assert f"nuScenes data root not found: {root}" in str(error.value)
    assert f"python -m training.data.synthetic --out {root} --version v1.0-trainval" in str(error.value)


def test_a_root_of_another_version_says_what_it_holds_and_both_fixes(tmp_path: Path) -> None:
    root = _root(tmp_path, "v1.0-mini")
    with pytest.raises(FileNotFoundError) as error:
        check_nuscenes_layout(root, "v1.0-trainval")
    message = str(error.value)
    assert "not a nuScenes v1.0-trainval layout" in message
    assert f"Version folder(s) found in {root}: v1.0-mini" in message
    # the config fields that read the version found, with that version's splits
    assert (
        "data.nuscenes.version: v1.0-mini, data.nuscenes.split: mini_train, data.val_split: mini_val"
        in message
    )
    assert f"python -m training.data.synthetic --out {root} --version v1.0-trainval --overwrite" in message


def test_an_incomplete_root_names_the_missing_tables_and_the_command(tmp_path: Path) -> None:
    root = _root(tmp_path, "v1.0-trainval", tables=("scene", "sample"))
    with pytest.raises(FileNotFoundError) as error:
        check_nuscenes_layout(root, "v1.0-trainval")
    message = str(error.value)
    assert "not a complete nuScenes v1.0-trainval layout" in message
    assert str(root / "v1.0-trainval" / "lidarseg.json") in message
    assert str(root / "v1.0-trainval" / "scene.json") not in message
    assert f"python -m training.data.synthetic --out {root} --version v1.0-trainval --overwrite" in message


def test_training_the_demo_on_a_mini_root_exits_2_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    root = _root(tmp_path, "v1.0-mini")
    out = tmp_path / "run"
    code = train_main(["--config", "demo", "--data-root", str(root), "--out", str(out), "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "data.nuscenes.version: v1.0-mini" in error
    assert f"--out {root} --version v1.0-trainval --overwrite" in error
    assert not (out / "last.pt").exists()


def _help(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True, env=_env()
    )
    assert "``" not in done.stdout and "`" not in done.stdout  # no docstring markup
    return " ".join(done.stdout.split())  # argparse wraps lines


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "100"}


def test_evaluate_help_explains_the_default_split() -> None:
    text = _help("training.evaluate")
    assert "Default: the checkpoint's validation split (its config's data.val_split" in text
    assert "v1.0-trainval: train, val; v1.0-mini: mini_train, mini_val" in text
    assert "default: every sample of the split" in text and "default 1" in text


def test_train_help_explains_the_step_budget_and_splits() -> None:
    text = _help("training.train")
    assert "default: the config's loop.max_steps, else loop.epochs epochs; demo: 600 steps" in text
    assert "validates on data.val_split (val)" in text
    assert "OUT/best.pt (best validation mIoU; always written by the end of a run)" in text
