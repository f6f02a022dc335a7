"""Which sparse-convolution implementation a training run uses, chosen once and logged.

Both backends of `seg3d.model.Encoder3D` share one state dict, so the choice changes memory and
speed, never the checkpoint. What the training forward keeps for the backward pass decides memory:

- ``table`` with the dense gather saves the gathered ``(V, 27·C)`` block of every 3×3×3 conv:
  ≈ 17 GB in bf16 at batch 8 of nuScenes sweeps with C = 256 over 24 convs. Training never uses it.
- ``table`` with *present taps* (`seg3d.model.sparse_conv.present_tap_conv`) saves the rows of the
  taps that exist, about ``present/27`` of that; it runs on CPU and CUDA alike.
- ``spconv`` saves the ``(V, C)`` input of each conv and its pair lists. Its CPU build has no
  backward, so it trains on CUDA only (a CUDA wheel: ``spconv-cu126``).

``auto`` (the default) is spconv on a CUDA device when a CUDA build of spconv imports, the table
backend with present taps otherwise.

spconv's autograd functions cast their inputs to float16 under CUDA autocast (not bfloat16), so a
run with ``amp`` on spconv scales the loss with a `torch.amp.GradScaler` (`needs_grad_scaler`):
float16 gradients would underflow without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from seg3d.model.sparse_conv import Backend, spconv_available

__all__ = ["BackendChoice", "TrainBackend", "choose_backend", "needs_grad_scaler", "spconv_cuda_available"]

TrainBackend = Literal["auto", "spconv", "table"]


@dataclass(frozen=True)
class BackendChoice:
    """The encoder backend of a training run, whether it convolves over present taps, and why."""

    backend: Backend
    present_taps: bool
    reason: str

    def describe(self) -> str:
        taps = " with present taps" if self.present_taps else ""
        return f"training backend: {self.backend}{taps} ({self.reason})"


def spconv_cuda_available() -> bool:
    """spconv imports and is a CUDA build (a CPU-only wheel imports too, but cannot run on CUDA)."""
    if not spconv_available():
        return False
    try:
        from spconv.cppconstants import CPU_ONLY_BUILD
    except ImportError:  # pragma: no cover - older spconv layouts
        return True
    return not bool(CPU_ONLY_BUILD)


def choose_backend(requested: TrainBackend, device: torch.device) -> BackendChoice:
    """The backend that trains ``requested`` (``auto``, ``spconv`` or ``table``) on ``device``.

    Raises:
        ValueError: ``spconv`` requested on a CPU device (its CPU build has no backward) or without a
            CUDA build of spconv installed.
    """
    cuda = device.type == "cuda"
    if requested == "table":
        return BackendChoice("table", True, "requested")
    if requested == "spconv":
        if not cuda:
            raise ValueError(
                f"--backend spconv trains on CUDA only (spconv's CPU build has no backward); the device "
                f"is {device}: use --backend table or auto"
            )
        if not spconv_cuda_available():
            raise ValueError(
                "--backend spconv needs a CUDA build of spconv (pip install spconv-cu126, or the "
                "project's '.[gpu]' extra); or use --backend table"
            )
        return BackendChoice("spconv", False, "requested")
    if requested != "auto":
        raise ValueError(f"unknown backend {requested!r}; expected auto, spconv or table")
    if cuda and spconv_cuda_available():
        return BackendChoice("spconv", False, "auto: CUDA device and a CUDA build of spconv")
    if cuda:
        return BackendChoice("table", True, "auto: CUDA device without a CUDA build of spconv")
    return BackendChoice("table", True, f"auto: {device.type} device (spconv trains on CUDA only)")


def needs_grad_scaler(choice: BackendChoice, amp: bool, device: torch.device) -> bool:
    """True when the run's convolutions run in float16 under autocast: spconv on CUDA with ``amp``."""
    return choice.backend == "spconv" and amp and device.type == "cuda"
