from __future__ import annotations

import numpy as np
import pytest

from seg3d.cli import main


def test_describe_prints_the_2dpass_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--config", "nuscenes_full"]) == 0
    out = capsys.readouterr().out
    assert "45,614,865" in out
    assert "block 5: point branch" in out


def test_smoke_on_a_kitti_file_converts_intensity(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    g = np.random.default_rng(0)
    cloud = np.concatenate(
        [g.uniform(-30, 30, (3000, 2)), g.uniform(-2, 1, (3000, 1)), g.uniform(0, 1, (3000, 1))], 1
    )
    path = tmp_path / "scan.bin"
    cloud.astype(np.float32).tofile(path)
    assert main(["smoke", "--scan", str(path), "--format", "kitti"]) == 0
    out = capsys.readouterr().out
    assert "3,000 points, 3,000 inside the crop" in out
    assert "logits (3000, 17)" in out


def test_smoke_reports_wrong_format_clearly(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scan.bin"
    np.zeros(8, dtype=np.float32).tofile(path)  # 32 bytes: 2 KITTI points, not whole nuScenes records
    assert main(["smoke", "--scan", str(path), "--format", "nuscenes"]) == 2
    assert "not a multiple of 20" in capsys.readouterr().err


def test_unknown_config_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--config", "nope"]) == 2
    assert "bundled configs" in capsys.readouterr().err


def test_smoke_without_real_data_uses_a_synthetic_sweep(
    monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import seg3d.cli

    monkeypatch.setattr(seg3d.cli, "real_scans", lambda kinds, intensity_max=255.0: [])
    assert main(["smoke"]) == 0
    out = capsys.readouterr().out
    assert "synthetic ring sweep: 30,000 points" in out
    assert out.rstrip().endswith("OK")
