"""One request's work, independent of HTTP: bytes in, one label per point out, timed per stage.

Point formats (little-endian float32 records):
- ``nuscenes``: x, y, z, intensity 0–255, ring (5 columns);
- ``kitti``: x, y, z, reflectance 0–1 (4 columns);
- ``xyzi``: x, y, z, intensity already in the model's scale (4 columns).

Intensity is converted to the model's scale from the manifest. Points outside the crop are not fed
to the encoder; each takes the label of its nearest in-crop point (the manifest's
``nearest_in_crop`` policy). A cloud with no point inside the crop is segmented as is: the grid
clamps it. So every input point gets exactly one label, and never the ignore class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from seg3d.config import ModelConfig
from seg3d.io import POINT_FORMATS
from seg3d.pointcloud import check_points, fill_outside_crop, to_model_intensity
from seg3d.preprocess import crop_mask, prepare_inputs
from serve.backends import Backend

__all__ = ["InputError", "Segmentation", "Segmenter"]


class InputError(ValueError):
    """A request the service refuses, with the HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Segmentation:
    labels: np.ndarray  # (N,) uint8
    timing_ms: dict[str, float] = field(default_factory=dict)
    points_in_crop: int = 0


class Segmenter:
    def __init__(self, config: ModelConfig, backend: Backend, max_points: int) -> None:
        self.config = config
        self.backend = backend
        self.max_points = max_points

    def decode(self, body: bytes, fmt: str) -> np.ndarray:
        """``(N, 4)`` float32 points in the model's intensity scale, or `InputError`."""
        spec = POINT_FORMATS.get(fmt)
        if spec is None:
            raise InputError(
                422, "unknown_format", f"unknown format {fmt!r}; use one of {sorted(POINT_FORMATS)}"
            )
        record = 4 * spec.columns
        if len(body) % record:
            raise InputError(
                422,
                "bad_length",
                f"{len(body)} bytes is not a multiple of {record} ({fmt}: {spec.description})",
            )
        n = len(body) // record
        if n > self.max_points:
            raise InputError(413, "too_many_points", f"{n} points exceed the limit of {self.max_points}")
        points = np.frombuffer(body, dtype="<f4").reshape(n, spec.columns)[:, :4].astype(np.float32)
        try:
            check_points(torch.from_numpy(points))  # the one NaN/Inf rule, naming the bad rows
        except ValueError as exc:
            raise InputError(422, "non_finite", str(exc)) from exc
        if spec.intensity_max is not None:
            points[:, 3] = to_model_intensity(
                points[:, 3], spec.intensity_max, self.config.input.intensity_max
            )
        return points

    def handle(self, body: bytes, fmt: str) -> Segmentation:
        """One request: `decode` then `segment`, with the parse time among the stages."""
        start = time.perf_counter()
        points = self.decode(body, fmt)
        parse_ms = (time.perf_counter() - start) * 1e3
        result = self.segment(points)
        result.timing_ms = {"parse": parse_ms, **result.timing_ms}
        return result

    def segment(self, points: np.ndarray) -> Segmentation:
        timing: dict[str, float] = {}
        n = points.shape[0]
        if n == 0:
            return Segmentation(np.zeros(0, dtype=np.uint8), timing)
        start = time.perf_counter()
        tensor = torch.from_numpy(points)
        inside = crop_mask(tensor[:, :3], self.config.grid).numpy()
        if not inside.any():
            inside[:] = True  # nothing inside the crop: let the grid clamp the whole cloud
        inputs = prepare_inputs(tensor[torch.from_numpy(inside)], self.config)
        timing["preprocess"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        inner = self.backend.predict(inputs)
        timing["inference"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        labels = fill_outside_crop(points[:, :3], inside, np.asarray(inner, dtype=np.uint8))
        timing["postprocess"] = (time.perf_counter() - start) * 1e3
        return Segmentation(labels, timing, int(inside.sum()))
