"""A labelling job killed with SIGKILL mid-run leaves no half-written label file, and --resume
finishes it without redoing a finished file; Ctrl-C stops it with a summary (exit 130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serve.label.cli import main
from tests.serve.label.conftest import copy_sweeps

ROOT = Path(__file__).resolve().parents[3]
SCANS = 40


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "serve.label", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the signal reaches the workers too
    )


def _wait_for_outputs(process: subprocess.Popen[bytes], out: Path, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(out.glob("*_lidarseg.bin"))) < at_least:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.01)


@pytest.fixture
def many_sweeps(synthetic_nuscenes: Path, tmp_path: Path) -> Path:
    copy_sweeps(synthetic_nuscenes, tmp_path / "scans", SCANS)
    return tmp_path / "scans"


def test_kill_9_then_resume_finishes_without_recomputing(
    many_sweeps: Path, tiny_export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    args = ["--model", str(tiny_export), "--out", str(out), "--files", str(many_sweeps), "--no-progress"]
    process = _start([*args, "--workers", "2", "--threads", "1"])
    _wait_for_outputs(process, out, 3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    finished = {p.name: p.stat() for p in out.glob("*_lidarseg.bin")}
    assert 3 <= len(finished) < SCANS, "the job was not killed mid-run"
    assert not (out / "label-summary.json").exists()  # it never got to the end
    for name in finished:  # every label file is whole: one byte per point of its scan
        scan = many_sweeps / name.replace("_lidarseg.bin", ".pcd.bin")
        assert (out / name).stat().st_size == scan.stat().st_size // 20
    assert main([*args, "--resume"]) == 0
    summary = json.loads((out / "label-summary.json").read_text())
    assert (summary["skipped"], summary["written"], summary["failed"]) == (
        len(finished),
        SCANS - len(finished),
        0,
    )
    for name, before in finished.items():  # not rewritten: same file, same time
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(list(out.glob("*_lidarseg.bin"))) == SCANS
    assert not list(out.glob(".*.tmp")), "the killed run's unfinished files were left"


def test_resume_redoes_an_output_that_does_not_verify(
    many_sweeps: Path, tiny_export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    args = [
        "--model",
        str(tiny_export),
        "--out",
        str(out),
        "--files",
        str(many_sweeps / "sweep-0[01].pcd.bin"),
    ]
    assert main([*args, "--no-progress"]) == 0
    good = (out / "sweep-00_lidarseg.bin").read_bytes()
    (out / "sweep-00_lidarseg.bin").write_bytes(good[:-1])  # one point short
    assert main([*args, "--no-progress", "--resume"]) == 0
    summary = json.loads((out / "label-summary.json").read_text())
    assert (summary["skipped"], summary["written"]) == (1, 1)
    assert (out / "sweep-00_lidarseg.bin").read_bytes() == good


def test_ctrl_c_stops_with_a_summary_and_exit_130(
    many_sweeps: Path, tiny_export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    process = _start(
        ["--model", str(tiny_export), "--out", str(out), "--files", str(many_sweeps), "--no-progress"]
    )
    _wait_for_outputs(process, out, 2)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) == 130
    summary = json.loads((out / "label-summary.json").read_text())
    assert summary["interrupted"] and 2 <= summary["written"] < SCANS
    assert summary["written"] == len(list(out.glob("*_lidarseg.bin")))
    labels = np.fromfile(out / "sweep-00_lidarseg.bin", dtype=np.uint8)
    assert labels.size == (many_sweeps / "sweep-00.pcd.bin").stat().st_size // 20
