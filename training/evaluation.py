"""Evaluate the 3D encoder on a data set: confusion matrices, optional test-time augmentation.

Two metrics (`docs/architecture.md` §6 and §9 row 15):

- *crop*: the points inside the crop range, what 2DPASS reports;
- *full scan*: every point of the file; points outside the crop take the label of their nearest
  in-crop point, as the service does (`seg3d.postprocess.fill_outside_crop`). The file's points and
  labels come from the data set (`training.data.protocol.EvaluationDataset`).

Test-time augmentation (``votes > 1``) runs each cloud ``votes`` times with a random yaw rotation
and translation (no flip, no scale, as 2DPASS votes) and sums the logits per point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from seg3d.config import ModelConfig
from seg3d.model import labels_from_logits
from seg3d.postprocess import fill_outside_crop
from seg3d.preprocess import prepare_inputs
from seg3d.preprocess.device import move_to
from training.data.augment import Augment3D
from training.data.protocol import EvaluationDataset
from training.data.sample import LidarSample
from training.distributed import Distributed, all_sum
from training.metrics import ConfusionMatrix, IoUReport

__all__ = ["Evaluation", "evaluate_dataset", "evaluate_sharded", "predict_sample", "shard_indices"]

#: 2DPASS's voting augmentation: yaw rotation and translation only.
VOTE_AUGMENT = Augment3D(rotate=True, flip=False, scale_range=(1.0, 1.0), translate_std=0.1)


@dataclass(frozen=True)
class Evaluation:
    crop: IoUReport
    full_scan: IoUReport | None


@torch.no_grad()
def predict_sample(
    encoder: nn.Module,
    sample: LidarSample,
    config: ModelConfig,
    device: torch.device,
    votes: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Class of each of the sample's points, ``(N,)`` int64, summing logits over ``votes`` runs;
    never the ignore class (as the exported graph)."""
    points = sample.points
    if votes == 1:
        inputs = move_to(prepare_inputs(points, config), device)
        return labels_from_logits(encoder(inputs), config.ignore_index).cpu()
    generator = torch.Generator().manual_seed(seed)
    copies = [VOTE_AUGMENT(points, generator) for _ in range(votes)]
    batch = torch.cat([torch.full((points.shape[0],), i, dtype=torch.int64) for i in range(votes)])
    inputs = move_to(prepare_inputs(torch.cat(copies), config, batch=batch), device)
    logits = encoder(inputs).view(votes, points.shape[0], -1).sum(0)
    return labels_from_logits(logits, config.ignore_index).cpu()


def evaluate_dataset(
    encoder: nn.Module,
    dataset: EvaluationDataset,
    config: ModelConfig,
    device: torch.device | str = "cpu",
    votes: int = 1,
    max_samples: int | None = None,
    full_scan: bool = False,
    progress: bool = True,
    on_prediction: Callable[[int, np.ndarray], None] | None = None,
) -> Evaluation:
    """The crop metric, and with ``full_scan`` the full-scan one (else ``full_scan`` is None).

    The full scan reads each sample's file points (``dataset.file_points``) and, with ``full_scan``,
    its labels (``dataset.read_labels``); ``on_prediction(i, labels)`` receives the full-scan labels
    of each sample (submissions).
    """
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    crop, full = confusion_matrices(
        encoder, dataset, config, range(count), device, votes, full_scan, progress, on_prediction
    )
    return Evaluation(crop.report(config.class_names), full.report(config.class_names) if full_scan else None)


def shard_indices(count: int, rank: int, world: int) -> range:
    """The samples ``0..count-1`` that process ``rank`` of ``world`` evaluates: every ``world``-th
    from ``rank``, so the shards are disjoint, cover every sample and differ in size by at most one."""
    return range(rank, count, world)


def evaluate_sharded(
    encoder: nn.Module,
    dataset: EvaluationDataset,
    config: ModelConfig,
    env: Distributed,
    max_samples: int | None = None,
    progress: bool = False,
) -> ConfusionMatrix:
    """The crop confusion matrix over the first ``max_samples`` samples, split across the processes
    of ``env``.

    Each process evaluates its `shard_indices` and the matrices are summed over the processes, so
    every process returns the same matrix, equal to one process evaluating every sample (integer
    counts: exactly). Collective: every process of the group must call it.
    """
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    indices = shard_indices(count, env.rank, env.world)
    crop, _ = confusion_matrices(encoder, dataset, config, indices, env.device, progress=progress)
    crop.counts = all_sum(crop.counts, env)
    return crop


def confusion_matrices(
    encoder: nn.Module,
    dataset: EvaluationDataset,
    config: ModelConfig,
    indices: Sequence[int],
    device: torch.device | str = "cpu",
    votes: int = 1,
    full_scan: bool = False,
    progress: bool = True,
    on_prediction: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[ConfusionMatrix, ConfusionMatrix]:
    """Crop and full-scan confusion matrices over the samples ``indices`` (see `evaluate_dataset`);
    the full-scan one stays empty unless ``full_scan``."""
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    crop, full = ConfusionMatrix(config.num_classes), ConfusionMatrix(config.num_classes)
    try:
        for index in tqdm(indices, disable=not progress, unit="scan", desc="evaluate"):
            sample = dataset[index]
            predicted = predict_sample(encoder, sample, config, device, votes, seed=index)
            if sample.labels is not None:
                crop.update(predicted, sample.labels)
            if not (full_scan or on_prediction):
                continue
            xyz = dataset.file_points(index)
            inside = np.zeros(xyz.shape[0], dtype=bool)
            inside[sample.indices.numpy()] = True
            # Without dropout the crop keeps file order, so the predictions are the in-crop labels.
            labels = fill_outside_crop(xyz, inside, predicted.numpy())
            if on_prediction is not None:
                on_prediction(index, labels)
            if full_scan:
                full.update(torch.from_numpy(labels), dataset.read_labels(index, xyz.shape[0]))
    finally:
        encoder.train(was_training)
    return crop, full
