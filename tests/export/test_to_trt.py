"""`python export/to_trt.py`: what it writes, what it refuses, and that a failure leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import numpy_helper

import export.to_trt as to_trt
from export.manifest import graph_parameter_count
from seg3d.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from seg3d.config import load_config
from seg3d.io import file_sha256
from seg3d.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """Graph weights keyed by their layer name (the builder's numeric suffix dropped)."""
    model = onnx.load(str(path))
    return {
        t.name.rsplit("_", 1)[0]: torch.from_numpy(numpy_helper.to_array(t).copy())
        for t in model.graph.initializer
        if ".weight_" in t.name or ".bias_" in t.name
    }


def test_random_init_export_writes_graph_and_manifest(tmp_path: Path, nuscenes_scans, capsys) -> None:
    out = tmp_path / "tiny"
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["encoder3d.pt", "manifest.json", "model.onnx"]
    assert load_checkpoint(out / "encoder3d.pt").model_config == load_config("tiny")
    assert "python export/to_trt.py --onnx" in printed  # how to build the engine on a GPU host
    manifest = load_manifest(out)  # verifies every artifact against its record
    assert manifest.model.random_init is True and manifest.engine is None
    assert manifest.files["model.onnx"].sha256 == file_sha256(out / "model.onnx")
    assert manifest.files["encoder3d.pt"].sha256 == file_sha256(out / "encoder3d.pt")
    assert manifest.files["model.onnx"].bytes == (out / "model.onnx").stat().st_size
    contract = manifest.input
    assert contract.columns == ["x", "y", "z", "intensity"] and contract.intensity_max == 255.0
    assert contract.crop_range == [[-50.0, 50.0], [-50.0, 50.0], [-4.0, 3.0]]
    assert contract.out_of_range_policy.policy == "nearest_in_crop"
    formats = contract.file_formats
    assert formats["nuscenes"].columns == 5 and formats["kitti"].intensity_max == 1.0
    assert formats["xyzi"].intensity_max == 255.0  # already the model's scale
    assert manifest.classes.names[0] == "ignore" and manifest.classes.ignore_index == 0
    assert manifest.classes.label_map is not None
    assert manifest.classes.label_map.raw_to_train["17"] == 4  # vehicle.car -> car
    assert {"torch", "onnx", "onnxruntime", "spconv"} <= set(manifest.versions)
    parity = manifest.parity
    assert parity.status == "passed" and (parity.min_argmax_agreement or 0) >= 0.999
    scanned = {s.scan for s in parity.scans}
    assert {s.name for s in nuscenes_scans} <= scanned and any(n.startswith("kitti/") for n in scanned)
    assert manifest.graph.inputs[0].name == "features"
    raw = json.loads((out / "manifest.json").read_text())  # the on-disk format other runtimes read
    assert raw["format"] == "ddata-export/2" and raw["model_config"]["name"] == "tiny"


def test_trained_checkpoint_exports_with_parity(tmp_path: Path, trained_checkpoint: Path) -> None:
    out = tmp_path / "trained"
    assert (
        to_trt.main(["--checkpoint", str(trained_checkpoint), "--out", str(out), "--precision", "fp16"]) == 0
    )
    manifest = load_manifest(out)
    assert manifest.model.mode == "3d" and manifest.model.random_init is False
    assert manifest.model.checkpoint_sha256 == file_sha256(trained_checkpoint)
    assert manifest.parity.status == "passed" and (manifest.parity.min_argmax_agreement or 0) >= 0.99
    # the BN statistics moved during training, so folding was really exercised
    state = load_checkpoint(trained_checkpoint).state_dict
    assert float(state["encoder3d.blocks.0.voxel.0.bn1.running_var"].sub(1).abs().max()) > 1e-3


def test_2ddata_checkpoint_exports_only_the_3d_encoder(
    tmp_path: Path, ddata_checkpoint, trained_checkpoint
) -> None:
    full, alone = tmp_path / "2ddata", tmp_path / "alone"
    assert (
        to_trt.main(
            ["--checkpoint", str(ddata_checkpoint), "--out", str(full), "--skip-parity", "--onnx-only"]
        )
        == 0
    )
    assert (
        to_trt.main(
            ["--checkpoint", str(trained_checkpoint), "--out", str(alone), "--skip-parity", "--onnx-only"]
        )
        == 0
    )
    a, b = _weights(full / "model.onnx"), _weights(alone / "model.onnx")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # no 2D-encoder / LOB / aux-head parameter made it into the graph
    checkpoint = load_checkpoint(ddata_checkpoint)
    total = sum(v.numel() for v in checkpoint.state_dict.values())
    other = sum(v.numel() for k, v in checkpoint.state_dict.items() if not k.startswith("encoder3d."))
    in_graph = graph_parameter_count(onnx.load(str(full / "model.onnx")))
    assert other > 0 and in_graph < total - other + 1
    assert not any(k.startswith(("image_encoder", "lob", "aux_heads")) for k in a)
    assert load_manifest(full).model.mode == "2ddata"


def test_missing_checkpoint(tmp_path: Path, capsys) -> None:
    assert to_trt.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_corrupt_checkpoint(tmp_path: Path, trained_checkpoint: Path, capsys) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(trained_checkpoint.read_bytes()[:5000])  # truncated
    assert to_trt.main(["--checkpoint", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(3)}, foreign)
    assert to_trt.main(["--checkpoint", str(foreign), "--out", str(tmp_path / "o")]) == 2
    assert "expected format" in capsys.readouterr().err


def test_checkpoint_config_mismatch(tmp_path: Path, trained_checkpoint: Path, capsys) -> None:
    code = to_trt.main(
        ["--checkpoint", str(trained_checkpoint), "--config", "nuscenes_full", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "does not match --config 'nuscenes_full'" in capsys.readouterr().err


def test_checkpoint_whose_weights_do_not_fit_its_config(
    tmp_path: Path, trained_checkpoint: Path, capsys
) -> None:
    checkpoint = load_checkpoint(trained_checkpoint)
    lying = Checkpoint(mode="3d", model_config=load_config("nuscenes_c128"), state_dict=checkpoint.state_dict)
    path = tmp_path / "lying.pt"
    save_checkpoint(path, lying)
    assert to_trt.main(["--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "do not fit its config" in capsys.readouterr().err


def test_unwritable_out(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(blocker / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_failed_check_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out = tmp_path / "out"
    monkeypatch.setitem(to_trt.PARITY_THRESHOLD, "fp32", 1.01)  # unattainable: the parity step must fail
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(out)]) == 3
    assert "parity" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # nothing half-written, no staging folder left behind


def test_engine_from_onnx_needs_tensorrt_here(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(out), "--skip-parity"]) == 0
    code = to_trt.main(["--onnx", str(out / "model.onnx")])
    if code == 0:  # pragma: no cover - only on a GPU host with TensorRT
        assert (out / "model.engine").is_file()
    else:
        assert code == 3 and "cannot build an engine here" in capsys.readouterr().err


def test_script_runs_as_documented(tmp_path: Path) -> None:
    """`python export/to_trt.py --help` works from the repository root, as the README says."""
    result = subprocess.run(
        [sys.executable, "export/to_trt.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--random-init" in result.stdout and "--max-points" in result.stdout


def test_engine_build_refuses_a_graph_that_differs_from_its_manifest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert to_trt.main(["--config", "tiny", "--random-init", "--out", str(out), "--skip-parity"]) == 0
    graph = bytearray((out / "model.onnx").read_bytes())
    graph[-1] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(graph))
    assert to_trt.main(["--onnx", str(out / "model.onnx")]) == 2
    assert "model.onnx: SHA-256" in capsys.readouterr().err
