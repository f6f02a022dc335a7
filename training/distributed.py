"""Process-group setup for ``torchrun``: NCCL on GPUs, gloo on CPU; a no-op for one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Distributed", "all_mean", "setup_distributed"]


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str | None = None) -> Distributed:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the group.

    ``device`` overrides the default (``cuda:<local rank>`` when CUDA is available, else CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=target)


def all_mean(value: float, env: Distributed) -> float:
    """The mean of a float over all processes (itself for one process)."""
    if env.world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return float(tensor) / env.world
