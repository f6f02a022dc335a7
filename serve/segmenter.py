"""One request's work, independent of HTTP: bytes in, one label per point out, timed per stage.

Bodies are decoded by `seg3d.points.decode_points`, the one point reader (formats: `PointFormat`):
layout, point count, NaN/Inf, and intensity converted to the model's scale without overflow.
Points outside the crop are not fed to the encoder; each takes the label of its nearest in-crop
point (the manifest's ``nearest_in_crop`` policy). A cloud with no point inside the crop is
segmented clamped onto the crop's bounds. So every input point gets exactly one label, and never
the ignore class.

Preprocessing (voxels, neighbour and pooling tables) runs where the backend computes: on the GPU
for the torch and TensorRT backends on CUDA, which take torch tensors there (on an H200 host it
was 60 ms of a 105 ms request on the CPU: bench/results/nvidia-h200.md), on the CPU otherwise. The
crop test and the nearest-in-crop fill stay on the CPU, next to the decoded points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from seg3d.config import ModelConfig
from seg3d.points import PointFormat, PointsError, decode_points
from seg3d.postprocess import fill_outside_crop
from seg3d.preprocess import crop_mask, prepare_inputs
from serve.backends import Backend, EngineProfileError, TensorRTBackend, TorchBackend
from serve.errors import ServiceError

__all__ = ["Segmentation", "Segmenter", "preprocess_device"]


def preprocess_device(backend: Backend) -> str:
    """Where a request's preprocessing runs for ``backend``: its CUDA device when it takes torch
    tensors there (torch, TensorRT), else the CPU (ONNX Runtime reads host arrays)."""
    device = str(getattr(backend, "device", "cpu"))
    takes_tensors = isinstance(backend, TorchBackend | TensorRTBackend)
    return device if takes_tensors and device.startswith("cuda") else "cpu"


@dataclass
class Segmentation:
    labels: npt.NDArray[np.uint8]  # (N,)
    timing_ms: dict[str, float] = field(default_factory=dict)
    points_in_crop: int = 0


class Segmenter:
    def __init__(
        self, config: ModelConfig, backend: Backend, max_points: int, preprocess_on: str | None = None
    ) -> None:
        """``preprocess_on``: the device that builds the encoder's inputs (default
        `preprocess_device`: the backend's GPU where it takes tensors there, else the CPU)."""
        self.config = config
        self.backend = backend
        self.max_points = max_points
        self.preprocess_on = preprocess_on or preprocess_device(backend)

    def decode(self, body: bytes, fmt: PointFormat | str) -> npt.NDArray[np.float32]:
        """``(N, 4)`` float32 points in the model's intensity scale (`seg3d.points.decode_points`),
        or `ServiceError`: 413 ``too_many_points``, else 422 with the reader's code."""
        try:
            return decode_points(
                body, fmt, self.config.input.intensity_max, source="body", max_points=self.max_points
            )
        except PointsError as exc:
            raise ServiceError(413 if exc.code == "too_many_points" else 422, exc.code, str(exc)) from exc

    def handle(self, body: bytes, fmt: PointFormat | str) -> Segmentation:
        """One request: `decode` then `segment`, with the parse time among the stages."""
        start = time.perf_counter()
        points = self.decode(body, fmt)
        parse_ms = (time.perf_counter() - start) * 1e3
        result = self.segment(points)
        result.timing_ms = {"parse": parse_ms, **result.timing_ms}
        return result

    def _check_backend_range(self, points: int) -> None:
        """A backend with a fixed point range (the TensorRT engine's optimization profile) refuses
        the clouds outside it here, before preprocessing: 413 above it, 422 below."""
        try:
            self.backend.check_points(points)
        except EngineProfileError as exc:
            raise _profile_error(exc) from exc

    def segment(self, points: npt.NDArray[np.float32]) -> Segmentation:
        timing: dict[str, float] = {}
        n = points.shape[0]
        if n == 0:
            return Segmentation(np.zeros(0, dtype=np.uint8), timing)
        start = time.perf_counter()
        tensor = torch.from_numpy(points)
        inside = crop_mask(tensor[:, :3], self.config.grid).numpy()
        if not inside.any():
            # Nothing inside the crop: segment the whole cloud clamped onto the crop's bounds. The
            # grid clamps its voxels anyway; clamping the coordinates too keeps the point features
            # finite (a coordinate of 3.4e38 made NaN logits, and ONNX's ArgMax then the ignore class).
            bounds = torch.tensor(self.config.grid.point_range, dtype=tensor.dtype)
            tensor = tensor.clone()
            tensor[:, :3] = tensor[:, :3].clamp(min=bounds[:, 0], max=bounds[:, 1])
            inside[:] = True
        in_crop = int(inside.sum())
        self._check_backend_range(in_crop)
        kept = tensor[torch.from_numpy(inside)]
        inputs = prepare_inputs(kept.to(self.preprocess_on, non_blocking=False), self.config)
        if self.preprocess_on != "cpu":
            torch.cuda.synchronize()  # the stage's time is its own, not the next stage's
        timing["preprocess"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        try:
            inner = self.backend.predict(inputs)
        except EngineProfileError as exc:
            raise _profile_error(exc) from exc
        timing["inference"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        labels = fill_outside_crop(points[:, :3], inside, np.asarray(inner, dtype=np.uint8))
        timing["postprocess"] = (time.perf_counter() - start) * 1e3
        return Segmentation(labels, timing, in_crop)


def _profile_error(exc: EngineProfileError) -> ServiceError:
    if exc.too_many:
        return ServiceError(413, "too_many_points", str(exc))
    return ServiceError(422, "too_few_points", str(exc))
