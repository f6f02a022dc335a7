"""``python -m training.demo`` refuses to replace an export before spending any time on data or training."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.demo import main


def test_a_non_empty_out_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models" / "demo"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    assert main(["--out", str(out), "--work", str(tmp_path / "runs")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no data generated, nothing trained
    assert (out / "manifest.json").read_text() == "{}"
