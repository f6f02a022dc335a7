"""export/calibrate.py: the range rules, where calibration clouds come from, and the int8 layer
choice."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from export.calibrate import (
    HISTOGRAM_BINS,
    calibrate,
    calibration_clouds,
    entropy_threshold,
    graph_feeds,
    percentile_threshold,
    select_int8_layers,
)
from export.onnx_graph import calibration_graph
from export.parity import ort_session
from seg3d.checkpoint import load_encoder
from seg3d.config import load_config
from seg3d.model.folding import fold_state_dict
from seg3d.scans import real_data_dir, synthetic_sweep


def test_percentile_threshold_is_the_upper_edge_of_the_bin_reaching_it() -> None:
    histogram = np.zeros(100)
    histogram[:90] = 1.0  # 90 % of the mass in bins 0-89
    histogram[99] = 10.0
    assert percentile_threshold(histogram, 10.0, 90.0) == pytest.approx(9.0)
    assert percentile_threshold(histogram, 10.0, 100.0) == pytest.approx(10.0)
    assert percentile_threshold(np.zeros(10), 1.0, 99.0) == 0.0


def test_entropy_keeps_a_dense_range_and_clips_a_lone_outlier() -> None:
    rng = np.random.default_rng(0)
    uniform = np.histogram(rng.uniform(0, 1, 200_000), bins=HISTOGRAM_BINS, range=(0, 1))[0].astype(float)
    assert entropy_threshold(uniform, 1.0) > 0.9  # clipping a flat distribution loses information
    values = np.concatenate([np.abs(rng.normal(0, 1, 200_000)), [40.0]])  # one value 40σ out
    outlier = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, 40))[0].astype(float)
    assert 3.0 < entropy_threshold(outlier, 40.0) < 20.0


@pytest.fixture(scope="module")
def demo_model():
    """The bundled demo model (trained: its labels vary) and two stand-in sweeps."""
    model = load_encoder(Path(__file__).resolve().parents[2] / "models" / "demo" / "encoder3d.pt")
    state = fold_state_dict(model.state_dict(), model)
    scale = model.config.input.intensity_max
    clouds = [synthetic_sweep(seed=seed, intensity_max=scale) for seed in (100, 101)]
    return state, model.config, graph_feeds(clouds, model.config, "sparse")


def test_ranges_follow_the_method(demo_model) -> None:
    state, config, feeds = demo_model
    model, sites = calibration_graph(state, config, "sparse")
    session = ort_session(model.SerializeToString())
    observed = {layer: 0.0 for layer in sites}
    for f in feeds:
        for layer, x in zip(sites, session.run(list(sites.values()), f), strict=True):
            observed[layer] = max(observed[layer], float(np.abs(x).max()))
    minmax = calibrate(state, config, feeds, "minmax", "sparse", progress=False)
    assert minmax.ranges == pytest.approx(observed) and minmax.clipped_layers == 0
    assert minmax.scales["head.0"] == pytest.approx(observed["head.0"] / 127)
    percentile = calibrate(state, config, feeds, "percentile", "sparse", percentile=99.0, progress=False)
    assert all(percentile.ranges[k] <= observed[k] * (1 + 1e-6) for k in observed)
    assert percentile.clipped_layers > len(observed) // 2
    with pytest.raises(ValueError, match="calibration method"):
        calibrate(state, config, feeds, "mean", "sparse")  # type: ignore[arg-type]


def test_selection_returns_the_most_sensitive_layers_to_float(demo_model) -> None:
    state, config, feeds = demo_model
    calibration = calibrate(state, config, feeds, "minmax", "sparse", progress=False)
    everything = select_int8_layers(state, config, calibration, feeds, 0.0, "sparse", progress=False)
    assert everything.float_layers == [] and everything.scales == calibration.scales
    assert len(everything.steps) == 1
    # ranges 30x too small saturate every layer: all-int8 no longer reaches the target
    narrow = replace(calibration, ranges={k: v / 30 for k, v in calibration.ranges.items()})
    strict = select_int8_layers(state, config, narrow, feeds, 0.999, "sparse", progress=False)
    assert strict.steps[0].float_layers == 0 and strict.steps[0].agreement < 0.999
    assert strict.float_layers and strict.scales  # some layers back in float32, some still int8
    assert set(strict.scales) | set(strict.float_layers) == set(narrow.scales)
    assert strict.agreement >= 0.999 or len(strict.scales) == 1
    chosen = [s for s in strict.steps if s.float_layers == len(strict.float_layers)]
    assert strict.agreement == chosen[-1].agreement


def _copy(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)


def test_calibration_clouds_from_roots_folders_and_files(tmp_path: Path) -> None:
    real = real_data_dir()
    if real is None:
        pytest.skip("real scans not found")
    config = load_config("tiny")
    sweeps = sorted((real / "nuscenes" / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    _copy(sweeps, tmp_path / "nusc" / "samples" / "LIDAR_TOP")
    clouds, described = calibration_clouds([tmp_path / "nusc"], "kitti", config, 2)  # the root's format wins
    assert [c.kind for c in clouds] == ["nuscenes", "nuscenes"]
    assert [c.path.name for c in clouds] == [sweeps[0].name, sweeps[-1].name]  # evenly spaced ends
    assert described.startswith("2 of 4 clouds")
    kitti, _ = calibration_clouds([real / "semantickitti"], "nuscenes", config, 16)
    assert len(kitti) == 3 and {c.kind for c in kitti} == {"kitti"}
    _copy(sweeps[:2], tmp_path / "plain")
    plain, _ = calibration_clouds([tmp_path / "plain", sweeps[3]], "nuscenes", config, 16)
    assert len(plain) == 3
    with pytest.raises(FileNotFoundError, match="no such file"):
        calibration_clouds([tmp_path / "absent"], "nuscenes", config, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no point files"):
        calibration_clouds([tmp_path / "empty"], "nuscenes", config, 4)
    far = tmp_path / "far.bin"
    np.full((10, 5), 500.0, dtype=np.float32).tofile(far)
    with pytest.raises(ValueError, match="crop range"):
        calibration_clouds([far], "nuscenes", config, 4)
