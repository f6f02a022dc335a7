"""Process-group setup for ``torchrun``: NCCL on GPUs, gloo on CPU; a no-op for one process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT_MINUTES",
    "Distributed",
    "all_mean",
    "all_sum",
    "resolve_device",
    "setup_distributed",
]

#: Timeout of the process group's collectives (NCCL's watchdog would abort after 10 minutes).
DEFAULT_TIMEOUT_MINUTES = 60.0


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


def resolve_device(
    device: str | None, env: Mapping[str, str] | None = None, cuda_available: bool | None = None
) -> torch.device:
    """The device of this process: ``device``, with a bare ``cuda`` given this process's GPU.

    ``None`` means ``cuda:<local rank>`` when CUDA is available, else CPU; ``cuda`` without an index
    means ``cuda:<LOCAL_RANK>`` under torchrun and ``cuda:0`` otherwise (`torch.cuda.set_device`
    refuses a device without an index). An explicit index is kept.
    """
    env = os.environ if env is None else env
    local_rank = int(env.get("LOCAL_RANK", "0"))
    if device is None:
        available = torch.cuda.is_available() if cuda_available is None else cuda_available
        device = "cuda" if available else "cpu"
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", local_rank)
    return target


def setup_distributed(
    device: str | None = None, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
) -> Distributed:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the group.

    ``device`` overrides the default (see `resolve_device`). Every collective of the group times
    out after ``timeout_minutes`` (a second guard behind validation split across the processes).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if target.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=target)


def all_mean(value: float, env: Distributed) -> float:
    """The mean of a float over all processes (itself for one process)."""
    if env.world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return float(tensor) / env.world


def all_sum(tensor: torch.Tensor, env: Distributed) -> torch.Tensor:
    """``tensor`` summed over all processes, on its own device (itself for one process).

    The reduction runs on the process's device (NCCL reduces CUDA tensors only)."""
    if env.world == 1:
        return tensor
    reduced = tensor.to(env.device, copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(tensor.device)
