"""EpochSampler: seeded per epoch, sharded by rank, resumable mid-epoch."""

from __future__ import annotations

import pytest

from training.sampler import EpochSampler


def test_ranks_split_each_global_batch_and_skip_resumes() -> None:
    one = EpochSampler(10, batch_size=2, seed=4)
    one.set_epoch(3)
    rank0 = EpochSampler(10, batch_size=1, seed=4, rank=0, world=2)
    rank1 = EpochSampler(10, batch_size=1, seed=4, rank=1, world=2)
    for sampler in (rank0, rank1):
        sampler.set_epoch(3)
    # the two ranks together see exactly the single process's batches, in the same order
    assert [a + b for a, b in zip(rank0, rank1, strict=True)] == list(one)
    assert len(one) == 5 and len(rank0) == 5
    resumed = EpochSampler(10, batch_size=2, seed=4)
    resumed.set_epoch(3, skip=2)
    assert list(resumed) == list(one)[2:]
    one.set_epoch(4)
    assert list(one) != list(resumed)


def test_drop_last_and_evaluation_order() -> None:
    sampler = EpochSampler(7, batch_size=3, world=1)
    assert [len(b) for b in sampler] == [3, 3]
    ordered = EpochSampler(7, batch_size=3, shuffle=False, drop_last=False)
    assert list(ordered) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(7, 1, rank=2, world=2)
