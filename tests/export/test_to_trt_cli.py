"""`python export/to_trt.py`: --out is never silently overwritten, models have their own name, and the
parity check always runs on something (or says loudly that it did not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import export.to_trt as to_trt
from seg3d.manifest import load_manifest
from seg3d.model import spconv_available
from seg3d.scans import synthetic_sweep

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--config", "tiny", "--random-init", "--onnx-only"]
needs_spconv = pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")


def _export(out: Path, *extra: str) -> int:
    return to_trt.main([*FAST, "--out", str(out), *extra])


# --- A. --out is never silently overwritten ---------------------------------------------------------


def test_non_empty_out_is_refused_without_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert _export(out, "--skip-parity") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert _export(out, "--skip-parity", "--seed", "7") == 2
    err = capsys.readouterr().err
    assert f"--out {out} exists and is not empty; pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")  # any content counts, not only an earlier export
    assert _export(other, "--skip-parity") == 2
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_the_export_and_its_stale_engine(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert _export(out, "--skip-parity") == 0
    first = load_manifest(out).files["model.onnx"].sha256
    (out / "model.engine").write_bytes(b"stale engine of the old graph")
    assert _export(out, "--skip-parity", "--seed", "7", "--overwrite") == 0
    manifest = load_manifest(out)  # every artifact matches the new manifest
    assert manifest.files["model.onnx"].sha256 != first
    assert sorted(p.name for p in out.iterdir()) == ["encoder3d.pt", "manifest.json", "model.onnx"]


def test_empty_existing_out_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert _export(out, "--skip-parity") == 0
    assert (out / "manifest.json").is_file()


# --- B. models have their own name ------------------------------------------------------------------


def test_name_defaults_to_the_out_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo-v2.1"
    assert _export(out, "--skip-parity") == 0
    manifest = load_manifest(out)
    assert manifest.model.name == "demo-v2.1"
    assert manifest.config.name == "tiny"  # the encoder config keeps its own name


def test_explicit_name(tmp_path: Path) -> None:
    out = tmp_path / "folder"
    assert _export(out, "--skip-parity", "--name", "road_model-2") == 0
    assert load_manifest(out).model.name == "road_model-2"


@pytest.mark.parametrize("name", ["my model", "a/b", "..", ".", "", "x" * 65, "naïve", "v2?"])
def test_bad_name_is_refused(tmp_path: Path, capsys, name: str) -> None:
    out = tmp_path / "out"
    assert _export(out, "--skip-parity", "--name", name) == 2
    err = capsys.readouterr().err
    assert f"--name {name!r} is not a valid model name" in err and "/v2/models/NAME" in err
    assert not out.exists()  # refused before anything was created


def test_out_folder_that_is_no_valid_name_asks_for_name(tmp_path: Path, capsys) -> None:
    out = tmp_path / "my model"
    assert _export(out, "--skip-parity") == 2
    err = capsys.readouterr().err
    assert "'my model' is not a valid model name" in err and "pass --name" in err
    assert _export(out, "--skip-parity", "--name", "my-model") == 0
    assert load_manifest(out).model.name == "my-model"


def test_bundled_demo_model_is_named_demo() -> None:
    manifest = load_manifest(ROOT / "models" / "demo")  # verifies the artifacts' hashes too
    assert manifest.model.name == "demo" and manifest.config.name == "tiny"


# --- C. parity never skips silently -----------------------------------------------------------------


def test_skip_parity_warns_loudly(tmp_path: Path, capsys) -> None:
    assert _export(tmp_path / "o", "--skip-parity") == 0
    assert "WARNING: parity check skipped: --skip-parity" in capsys.readouterr().err
    parity = load_manifest(tmp_path / "o").parity
    assert parity.status == "skipped" and parity.reason == "--skip-parity"


def test_strict_fails_a_skipped_parity(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert _export(out, "--skip-parity", "--strict") == 3
    err = capsys.readouterr().err
    assert "WARNING: parity check skipped: --skip-parity" in err and "--strict" in err
    assert not out.exists()


def test_missing_spconv_warns_and_strict_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(to_trt, "spconv_available", lambda: False)
    assert _export(tmp_path / "a") == 0
    assert "WARNING: parity check skipped: spconv is not installed" in capsys.readouterr().err
    assert load_manifest(tmp_path / "a").parity.reason == "spconv is not installed"
    assert _export(tmp_path / "b", "--strict") == 3


@needs_spconv
def test_parity_falls_back_to_synthetic_sweeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(to_trt, "real_scans", lambda *a, **k: [])  # a clone without ../shared/data/real
    out = tmp_path / "o"
    assert _export(out, "--strict") == 0
    assert "parity on synthetic sweeps" in capsys.readouterr().out
    parity = load_manifest(out).parity
    assert parity.status == "passed" and parity.source == "synthetic"
    assert [s.scan for s in parity.scans] == [f"synthetic/seed{s}" for s in to_trt.SYNTHETIC_PARITY_SEEDS]
    assert len({s.max_abs_logit for s in parity.scans}) == len(parity.scans)  # different clouds


@needs_spconv
def test_parity_on_the_users_scans(tmp_path: Path) -> None:
    sweep = synthetic_sweep(8_000, seed=5, intensity_max=255.0).numpy()
    nuscenes = np.concatenate([sweep, np.zeros((len(sweep), 1), np.float32)], axis=1)  # + ring column
    nuscenes.astype("<f4").tofile(tmp_path / "a.pcd.bin")
    kitti = sweep.copy()
    kitti[:, 3] /= 255.0  # KITTI reflectance 0-1
    kitti.astype("<f4").tofile(tmp_path / "b.bin")

    out = tmp_path / "o"
    assert _export(out, "--parity-scans", str(tmp_path / "a.pcd.bin")) == 0
    parity = load_manifest(out).parity
    assert parity.status == "passed" and parity.source == "user"
    assert [s.scan for s in parity.scans] == ["nuscenes/a.pcd.bin"]

    out_k = tmp_path / "k"
    assert _export(out_k, "--parity-scans", str(tmp_path / "b.bin"), "--parity-format", "kitti") == 0
    parity_k = load_manifest(out_k).parity
    assert [s.scan for s in parity_k.scans] == ["kitti/b.bin"]
    # same cloud, read in the model's intensity scale either way: same points fed, same logits
    assert parity_k.scans[0].points == parity.scans[0].points
    assert parity_k.scans[0].max_abs_logit == pytest.approx(parity.scans[0].max_abs_logit, rel=1e-4)


@needs_spconv
def test_default_parity_records_the_real_scans(tmp_path: Path, nuscenes_scans) -> None:
    out = tmp_path / "o"
    assert _export(out) == 0
    parity = load_manifest(out).parity
    assert parity.source == "real" and {s.name for s in nuscenes_scans} <= {s.scan for s in parity.scans}


def test_bad_parity_scans_are_refused(tmp_path: Path, capsys) -> None:
    assert _export(tmp_path / "o1", "--parity-scans", str(tmp_path / "missing.bin")) == 2
    assert "missing.bin" in capsys.readouterr().err
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\0" * 28)  # not a whole number of 5-float rows
    assert _export(tmp_path / "o2", "--parity-scans", str(odd)) == 2
    assert "odd.bin" in capsys.readouterr().err
    far = tmp_path / "far.bin"
    np.full((10, 4), 500.0, "<f4").tofile(far)
    assert _export(tmp_path / "o3", "--parity-scans", str(far), "--parity-format", "xyzi") == 2
    assert "no point inside the model's crop range" in capsys.readouterr().err
    assert _export(tmp_path / "o4", "--parity-scans", str(far), "--skip-parity") == 2
    assert "contradict" in capsys.readouterr().err


def test_bad_real_data_env_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    if not spconv_available():
        pytest.skip("parity (which reads the real scans) needs spconv")
    monkeypatch.setenv("SEG3D_REAL_DATA", str(tmp_path / "nonexistent"))
    assert _export(tmp_path / "o") == 2
    assert f"SEG3D_REAL_DATA={tmp_path / 'nonexistent'}" in capsys.readouterr().err


# --- D. help ----------------------------------------------------------------------------------------


def test_help_reads_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "export/to_trt.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "``" not in text and "`" not in text
    for flag in ("--overwrite", "--name", "--parity-scans", "--parity-format", "--strict"):
        assert flag in text


def test_the_done_line_names_the_model(tmp_path: Path, capsys) -> None:
    assert _export(tmp_path / "named", "--skip-parity", "--name", "mine") == 0
    assert "(model mine)" in capsys.readouterr().out  # not the last file moved into --out
