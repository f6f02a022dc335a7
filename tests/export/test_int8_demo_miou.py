"""The int8 accuracy gate for the demo model (issue 13, item 3): int8 mIoU on held-out synthetic
scenes within 0.5 points of fp32.

The demo model (`models/demo/`, config ``tiny``) trained on the synthetic scenes of seed 0
(`models/demo/MODEL_CARD.md`); a synthetic scene's world is drawn from (seed, scene index) alone, so
every scene of another seed is new to it. Here:

- *calibration*: `CALIBRATION_SWEEPS` synthetic sweeps of seed `CALIBRATION_SEED`, in the nuScenes
  layout, given to ``--calibrate ROOT``;
- *held out*: `HELD_OUT_SWEEPS` synthetic sweeps of seed `HELD_OUT_SEED` (bench/int8.py's), one
  keyframe per scene, which neither training, calibration nor the export's parity check read.

Both graphs are the sparse form, exported by ``export/to_trt.py`` and run by the service's ONNX
Runtime backend; the metric is the model card's (points in the crop, one vote, `training.metrics`,
IoU as fractions: 0.5 points = 0.005). The helpers are bench/int8.py's (its ``--miou-synthetic``).

The int8 graph uses the default ``--int8-target`` (0.995), which keeps most layers in int8 on these
clouds (39 of the 42 the selection ranks; 45 of the manifest's 52 layers with the shortcuts riding
along, as measured). Its parity check against spconv runs on the calibration sweeps
(``--parity-scans``), not on the real scans: this model has seen synthetic scenes only, and with
ranges calibrated on synthetic sweeps no target passes the real-scan gate (measured on this
calibration: 85.4 % worst agreement at 0.995, 94.2 % at 0.999 with 14 int8 layers, 98.6 % at 1.0 with
a single int8 layer, the worst scans being the KITTI ones). The real-scan gate is tested on its own
(test_to_trt_int8.py: a real-scan calibration passes at 0.999, and the broken-calibration case
fails with exit 3 and writes nothing); this test is about the accuracy on held-out synthetic scenes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import export.to_trt as to_trt
from seg3d.manifest import load_manifest
from tests.bench.conftest import load_bench_script

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "demo"

CALIBRATION_SEED = 202
CALIBRATION_SWEEPS = 8
HELD_OUT_SWEEPS = 24
#: Largest allowed |int8 mIoU − fp32 mIoU| (fractions): 0.5 points.
TOLERANCE = 0.005


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed (the synthetic generator)")
    return load_bench_script("int8")


@pytest.fixture(scope="module")
def measured(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both exports, and their IoU on the held-out sweeps."""
    assert bench.HELD_OUT_SEED not in (0, CALIBRATION_SEED)  # 0: the demo model's training scenes
    tmp = tmp_path_factory.mktemp("int8-miou")
    calibration = bench.synthetic_sweeps(tmp / "calibration", CALIBRATION_SWEEPS, CALIBRATION_SEED, workers=2)
    held_out = bench.synthetic_sweeps(tmp / "held-out", HELD_OUT_SWEEPS, bench.HELD_OUT_SEED, workers=2)
    base = ["--checkpoint", str(DEMO / "encoder3d.pt"), "--graph", "sparse", "--onnx-only"]
    fp32, int8 = tmp / "fp32", tmp / "int8"
    assert to_trt.main([*base, "--out", str(fp32), "--precision", "fp32"]) == 0
    calibration_files = sorted((calibration / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    assert len(calibration_files) == CALIBRATION_SWEEPS
    args = [*base, "--out", str(int8), "--precision", "int8", "--calibrate", str(calibration)]
    args += ["--calibrate-clouds", str(CALIBRATION_SWEEPS), "--parity-scans", *map(str, calibration_files)]
    assert to_trt.main(args) == 0
    samples = bench.labelled_sweeps(held_out, load_manifest(fp32).config)
    return {
        "calibration": calibration,
        "held_out": held_out,
        "samples": samples,
        "fp32": (fp32, bench.graph_miou(fp32, samples)),
        "int8": (int8, bench.graph_miou(int8, samples)),
    }


def test_held_out_sweeps_are_labelled_and_new(measured: dict[str, Any]) -> None:
    samples = measured["samples"]
    assert len(samples) == HELD_OUT_SWEEPS
    assert all(s.labels is not None and int((s.labels > 0).sum()) > 10_000 for s in samples)
    held_out = {p.name for p in (measured["held_out"] / "samples" / "LIDAR_TOP").iterdir()}
    calibration = {p.name for p in (measured["calibration"] / "samples" / "LIDAR_TOP").iterdir()}
    assert held_out.isdisjoint(calibration)
    quantization = load_manifest(measured["int8"][0]).graph.quantization
    assert quantization is not None
    assert str(measured["calibration"]) in quantization.calibration
    assert str(measured["held_out"]) not in quantization.calibration


def test_int8_graph_is_int8_and_passed_its_parity_check(measured: dict[str, Any]) -> None:
    manifest = load_manifest(measured["int8"][0])
    assert manifest.model.precision == "int8" and manifest.graph.form == "sparse"
    assert manifest.parity.status == "passed" and manifest.parity.min_argmax_agreement >= 0.99
    quantization = manifest.graph.quantization
    assert quantization is not None and quantization.clouds == CALIBRATION_SWEEPS
    layers = manifest.graph.layers
    int8 = [name for name, precision in layers.items() if precision == "int8"]
    # at the default target every layer's calibration keeps the labels: most of the graph is int8
    assert set(quantization.activation_ranges) <= set(int8)
    assert len(int8) >= len(layers) // 2, f"only {len(int8)} of {len(layers)} layers in int8"
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(manifest.graph.op_types)
    fp32 = load_manifest(measured["fp32"][0])
    assert fp32.graph.quantization is None
    assert set(fp32.graph.layers.values()) == {"fp32"}


def test_demo_int8_miou_within_half_a_point_of_fp32(measured: dict[str, Any], capsys) -> None:
    fp32, int8 = measured["fp32"][1], measured["int8"][1]
    manifest = load_manifest(measured["int8"][0])
    layers = manifest.graph.layers
    int8_layers = sum(p == "int8" for p in layers.values())
    with capsys.disabled():
        print(
            f"\nheld-out synthetic mIoU over {HELD_OUT_SWEEPS} sweeps: fp32 {100 * fp32.miou:.2f} %, "
            f"int8 {100 * int8.miou:.2f} % ({int8_layers} of {len(layers)} layers in int8); "
            f"Δ {100 * (int8.miou - fp32.miou):+.3f} points; int8 parity on the calibration sweeps "
            f"{manifest.parity.min_argmax_agreement:.4%} worst"
        )
    # the fp32 graph is the trained model: near the model card's held-out figure (50.4 %), far
    # above what an untrained or constant model scores (a few per cent)
    card = json.loads((DEMO / "metrics.json").read_text())["crop"]["miou"]
    assert fp32.miou >= card - 0.10, f"fp32 mIoU {fp32.miou:.4f} on held-out sweeps, card {card:.4f}"
    assert fp32.accuracy >= 0.8
    assert abs(int8.miou - fp32.miou) <= TOLERANCE, (
        f"int8 mIoU {100 * int8.miou:.2f} vs fp32 {100 * fp32.miou:.2f}: "
        f"{100 * abs(int8.miou - fp32.miou):.2f} points apart (allowed {100 * TOLERANCE:.1f})"
    )
