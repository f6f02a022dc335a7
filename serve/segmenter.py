"""One request's work, independent of HTTP: bytes in, one label per point out, timed per stage.

Bodies are decoded by `seg3d.points.decode_points`, the one point reader (formats: `PointFormat`,
PCD and PLY files included): layout, point count, NaN/Inf, and intensity converted to the model's
scale without overflow.
Points outside the crop are not fed to the encoder; each takes the label of its nearest in-crop
point (the manifest's ``nearest_in_crop`` policy). A cloud with no point inside the crop is
segmented clamped onto the crop's bounds. So every input point gets exactly one label, and never
the ignore class.

Preprocessing (voxels, neighbour and pooling tables) runs where the backend computes: on the GPU
for the torch and TensorRT backends on CUDA, which take torch tensors there (on an H200 host it
was 60 ms of a 105 ms request on the CPU: bench/results/nvidia-h200.md), on the CPU otherwise. The
crop test and the nearest-in-crop fill stay on the CPU, next to the decoded points.

`Segmenter.segment_batch` segments several clouds with one preprocessing and one backend call (a
batch index keeps them apart; the labels are those of each cloud alone), for the service's
micro-batching of concurrent requests (`serve.batching`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from seg3d.config import ModelConfig
from seg3d.points import PointFormat, PointsError, decode_points
from seg3d.postprocess import source_rows
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
    logits: npt.NDArray[np.float32] | None = None  # (N, classes), only when asked for
    batch_size: int = 1  # clouds in the backend call that segmented it (`Segmenter.segment_batch`)


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

    def decode(
        self,
        body: bytes,
        fmt: PointFormat | str,
        *,
        file_intensity_max: float | None = None,
        allow_missing_intensity: bool = False,
    ) -> npt.NDArray[np.float32]:
        """``(N, 4)`` float32 points in the model's intensity scale (`seg3d.points.decode_points`,
        PCD and PLY included, with its ``file_intensity_max`` and ``allow_missing_intensity``), or
        `ServiceError`: 413 ``too_many_points``, else 422 with the reader's code."""
        try:
            return decode_points(
                body,
                fmt,
                self.config.input.intensity_max,
                source="body",
                max_points=self.max_points,
                file_intensity_max=file_intensity_max,
                allow_missing_intensity=allow_missing_intensity,
            )
        except PointsError as exc:
            raise ServiceError(413 if exc.code == "too_many_points" else 422, exc.code, str(exc)) from exc

    def handle(self, body: bytes, fmt: PointFormat | str, logits: bool = False) -> Segmentation:
        """One request: `decode` then `segment`, with the parse time among the stages."""
        start = time.perf_counter()
        points = self.decode(body, fmt)
        parse_ms = (time.perf_counter() - start) * 1e3
        result = self.segment(points, logits)
        result.timing_ms = {"parse": parse_ms, **result.timing_ms}
        return result

    def _check_backend_range(self, points: int) -> None:
        """A backend with a fixed point range (the TensorRT engine's optimization profile) refuses
        the clouds outside it here, before preprocessing: 413 above it, 422 below."""
        try:
            self.backend.check_points(points)
        except EngineProfileError as exc:
            raise _profile_error(exc) from exc

    def segment(self, points: npt.NDArray[np.float32], logits: bool = False) -> Segmentation:
        """One label per point of ``(N, 4)`` model-scale points; with ``logits`` also the ``(N,
        classes)`` logits the labels come from (a point outside the crop takes its nearest in-crop
        point's row of both)."""
        timing: dict[str, float] = {}
        n = points.shape[0]
        if n == 0:
            classes = self.config.num_classes
            empty = np.zeros((0, classes), dtype=np.float32) if logits else None
            return Segmentation(np.zeros(0, dtype=np.uint8), timing, 0, empty)
        start = time.perf_counter()
        inside, kept = self._in_crop(points)
        in_crop = int(inside.sum())
        self._check_backend_range(in_crop)
        inputs = prepare_inputs(kept.to(self.preprocess_on, non_blocking=False), self.config)
        if self.preprocess_on != "cpu":
            torch.cuda.synchronize()  # the stage's time is its own, not the next stage's
        timing["preprocess"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        inner_logits: npt.NDArray[np.float32] | None = None
        try:
            if logits:
                inner, inner_logits = self.backend.predict_logits(inputs)
            else:
                inner = self.backend.predict(inputs)
        except EngineProfileError as exc:
            raise _profile_error(exc) from exc
        timing["inference"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        rows = source_rows(points[:, :3], inside)
        labels = np.asarray(inner, dtype=np.uint8)[rows]
        point_logits = None if inner_logits is None else inner_logits[rows]
        timing["postprocess"] = (time.perf_counter() - start) * 1e3
        return Segmentation(labels, timing, in_crop, point_logits)

    @property
    def batches(self) -> bool:
        """Whether the backend can take several clouds in one call. A TensorRT engine cannot: its
        optimization profile bounds the points of one call, which a batch of clouds would exceed
        (and its refusal must name one cloud's points, not the batch's)."""
        return not isinstance(self.backend, TensorRTBackend)

    def segment_batch(
        self, clouds: Sequence[npt.NDArray[np.float32]], logits: Sequence[bool]
    ) -> list[Segmentation]:
        """`segment` of every cloud, with one preprocessing and one backend call for them all: the
        in-crop points of every cloud concatenated with a per-point batch index, which keeps the
        clouds apart in the voxel grid and in every table (the encoder is per voxel, so a cloud's
        labels do not depend on the others: the same bytes as `segment` alone, checked in
        tests/serve/test_batching.py). ``logits[i]``: cloud ``i`` also gets its logits.

        Empty clouds and clouds with no point in the crop follow `segment`'s rules; a backend that
        cannot batch (`batches`) segments the clouds one by one. Each result's ``timing_ms`` holds
        the batch's preprocess and inference time and its own postprocess, ``batch_size`` the
        clouds of the call.

        Raises:
            ServiceError, ValueError: as `segment`, for the whole batch (the caller re-runs the
                clouds one by one to give each its own error: `serve.batching.MicroBatcher`).
        """
        if len(clouds) != len(logits):
            raise ValueError(f"{len(clouds)} clouds but {len(logits)} logits flags")
        if len(clouds) <= 1 or not self.batches:
            return [self.segment(points, want) for points, want in zip(clouds, logits, strict=True)]
        results: list[Segmentation | None] = [None] * len(clouds)
        members: list[tuple[int, npt.NDArray[np.bool_], torch.Tensor]] = []  # (index, inside, kept)
        start = time.perf_counter()
        for i, points in enumerate(clouds):
            if points.shape[0] == 0:
                results[i] = self.segment(points, logits[i])  # no work: `segment`'s empty answer
                continue
            inside, kept = self._in_crop(points)
            self._check_backend_range(kept.shape[0])
            members.append((i, inside, kept))
        if members:
            counts = torch.tensor([kept.shape[0] for _, _, kept in members])
            batch = torch.repeat_interleave(torch.arange(len(members)), counts)
            stacked = torch.cat([kept for _, _, kept in members])
            inputs = prepare_inputs(
                stacked.to(self.preprocess_on), self.config, batch=batch.to(self.preprocess_on)
            )
            if self.preprocess_on != "cpu":
                torch.cuda.synchronize()
            preprocess_ms = (time.perf_counter() - start) * 1e3

            start = time.perf_counter()
            inner_logits: npt.NDArray[np.float32] | None = None
            try:
                if any(logits[i] for i, _, _ in members):
                    inner, inner_logits = self.backend.predict_logits(inputs)
                else:
                    inner = self.backend.predict(inputs)
            except EngineProfileError as exc:
                raise _profile_error(exc) from exc
            inference_ms = (time.perf_counter() - start) * 1e3

            inner_labels = np.asarray(inner, dtype=np.uint8)
            offsets = np.concatenate([[0], np.cumsum(counts.numpy())])
            for (i, inside, _), low, high in zip(members, offsets[:-1], offsets[1:], strict=True):
                start = time.perf_counter()
                rows = source_rows(clouds[i][:, :3], inside)
                labels = inner_labels[low:high][rows]
                point_logits = None
                if logits[i] and inner_logits is not None:
                    point_logits = inner_logits[low:high][rows]
                timing = {
                    "preprocess": preprocess_ms,
                    "inference": inference_ms,
                    "postprocess": (time.perf_counter() - start) * 1e3,
                }
                results[i] = Segmentation(labels, timing, int(high - low), point_logits, len(members))
        done = [r for r in results if r is not None]
        assert len(done) == len(clouds), "every cloud has its result"
        return done

    def _in_crop(self, points: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.bool_], torch.Tensor]:
        """The crop mask of a non-empty cloud and the points the encoder reads: the in-crop points,
        or every point clamped onto the crop's bounds when none is inside."""
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
        return inside, tensor[torch.from_numpy(inside)]


def _profile_error(exc: EngineProfileError) -> ServiceError:
    if exc.too_many:
        return ServiceError(413, "too_many_points", str(exc))
    return ServiceError(422, "too_few_points", str(exc))
