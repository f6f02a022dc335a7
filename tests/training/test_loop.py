"""The training loop end to end on a generated nuScenes-format dataset: kill -9 then --resume gives
the run an uninterrupted one gives; torchrun with 2 processes (gloo) equals one process over the same
global batch; a run folder is never overwritten by accident. The first two need processes (a kill -9,
torchrun); the last calls ``training.train``'s ``main`` in process."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from seg3d.checkpoint import load_checkpoint
from tests.helpers import mini_3d_config
from training.train import main as train_main

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")

# Mode 3d on the tiny encoder: the loop is what is under test, not the branches (tested in model/).
CONFIG = mini_3d_config(
    "loop_test",
    optim={"lr": 0.05},
    schedule={"unit": "step", "t_max": 10},
    loop={
        "epochs": 50,
        "batch_size": 1,
        "accumulate": 2,
        "checkpoint_every": 1,
        "val_every": 1000,
        "max_val_samples": 6,
    },
)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "loop.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def _train(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "training.train", "--no-progress", *args], env=env, **kwargs
    )


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_kill_then_resume_continues_exactly(
    synthetic_nuscenes: Path, config_path: Path, tmp_path: Path
) -> None:
    common = ["--config", str(config_path), "--data-root", str(synthetic_nuscenes)]
    straight = tmp_path / "straight"
    assert _train([*common, "--out", str(straight), "--max-steps", "5"]).wait(timeout=600) == 0

    killed = tmp_path / "killed"
    process = _train([*common, "--out", str(killed), "--max-steps", "5"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # kill -9 once a checkpoint past step 2 exists
        if (killed / "last.pt").exists() and load_checkpoint(killed / "last.pt").training["state"][
            "step"
        ] >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    interrupted = load_checkpoint(killed / "last.pt")  # complete and loadable after the kill
    step = interrupted.training["state"]["step"]
    assert 2 <= step < 5
    assert _train([*common, "--out", str(killed), "--max-steps", "5", "--resume"]).wait(timeout=600) == 0

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a.training["state"]["step"] == b.training["state"]["step"] == 5
    # same learning rate (cosine over 10 steps), same losses, same weights as the uninterrupted run
    assert a.training["scheduler"]["_last_lr"] == b.training["scheduler"]["_last_lr"]
    assert [r["loss"] for r in _log(straight)] == pytest.approx([r["loss"] for r in _log(killed)], rel=1e-5)
    assert [r["step"] for r in _log(killed)] == [1, 2, 3, 4, 5]
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert not list(killed.glob(".*.tmp"))


def test_two_processes_equal_one_over_the_same_global_batch(
    synthetic_nuscenes: Path, config_path: Path, tmp_path: Path
) -> None:
    """2 processes × batch 1 against 1 process × batch 1 × accumulate 2. BatchNorm sees one sample
    per forward in both, so the only difference is the order of float sums (gloo all-reduce):
    tolerance 1e-4 relative on the losses and 1e-4 absolute on the weights after 3 steps. BatchNorm
    running statistics are not compared: without SyncBN (as 2DPASS) DDP keeps rank 0's, which saw
    half the samples."""
    common = ["--config", str(config_path), "--data-root", str(synthetic_nuscenes), "--max-steps", "3"]
    single = tmp_path / "single"
    assert _train([*common, "--out", str(single)]).wait(timeout=600) == 0

    two = dict(CONFIG, loop={**CONFIG["loop"], "accumulate": 1})
    two_path = tmp_path / "two.yaml"
    two_path.write_text(yaml.safe_dump(two))
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.train", "--no-progress", "--config", str(two_path),
        "--data-root", str(synthetic_nuscenes), "--out", str(ddp), "--max-steps", "3",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["loss"] for r in _log(ddp)] == pytest.approx([r["loss"] for r in _log(single)], rel=1e-4)
    a, b = load_checkpoint(single / "last.pt"), load_checkpoint(ddp / "last.pt")
    compared = 0
    for key, value in a.state_dict.items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(b.state_dict[key], value, rtol=1e-4, atol=1e-4, msg=key)
            compared += 1
    assert compared > 50


def test_an_existing_run_is_not_overwritten(
    synthetic_nuscenes: Path, config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process: ``training.train``'s exit code and message are what is under test."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"x")
    common = ["--no-progress", "--config", str(config_path), "--data-root", str(synthetic_nuscenes)]
    returncode = train_main([*common, "--out", str(out)])
    err = capsys.readouterr().err
    assert returncode == 2 and "--resume" in err
    returncode = train_main([*common, "--out", str(tmp_path / "new"), "--resume"])
    err = capsys.readouterr().err
    assert returncode == 2 and "no last.pt" in err
    returncode = train_main(
        [
            "--no-progress",
            "--config",
            str(config_path),
            "--data-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert returncode == 2 and "v1.0-mini is missing" in err


def test_a_step_budget_sets_the_bar_and_the_schedule_and_ends_validated(
    synthetic_nuscenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-steps 3 on a config whose schedule spans 10 steps and whose epochs are 40 steps, validating
    every 1000 epochs: the bar counts 3 steps, the cosine reaches eta_min at step 3, and the run ends
    with a validated best.pt and last.pt at step 3 (no val_every boundary was reached)."""
    from training.config import TrainConfig
    from training.loop import train

    config = TrainConfig.model_validate(
        {**CONFIG, "loop": {**CONFIG["loop"], "accumulate": 1, "checkpoint_every": 100}}
    )
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text(
        '{"step": 7, "loss": 1.0}\n'
    )  # a run cut before its first checkpoint
    result = train(config, synthetic_nuscenes, out, max_steps=3, progress=True)
    assert result.steps == 3 and result.epochs_done == 0
    assert "3/3" in capsys.readouterr().err  # the progress bar's total is the budget
    log = _log(out)
    assert [row["step"] for row in log] == [1, 2, 3]  # the stale line is gone
    assert log[-1]["lr"] == pytest.approx(config.schedule.eta_min)  # annealed over the 3 steps
    assert log[0]["lr"] > 0.5 * config.optim.lr
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(out / name).training["state"]
        assert state["step"] == 3 and len(state["history"]) == 1  # validated at the end
    assert yaml.safe_load((out / "config.yaml").read_text())["loop"]["max_steps"] == 3


def test_schedule_period_follows_the_budget() -> None:
    from training.config import TrainConfig, load_train_config
    from training.loop import schedule_period

    demo = load_train_config("demo")
    assert demo.loop.max_steps == demo.schedule.t_max == 600  # the bar shows 600 steps without --max-steps
    assert schedule_period(demo, steps_per_epoch=80, total_steps=600) == 600
    assert schedule_period(demo, steps_per_epoch=80, total_steps=40) == 40
    # a longer budget stretches the period: the rate anneals to the end instead of climbing back
    assert schedule_period(demo, steps_per_epoch=80, total_steps=1200) == 1200
    per_epoch = TrainConfig.model_validate({**CONFIG, "schedule": {"unit": "epoch"}, "loop": {"epochs": 12}})
    assert schedule_period(per_epoch, steps_per_epoch=10, total_steps=120) == 8  # 2DPASS: epochs - 4
    assert schedule_period(per_epoch, steps_per_epoch=10, total_steps=35) == 3  # the budget's whole epochs


def test_a_weight_average_is_what_checkpoints_hold_and_resumes_exactly(
    synthetic_nuscenes: Path, tmp_path: Path
) -> None:
    """loop.ema_decay 0.5 over 3 steps, once straight and once cut after step 2 (an exception in the
    step callback, after last.pt of step 2 was written) then resumed: the checkpoints' weights are the
    average, the raw weights ride beside them, step 3's average is 0.5 × step 2's + 0.5 × step 3's raw
    weights (so a resumed average continues, it does not restart from a copy), and the resumed run
    ends where the straight one does."""
    from training.config import TrainConfig
    from training.loop import train

    config = TrainConfig.model_validate(
        {**CONFIG, "loop": {**CONFIG["loop"], "accumulate": 1, "ema_decay": 0.5}}
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums in one order, so the two runs can be compared closely
    try:
        straight = tmp_path / "straight"
        train(config, synthetic_nuscenes, straight, max_steps=3, progress=False)

        def crash(step: int, loss: float) -> None:
            if step == 3:
                raise KeyboardInterrupt

        cut = tmp_path / "cut"
        with pytest.raises(KeyboardInterrupt):
            train(config, synthetic_nuscenes, cut, max_steps=3, progress=False, on_step=crash)
        at_two = load_checkpoint(cut / "last.pt")
        assert at_two.training["state"]["step"] == 2
        train(config, synthetic_nuscenes, cut, max_steps=3, resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(cut / "last.pt")
    moved = 0
    for key, average in a.state_dict.items():
        raw = a.training["raw_state_dict"][key]
        torch.testing.assert_close(b.state_dict[key], average, rtol=1e-5, atol=1e-6, msg=key)
        torch.testing.assert_close(b.training["raw_state_dict"][key], raw, rtol=1e-5, atol=1e-6, msg=key)
        if average.is_floating_point():
            expected = 0.5 * at_two.state_dict[key] + 0.5 * raw
            torch.testing.assert_close(average, expected, rtol=1e-5, atol=1e-6, msg=key)
            moved += int(not torch.equal(average, raw))
    assert moved > 0  # the average is not the raw weights
    best = load_checkpoint(straight / "best.pt")
    for key, value in a.state_dict.items():  # validated and saved at the end: the average
        torch.testing.assert_close(best.state_dict[key], value, msg=key)

    plain_config = TrainConfig.model_validate({**CONFIG, "loop": {**CONFIG["loop"], "accumulate": 1}})
    with pytest.raises(ValueError, match="ema_decay"):
        train(plain_config, synthetic_nuscenes, cut, max_steps=4, resume=True, progress=False)


def test_per_term_gradient_norms_are_logged_every_n_steps(synthetic_nuscenes: Path, tmp_path: Path) -> None:
    """loop.term_grad_norms_every 2 on mode 2ddata: steps 2 and 4 log ``grad3d/<term>`` for every
    term, the other steps do not; seg2d (the 2D head) never reaches the 3D encoder, kl (weight 0)
    is measured as 0."""
    from training.config import TrainConfig
    from training.loop import train

    data = CONFIG["data"]
    config = TrainConfig.model_validate(
        {
            **CONFIG,
            "branch": {"mode": "2ddata", "kl_weight": 0.0},
            "data": {**data, "nuscenes": {**data["nuscenes"], "cameras": "random", "image_size": [96, 64]}},
            "loop": {
                **CONFIG["loop"],
                "accumulate": 1,
                "checkpoint_every": 100,
                "max_val_samples": 1,
                "term_grad_norms_every": 2,
            },
        }
    )
    train(config, synthetic_nuscenes, tmp_path / "run", max_steps=4, progress=False)
    log = _log(tmp_path / "run")
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    scales = range(len(config.model.encoder.scale_list))
    terms = {"seg3d", "seg2d"} | {f"{kind}/{i}" for kind in ("aux3d", "fused", "kl") for i in scales}
    for row in log:
        measured = {
            key.removeprefix("grad3d/"): value for key, value in row.items() if key.startswith("grad3d/")
        }
        if row["step"] % 2:
            assert measured == {}
            continue
        assert set(measured) == terms
        assert all(math.isfinite(v) and v >= 0 for v in measured.values())
        assert measured["seg3d"] > 0 and all(measured[f"aux3d/{i}"] > 0 for i in scales)
        assert measured["seg2d"] == 0 and all(measured[f"kl/{i}"] == 0 for i in scales)
