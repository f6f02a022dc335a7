"""Activation scales of an int8 graph: run the float graph over calibration clouds and choose, for
each quantized layer, the range its int8 input covers (scale = range / 127, zero point 0).

Methods (`CalibrationMethod`), all on the magnitudes ``|x|`` of a layer's input over every cloud:

- ``minmax``: the largest magnitude seen. Nothing is clipped; rare outliers cost resolution.
- ``percentile``: the ``percentile``-th percentile of the magnitudes (default 99.99), from a
  `HISTOGRAM_BINS`-bin histogram; the few values above it saturate.
- ``entropy``: the range whose 128-level quantization of the magnitude histogram keeps the most
  information (least Kullback-Leibler divergence from the clipped histogram), the criterion of
  TensorRT's entropy calibrator.

``minmax`` reads every cloud once; the others twice (the histogram's range is the first pass's
maximum). Calibration clouds come from `calibration_clouds`: point files, folders of them, a
nuScenes-layout root (its ``samples/LIDAR_TOP`` keyframes) or a SemanticKITTI root, evenly sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from export.onnx_graph import INT8_MAX, build_encoder_graph, calibration_graph
from export.parity import ort_session
from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_inputs
from seg3d.manifest import GraphForm
from seg3d.points import PointFormat, read_points
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import RealScan

__all__ = [
    "CALIBRATION_METHODS",
    "HISTOGRAM_BINS",
    "Calibration",
    "CalibrationMethod",
    "Int8Selection",
    "SelectionStep",
    "calibrate",
    "calibration_clouds",
    "entropy_threshold",
    "graph_feeds",
    "percentile_threshold",
    "select_int8_layers",
]

CalibrationMethod = Literal["minmax", "percentile", "entropy"]
CALIBRATION_METHODS: tuple[str, ...] = get_args(CalibrationMethod)
HISTOGRAM_BINS = 2048
#: Levels of an int8 magnitude (0..127): what the entropy method quantizes the histogram into.
_LEVELS = INT8_MAX + 1
#: Smallest range a layer gets: an input that was exactly zero on every cloud (a dead unit) still
#: needs a positive scale.
_MIN_RANGE = 1e-6


@dataclass(frozen=True)
class Calibration:
    """The chosen input range and scale of every quantized layer, and how they were found."""

    method: CalibrationMethod
    source: str  # what the clouds were, in words
    clouds: int
    percentile: float | None
    ranges: dict[str, float]
    observed_max: dict[str, float]
    #: the float32 graph's labels on each calibration cloud, in order: the reference
    #: `select_int8_layers` measures int8 mixes against (read in the first pass, not recomputed)
    labels: tuple[npt.NDArray[np.int64], ...]
    scales: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", {k: v / INT8_MAX for k, v in self.ranges.items()})

    @property
    def clipped_layers(self) -> int:
        """Layers whose chosen range is below the largest magnitude seen."""
        return sum(self.ranges[k] < self.observed_max[k] for k in self.ranges)


def percentile_threshold(histogram: npt.NDArray[np.float64], top: float, percentile: float) -> float:
    """The magnitude below which ``percentile`` % of the histogram's mass lies (upper bin edge);
    ``histogram`` has equal bins over ``[0, top]``."""
    cumulative = np.cumsum(histogram)
    if cumulative[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return top * (min(index, len(histogram) - 1) + 1) / len(histogram)


def _kl_divergence(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> float:
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    # q is 0 where p is not only when a level held nothing; such a clip loses everything there
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def entropy_threshold(histogram: npt.NDArray[np.float64], top: float, step: int = 16) -> float:
    """The clipping magnitude with the least KL divergence between the histogram clipped there
    (the mass above it added to the last bin: what int8 with that range outputs) and the 128-level
    quantization of the histogram below it (each level's mass spread evenly over its non-empty
    bins; the clipped mass is *not* in it, so clipping costs). ``histogram`` has equal bins over
    ``[0, top]``; candidates every ``step`` bins from 128."""
    bins = len(histogram)
    if histogram.sum() <= 0:
        return 0.0
    best, best_kl = bins, np.inf
    for edge in range(_LEVELS, bins + 1, step):
        inside = histogram[:edge].astype(np.float64)
        reference = inside.copy()
        reference[-1] += histogram[edge:].sum()
        occupied = reference > 0
        expanded = np.zeros(edge)
        for chunk in np.array_split(np.arange(edge), _LEVELS):
            present = occupied[chunk]
            if present.any():
                expanded[chunk[present]] = inside[chunk].sum() / present.sum()
        if expanded.sum() <= 0:
            continue
        kl = _kl_divergence(reference, expanded)
        if kl < best_kl:
            best, best_kl = edge, kl
    return top * best / bins


@dataclass
class _LayerStats:
    top: float = 0.0
    histogram: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(HISTOGRAM_BINS))


Feeds = dict[str, npt.NDArray[Any]]


def graph_feeds(clouds: Sequence[torch.Tensor], config: ModelConfig, form: GraphForm) -> list[Feeds]:
    """The graph inputs of each cloud (points in the model's intensity scale; cropped here)."""
    feeds = []
    for cloud in clouds:
        points = cloud[crop_mask(cloud[:, :3], config.grid)]
        if points.shape[0] == 0:
            raise ValueError("a calibration cloud has no point inside the model's crop range")
        inputs = prepare_inputs(points, config)
        feeds.append({name: t.cpu().numpy() for name, t in graph_inputs(inputs, config, form).items()})
    return feeds


def calibrate(
    folded_state: dict[str, torch.Tensor],
    config: ModelConfig,
    feeds: Sequence[Feeds],
    method: CalibrationMethod = "percentile",
    form: GraphForm = "dense",
    percentile: float = 99.99,
    source: str = "",
    progress: bool = True,
) -> Calibration:
    """Input ranges of every quantizable layer of the graph of ``folded_state`` over the clouds of
    ``feeds`` (`graph_feeds` of ``form``), chosen by ``method``."""
    if method not in CALIBRATION_METHODS:
        known = ", ".join(CALIBRATION_METHODS)
        raise ValueError(f"calibration method must be one of {known}, got {method!r}")
    if not feeds:
        raise ValueError("calibration needs at least one cloud")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    model, sites = calibration_graph(folded_state, config, form)
    session = ort_session(model.SerializeToString())
    layers, outputs = list(sites), [*sites.values(), "labels"]
    stats = {layer: _LayerStats() for layer in layers}
    labels = []
    passes = 1 if method == "minmax" else 2
    bar = tqdm(total=passes * len(feeds), desc=f"calibrating ({method})", unit="cloud", disable=not progress)
    for values in (session.run(outputs, f) for f in feeds):
        labels.append(values[-1])
        for layer, x in zip(layers, values[:-1], strict=True):
            stats[layer].top = max(stats[layer].top, float(np.abs(x).max(initial=0.0)))
        bar.update()
    if passes == 2:
        for values in (session.run(outputs, f) for f in feeds):
            for layer, x in zip(layers, values[:-1], strict=True):
                s = stats[layer]
                if s.top > 0:
                    s.histogram += np.histogram(np.abs(x), bins=HISTOGRAM_BINS, range=(0.0, s.top))[0]
            bar.update()
    bar.close()
    ranges = {}
    for layer, s in stats.items():
        if method == "minmax":
            chosen = s.top
        elif method == "percentile":
            chosen = percentile_threshold(s.histogram, s.top, percentile)
        else:
            chosen = entropy_threshold(s.histogram, s.top)
        ranges[layer] = max(chosen, _MIN_RANGE)
    return Calibration(
        method=method,
        source=source,
        clouds=len(feeds),
        percentile=percentile if method == "percentile" else None,
        ranges=ranges,
        observed_max={layer: s.top for layer, s in stats.items()},
        labels=tuple(labels),
    )


def _files_of(path: Path) -> tuple[list[Path], PointFormat | None]:
    """Point files under ``path`` and the format its layout implies (None: the user's)."""
    lidar = path / "samples" / "LIDAR_TOP"
    if lidar.is_dir():  # a nuScenes-layout root: its keyframe sweeps
        return sorted(lidar.glob("*.pcd.bin")), PointFormat.NUSCENES
    velodyne = sorted(path.glob("sequences/*/velodyne/*.bin"))
    if velodyne:  # a SemanticKITTI root
        return velodyne, PointFormat.KITTI
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(".bin")), None


def calibration_clouds(
    paths: Sequence[Path], fmt: str, config: ModelConfig, count: int
) -> tuple[list[RealScan], str]:
    """Up to ``count`` clouds, evenly spaced, from ``paths`` (point files in format ``fmt``,
    folders of ``*.bin`` files, nuScenes-layout or SemanticKITTI roots), and their description."""
    if count < 1:
        raise ValueError(f"--calibrate-clouds must be at least 1, got {count}")
    found: list[tuple[Path, PointFormat]] = []
    for path in paths:
        if path.is_dir():
            files, implied = _files_of(path)
            if not files:
                raise ValueError(
                    f"--calibrate {path}: no point files (*.bin, a nuScenes samples/LIDAR_TOP folder or "
                    "SemanticKITTI sequences/*/velodyne)"
                )
            found += [(f, implied or PointFormat(fmt)) for f in files]
        elif path.is_file():
            found.append((path, PointFormat(fmt)))
        else:
            raise FileNotFoundError(f"--calibrate {path}: no such file or folder")
    spaced = np.unique(np.linspace(0, len(found) - 1, min(count, len(found))).round())
    chosen = [found[int(i)] for i in spaced]
    clouds = []
    for path, point_format in chosen:
        points = torch.from_numpy(read_points(path, point_format.value, config.input.intensity_max))
        if not bool(crop_mask(points[:, :3], config.grid).any()):
            raise ValueError(f"--calibrate {path}: no point inside the model's crop range")
        clouds.append(RealScan(f"{point_format.value}/{path.name}", point_format.value, path, points))
    where = ", ".join(str(p) for p in paths)
    return clouds, f"{len(clouds)} of {len(found)} clouds from {where}"


@dataclass(frozen=True)
class SelectionStep:
    """One int8 graph tried by `select_int8_layers`: how many layers stayed float32, and its
    agreement with the float32 graph on the calibration clouds."""

    float_layers: int
    agreement: float


@dataclass(frozen=True)
class Int8Selection:
    """The layers an int8 graph quantizes (their activation scales), those returned to float32
    (most sensitive first), the chosen mix's agreement on the calibration clouds, every mix tried."""

    scales: dict[str, float]
    float_layers: list[str]
    agreement: float
    steps: list[SelectionStep]


def _agreement(model_bytes: bytes, feeds: Sequence[Feeds], reference: Sequence[npt.NDArray[Any]]) -> float:
    session = ort_session(model_bytes, precision="int8")
    hits = total = 0
    for f, expected in zip(feeds, reference, strict=True):
        labels = session.run(["labels"], f)[0]
        hits += int((labels == expected).sum())
        total += int(expected.size)
    return hits / total


def select_int8_layers(
    folded_state: dict[str, torch.Tensor],
    config: ModelConfig,
    calibration: Calibration,
    feeds: Sequence[Feeds],
    target: float,
    form: GraphForm = "dense",
    progress: bool = True,
) -> Int8Selection:
    """The layers to run in int8: all of them when that graph's labels agree with the float32
    graph's (`Calibration.labels`; ``feeds`` are the ones calibration read) on ``target`` of the
    calibration clouds' points; else the fewest of the most sensitive
    layers returned to float32 that reach it, found by bisection.

    A layer's sensitivity is measured, not guessed: the share of labels that change on the first
    calibration cloud when that layer alone runs in int8 (one graph per layer). When no mix with
    an int8 layer reaches ``target``, the mix with one int8 layer (the export's gate decides)."""
    reference = calibration.labels
    if len(reference) != len(feeds):
        raise ValueError(f"{len(feeds)} feeds for a calibration of {len(reference)} clouds: pass the same")
    steps: list[SelectionStep] = []

    def mix_agreement(scales: dict[str, float], clouds: int) -> float:
        graph = build_encoder_graph(folded_state, config, "int8", form, scales)
        return _agreement(graph.SerializeToString(), feeds[:clouds], reference[:clouds])

    def int8_scales(ranked: list[str], count: int) -> dict[str, float]:
        """The scales of the layers left in int8 when the first ``count`` of ``ranked`` are not."""
        kept = set(ranked[count:])
        return {k: v for k, v in calibration.scales.items() if k in kept}

    def selection(ranked: list[str], count: int) -> Int8Selection:
        scales = int8_scales(ranked, count)
        agreement = next(s.agreement for s in reversed(steps) if s.float_layers == count)
        return Int8Selection(scales, ranked[:count], agreement, steps)

    def meets(ranked: list[str], count: int) -> bool:
        value = mix_agreement(int8_scales(ranked, count), len(feeds))
        steps.append(SelectionStep(count, value))
        if progress:
            print(f"  int8 with {count} of {len(ranked)} layers in float32: {value:.4%} agreement")
        return value >= target

    layers = list(calibration.scales)
    if meets(layers, 0):
        return selection(layers, 0)
    sensitivity = {
        layer: 1.0 - mix_agreement({layer: calibration.scales[layer]}, 1)
        for layer in tqdm(layers, desc="int8 sensitivity per layer", unit="layer", disable=not progress)
    }
    ranked = sorted(layers, key=lambda layer: sensitivity[layer], reverse=True)
    low, high = 0, len(ranked) - 1  # meets(low) is False; high keeps one int8 layer
    if not meets(ranked, high):
        return selection(ranked, high)
    while high - low > 1:
        middle = (low + high) // 2
        if meets(ranked, middle):
            high = middle
        else:
            low = middle
    return selection(ranked, high)
