"""Collate samples into one batch: points concatenated with a batch index, tables built once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import ModelConfig
from seg3d.preprocess import EncoderInputs, prepare_inputs
from training.data.sample import LidarSample

__all__ = ["Batch", "collate"]


@dataclass(frozen=True)
class Batch:
    """Samples of one step. ``inputs`` is what `seg3d.model.Encoder3D` reads."""

    names: list[str]
    points: torch.Tensor  # (N, 4)
    batch: torch.Tensor  # (N,) sample index of each point
    labels: torch.Tensor | None  # (N,) int64
    indices: list[torch.Tensor]  # per sample, the file row of each point
    inputs: EncoderInputs

    @property
    def sizes(self) -> list[int]:
        return [int(n) for n in torch.bincount(self.batch, minlength=len(self.names))]


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
    )
