"""``python -m training.demo`` refuses to replace an export before spending any time on data or training,
and reuses the outputs in --work only when their recorded recipe is the one asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.demo import LIDAR, main


def test_a_non_empty_out_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models" / "demo"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    assert main(["--out", str(out), "--work", str(tmp_path / "runs")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no data generated, nothing trained
    assert (out / "manifest.json").read_text() == "{}"


# The rebuild's steps run as subprocesses; here the data set is generated for real (tiny) and the
# training, evaluation and export commands are stood in for by writers of their outputs, so the
# recipe checks are tested in seconds.
SMALL = ["--scenes", "2", "--samples-per-scene", "1", "--max-steps", "3"]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the demo ran: ``synthetic``, ``train``, ``evaluate`` or ``export`` per command."""
    from training.data.synthetic.__main__ import main as generate

    ran: list[str] = []

    def run(command: list[str]) -> None:
        if "training.data.synthetic" in command:
            ran.append("synthetic")
            assert generate([*command[3:], "--workers", "1", "--quiet"]) == 0
        elif "training.train" in command:
            ran.append("train")
            out, steps = Path(_option(command, "--out")), int(_option(command, "--max-steps"))
            out.mkdir(parents=True, exist_ok=True)
            (out / "best.pt").write_bytes(b"best")
            (out / "last.pt").write_bytes(b"last")
            rows = [{"step": s, "loss": 2.0 / s, "train_s": 6.0 * s} for s in range(1, steps + 1)]
            (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif "training.evaluate" in command:
            ran.append("evaluate")
            iou = {"car": 0.5, "bus": None}
            figures = {"crop": {"iou": iou, "miou": 0.5, "miou_interest": 0.5, "miou_other": 0.0}}
            Path(_option(command, "--json")).write_text(json.dumps(figures))
        else:
            ran.append("export")
            out = Path(_option(command, "--out"))
            out.mkdir(parents=True, exist_ok=True)
            (out / "manifest.json").write_text("{}")

    def score(
        model: Path, semantickitti: Path, objects: Path, backend: str, squeezeseg: list[Path]
    ) -> dict[str, object]:
        assert (model / "manifest.json").is_file()  # the export just written is what is scored
        assert semantickitti.name == "semantickitti" and objects.parts[-2:] == ("kitti", "object")
        return {"model": str(model), "kitti_boxes": [REAL_BOX]}

    monkeypatch.setattr("training.demo.run_command", run)
    monkeypatch.setattr("training.runs.run_command", run)
    monkeypatch.setattr("training.demo.real_data_dir", lambda: Path("/shared/data/real"))

    def draw(model: Path, out: Path, semantickitti: Path, sweep: Path | None, backend: str) -> list[Path]:
        assert model == out and (model / "manifest.json").is_file()  # beside the export just written
        assert semantickitti.name == "semantickitti" and backend == "torch"
        ran.append("pictures")
        names = ("birdseye-semantickitti.png", "birdseye-semantickitti-truth.png", "birdseye-nuscenes.png")
        for name in names:
            (out / name).write_bytes(b"png")
        return [out / name for name in names]

    monkeypatch.setattr("training.demo.real_scan_figures", score)
    monkeypatch.setattr("training.demo.birdseye_pictures", draw)
    return ran


REAL_BOX = {
    "source": "KITTI object boxes",
    "kind": "Car",
    "class": "car",
    "boxes": 2,
    "points": 40,
    "correct": 30,
    "share": 0.75,
    "frames": ["1"],
}


def test_reuse_is_checked_against_the_recorded_recipe(
    tmp_path: Path, commands: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from training.config import load_train_config
    from training.data.synthetic import read_recipe, recipe
    from training.runs import config_digest

    work, out = tmp_path / "runs", tmp_path / "models" / "demo"
    base = ["--work", str(work), "--out", str(out)]
    assert main([*base, *SMALL]) == 0
    assert commands == ["synthetic", "train", "evaluate", "export", "pictures"]
    data_recipe = recipe("v1.0-trainval", 2, 1, 0, 0.5, LIDAR)
    assert read_recipe(work / "demo-data") == data_recipe
    run_recipe = json.loads((work / "demo-train" / "recipe.json").read_text())
    assert run_recipe == {
        "config": "demo",
        "config_sha256": config_digest(load_train_config("demo")),
        "max_steps": 3,
        "seed": 0,
        "data": data_recipe,
    }
    card = (out / "MODEL_CARD.md").read_text()
    assert "python -m training.demo --scenes 2 --samples-per-scene 1 --seed 0 --max-steps 3" in card
    assert "3 optimiser steps (budget 3)" in card
    assert "## Real scans" in card and "| KITTI object boxes | Car | car | 2 | 40 | 75.0 |" in card
    assert f"--render-scale 0.5 --lidar {LIDAR}" in card and "mode `3d`" in card
    for name in ("birdseye-semantickitti.png", "birdseye-semantickitti-truth.png", "birdseye-nuscenes.png"):
        assert f"]({name})" in card  # the pictures drawn beside the export, shown in the card
    assert json.loads((out / "metrics.json").read_text())["real_scans"]["kitti_boxes"] == [REAL_BOX]

    # The same recipe: the data set and the run are reused (an interrupted rebuild continues).
    commands.clear()
    assert main([*base, *SMALL, "--overwrite"]) == 0
    assert commands == ["evaluate", "export", "pictures"]

    # Another recipe: refused before anything runs, naming each field that differs and the fixes.
    commands.clear()
    capsys.readouterr()
    other = ["--scenes", "3", "--samples-per-scene", "1", "--max-steps", "5"]
    assert main(["--work", str(work), "--out", str(tmp_path / "other"), *other]) == 2
    error = capsys.readouterr().err
    assert f"{work / 'demo-data'}: scenes: recorded 2, asked 3" in error
    assert "data.scenes: recorded 2, asked 3; max_steps: recorded 3, asked 5" in error
    assert "fresh --work" in error and "--overwrite" in error
    assert commands == [] and not (tmp_path / "other").exists()
    assert json.loads((work / "demo-train" / "recipe.json").read_text()) == run_recipe

    # --overwrite replaces only what differs: the run is retrained, the data set kept.
    assert main([*base, "--scenes", "2", "--samples-per-scene", "1", "--max-steps", "5", "--overwrite"]) == 0
    assert commands == ["train", "evaluate", "export", "pictures"]
    assert json.loads((work / "demo-train" / "recipe.json").read_text())["max_steps"] == 5
    assert "5 optimiser steps (budget 5)" in (out / "MODEL_CARD.md").read_text()


def test_outputs_without_a_recipe_are_refused(
    tmp_path: Path, commands: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A data set and a run made by hand (the README's commands into the demo's folders) carry no
    demo recipe: reusing them would let the card misstate how the model was made."""
    work = tmp_path / "runs"
    (work / "demo-data" / "v1.0-trainval").mkdir(parents=True)
    (work / "demo-data" / "v1.0-trainval" / "lidarseg.json").write_text("[]")
    (work / "demo-train").mkdir()
    (work / "demo-train" / "best.pt").write_bytes(b"40 steps")
    assert main(["--work", str(work), "--out", str(tmp_path / "out"), *SMALL]) == 2
    error = capsys.readouterr().err
    assert f"{work / 'demo-data'}: no recorded recipe" in error
    assert f"{work / 'demo-train'}: no recorded recipe" in error
    assert commands == [] and (work / "demo-train" / "best.pt").read_bytes() == b"40 steps"


def test_the_bundled_card_states_its_targets_from_its_own_metrics() -> None:
    from training.demo import TARGETS, _targets

    demo = Path(__file__).resolve().parents[2] / "models" / "demo"
    metrics = json.loads((demo / "metrics.json").read_text())
    section = _targets(metrics)
    assert section in (demo / "MODEL_CARD.md").read_text()  # regenerated, not hand-written
    miou = 100 * metrics["real_scans"]["semantickitti"]["miou"]
    row = next(line for line in section.splitlines() if line.startswith("| SemanticKITTI mIoU"))
    assert f"≥ {TARGETS['miou']:g} %" in row and f"{miou:.1f} %" in row
    assert row.endswith("| yes |") == (miou >= TARGETS["miou"])
