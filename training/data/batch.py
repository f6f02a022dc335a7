"""Collate samples into one batch: points concatenated with a batch index, tables built once, and
the camera views stacked with every per-point and per-box index made global to the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import ModelConfig
from seg3d.preprocess import EncoderInputs, prepare_inputs
from training.data.sample import LidarSample

__all__ = ["Batch", "ViewBatch", "collate"]


@dataclass(frozen=True)
class ViewBatch:
    """The camera views of a batch (`docs/architecture.md` §1.6), indices global to the batch.

    Attributes:
        images: ``(V, 3, H, W)`` float32.
        view_sample: ``(V,)`` sample of each view.
        point_index: ``(P,)`` rows of ``Batch.points`` that project into a view.
        point_view: ``(P,)`` the view each of those points reads.
        pixels: ``(P, 2)`` ``(row, col)`` in its view's image.
        point_box: ``(P,)`` row of ``boxes`` the point belongs to, -1 for none.
        boxes: ``(K, 4)`` ``x_min, x_max, y_min, y_max`` in original camera pixels.
        box_view, box_class, box_label, box_depth: ``(K,)`` per box.
    """

    images: torch.Tensor
    view_sample: torch.Tensor
    point_index: torch.Tensor
    point_view: torch.Tensor
    pixels: torch.Tensor
    point_box: torch.Tensor
    boxes: torch.Tensor
    box_view: torch.Tensor
    box_class: torch.Tensor
    box_label: torch.Tensor
    box_depth: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """Samples of one step. ``inputs`` is what `seg3d.model.Encoder3D` reads."""

    names: list[str]
    points: torch.Tensor  # (N, 4)
    batch: torch.Tensor  # (N,) sample index of each point
    labels: torch.Tensor | None  # (N,) int64
    indices: list[torch.Tensor]  # per sample, the file row of each point
    inputs: EncoderInputs
    views: ViewBatch | None = None  # None when no sample has a camera view

    @property
    def sizes(self) -> list[int]:
        return [int(n) for n in torch.bincount(self.batch, minlength=len(self.names))]


def _collate_views(samples: list[LidarSample]) -> ViewBatch | None:
    if not any(s.views for s in samples):
        return None
    if not all(s.views for s in samples):
        raise ValueError("a batch mixes samples with and without camera views")
    images, view_sample, point_index, point_view, pixels, point_box = [], [], [], [], [], []
    boxes, box_view, box_class, box_label, box_depth = [], [], [], [], []
    point_offset = box_offset = view = 0
    for i, sample in enumerate(samples):
        for v in sample.views:
            images.append(v.image)
            view_sample.append(i)
            point_index.append(v.point_index + point_offset)
            point_view.append(torch.full_like(v.point_index, view))
            pixels.append(v.pixels)
            point_box.append(torch.where(v.point_box >= 0, v.point_box + box_offset, v.point_box))
            boxes.append(v.boxes)
            box_view.append(torch.full_like(v.box_class, view))
            box_class.append(v.box_class)
            box_label.append(v.box_label)
            box_depth.append(v.box_depth)
            box_offset += v.boxes.shape[0]
            view += 1
        point_offset += sample.points.shape[0]
    return ViewBatch(
        images=torch.stack(images),
        view_sample=torch.tensor(view_sample, dtype=torch.int64),
        point_index=torch.cat(point_index),
        point_view=torch.cat(point_view),
        pixels=torch.cat(pixels),
        point_box=torch.cat(point_box),
        boxes=torch.cat(boxes),
        box_view=torch.cat(box_view),
        box_class=torch.cat(box_class),
        box_label=torch.cat(box_label),
        box_depth=torch.cat(box_depth),
    )


def collate(samples: list[LidarSample], config: ModelConfig) -> Batch:
    """One `Batch`; use with ``functools.partial(collate, config=...)`` as a DataLoader collate_fn."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    points = torch.cat([s.points for s in samples])
    batch = torch.cat([torch.full((s.points.shape[0],), i, dtype=torch.int64) for i, s in enumerate(samples)])
    labelled = [s.labels is not None for s in samples]
    if any(labelled) and not all(labelled):
        raise ValueError("a batch mixes labelled and unlabelled samples")
    labels = torch.cat([s.labels for s in samples]) if all(labelled) else None  # type: ignore[misc]
    return Batch(
        names=[s.name for s in samples],
        points=points,
        batch=batch,
        labels=labels,
        indices=[s.indices for s in samples],
        inputs=prepare_inputs(points, config, batch=batch),
        views=_collate_views(samples),
    )
