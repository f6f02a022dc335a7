"""Move a prepared cloud (nested dataclasses, dicts and tensors) to another device."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import torch

__all__ = ["move_to"]

T = TypeVar("T")


def move_to(value: T, device: torch.device | str) -> T:
    """A copy of ``value`` with every tensor inside it on ``device``; other fields are kept.

    Walks dataclass fields, dict values, lists and tuples, so a field added to a table class moves
    without anyone listing it again.
    """
    if isinstance(value, torch.Tensor):
        return value.to(device)  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {f.name: move_to(getattr(value, f.name), device) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **moved)
    if isinstance(value, dict):
        return {k: move_to(v, device) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        items = [move_to(v, device) for v in value]
        # A NamedTuple takes its fields as arguments, a plain tuple or list one iterable.
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value
