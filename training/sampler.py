"""A seeded, shardable, resumable order of samples for one epoch.

Each epoch is a permutation drawn from ``seed + epoch``: the same on every process, so process
``rank`` of ``world`` takes every ``world``-th batch-aligned slice. Resuming in the middle of an epoch
starts ``skip`` batches in, without loading the skipped samples, so a resumed run sees exactly the
samples an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[list[int]]):
    """Batches of sample indices for one process.

    Args:
        size: samples in the data set.
        batch_size: samples per batch on this process.
        shuffle: draw a permutation per epoch (training) or keep the order (evaluation).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        rank, world: this process and the number of processes.
        drop_last: drop the incomplete last global batch (training; 2DPASS drops it) so every
            process runs the same number of steps.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = True,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world, self.drop_last = rank, world, drop_last
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's permutation; start ``skip`` batches in (resume)."""
        self.epoch, self.skip = epoch, skip

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        step = self.batch_size * self.world
        usable = (self.size // step) * step if self.drop_last else self.size
        batches = []
        for start in range(0, usable, step):
            mine = order[start + self.rank * self.batch_size : start + (self.rank + 1) * self.batch_size]
            if len(mine):
                batches.append(mine.tolist())
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.skip :]

    def __len__(self) -> int:
        """Batches of a whole epoch on this process (before any skip)."""
        return len(self._batches())
