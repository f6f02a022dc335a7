"""Every backend that runs here gives the same labels for the same export and cloud."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from seg3d.manifest import load_manifest
from seg3d.preprocess import prepare_inputs
from serve.backends import BackendUnavailable, choose_backend, label, load_backend
from serve.segmenter import Segmenter


def test_cpu_backends_agree_on_a_real_sweep(tiny_export: Path, nuscenes_scans) -> None:
    pytest.importorskip("spconv.pytorch")
    config = load_manifest(tiny_export).config
    points = nuscenes_scans[1].points.numpy()
    results = {}
    for name in ("onnxruntime", "torch", "spconv"):
        backend = load_backend(name, tiny_export, config)
        assert backend.name == name and backend.device == "cpu"
        results[name] = Segmenter(config, backend, 2_000_000).segment(points).labels
    for name in ("torch", "spconv"):
        agreement = float((results[name] == results["onnxruntime"]).mean())
        assert agreement >= 0.999, (name, agreement)
    assert results["onnxruntime"].min() >= 1


def test_auto_measures_and_keeps_the_fastest(tiny_export: Path, nuscenes_scans, caplog) -> None:
    config = load_manifest(tiny_export).config
    probe = prepare_inputs(nuscenes_scans[0].points[:20_000], config)
    with caplog.at_level(logging.INFO, logger="serve.backends"):
        backend = choose_backend("auto", tiny_export, config, probe=probe)
    line = next(r.getMessage() for r in caplog.records if "backend auto ->" in r.getMessage())
    assert "tensorrt: " in line and "model.engine not found" in line  # skipped, with the reason
    # each candidate by its label: the graph an onnxruntime candidate runs, a torch one's precision
    timings = dict(re.findall(r"((?:onnxruntime|torch)\[[\w-]+\]|spconv) (\d+) ms", line))
    assert {"onnxruntime[dense-fp32]", "torch[fp32]", "spconv"} <= set(timings)
    fastest = min(timings, key=lambda name: int(timings[name]))
    assert label(backend) == fastest or int(timings[label(backend)]) == int(timings[fastest])


def test_auto_without_probe_takes_the_first_that_loads(tiny_export: Path) -> None:
    config = load_manifest(tiny_export).config
    assert choose_backend("auto", tiny_export, config).name == "onnxruntime"  # no engine in a CPU export


def test_missing_backend_files_are_reported(tmp_path: Path, tiny_export: Path) -> None:
    config = load_manifest(tiny_export).config
    with pytest.raises(BackendUnavailable, match=r"model\.onnx not found"):
        load_backend("onnxruntime", tmp_path, config)
    with pytest.raises(BackendUnavailable, match=r"encoder3d\.pt not found"):
        load_backend("torch", tmp_path, config)
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        load_backend("tvm", tiny_export, config)
