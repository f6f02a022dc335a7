"""The training checkpoint format, shared by training (writes) and export (reads).

A checkpoint is a ``torch.save`` of plain data only (tensors, dicts, lists, strings, numbers), so it
loads with ``torch.load(weights_only=True)`` and never executes code:

    {
      "format": "ddata-checkpoint/1",
      "mode": "3d" | "2dpass" | "2ddata",
      "model_config": ModelConfig as a dict,
      "weight_layout": WEIGHT_LAYOUT,
      "state_dict": the whole training model; the 3D encoder's parameters under "encoder3d.",
                    the 2D encoder, fusion/LOB and auxiliary heads under other prefixes,
      "versions": {"torch": ..., "spconv": ...},
      "training": {...}   # optimizer, scheduler, step, RNG states, metrics: the training loop's own
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from pydantic import ValidationError

from seg3d.config import ModelConfig
from seg3d.io import atomic_writer
from seg3d.model import Encoder3D, fold_batchnorm
from seg3d.model.precision import CUDA_ONLY, TorchPrecision, to_half
from seg3d.model.sparse_conv import WEIGHT_LAYOUT, Backend

__all__ = [
    "CHECKPOINT_FORMAT",
    "ENCODER_PREFIX",
    "MODES",
    "Checkpoint",
    "CheckpointError",
    "Mode",
    "encoder_state_dict",
    "load_checkpoint",
    "load_encoder",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "ddata-checkpoint/1"
ENCODER_PREFIX = "encoder3d."
#: The training modes: the 3D encoder alone, 2DPASS (+ MSFSKD), 2DDATA (+ Local Object Branch).
Mode = Literal["3d", "2dpass", "2ddata"]
MODES: tuple[Mode, ...] = get_args(Mode)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


@dataclass
class Checkpoint:
    mode: Mode
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    weight_layout: str = WEIGHT_LAYOUT
    versions: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def _versions() -> dict[str, str]:
    versions = {"torch": str(torch.__version__)}
    try:
        import spconv

        versions["spconv"] = str(getattr(spconv, "__version__", "unknown"))
    except ImportError:
        pass
    return versions


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically: a crash never leaves a half-written file at ``path``."""
    if checkpoint.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {checkpoint.mode!r}")
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "mode": checkpoint.mode,
        "model_config": checkpoint.model_config.model_dump(mode="json"),
        "weight_layout": checkpoint.weight_layout,
        "state_dict": {k: v.detach().cpu() for k, v in checkpoint.state_dict.items()},
        "versions": checkpoint.versions or _versions(),
        "training": checkpoint.training,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a readable checkpoint, unknown format or mode, another weight layout,
            or an invalid model config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: expected format {CHECKPOINT_FORMAT!r}, found {found!r}")
    if payload.get("mode") not in MODES:
        raise CheckpointError(f"{path}: unknown mode {payload.get('mode')!r} (expected one of {MODES})")
    if payload.get("weight_layout") != WEIGHT_LAYOUT:
        raise CheckpointError(
            f"{path}: weight layout {payload.get('weight_layout')!r} differs from {WEIGHT_LAYOUT!r}; "
            "convert the checkpoint instead of loading it (a plain permute is wrong for 1×1×1 kernels)"
        )
    try:
        config = ModelConfig.model_validate(payload["model_config"])
    except (KeyError, ValidationError) as exc:
        raise CheckpointError(f"{path}: invalid model_config: {exc}") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state_dict")
    return Checkpoint(
        mode=payload["mode"],
        model_config=config,
        state_dict=state,
        weight_layout=payload["weight_layout"],
        versions=dict(payload.get("versions", {})),
        training=dict(payload.get("training", {})),
    )


def encoder_state_dict(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The 3D encoder's parameters alone (prefix stripped); nothing of the 2D or fusion branches."""
    state = {
        k[len(ENCODER_PREFIX) :]: v for k, v in checkpoint.state_dict.items() if k.startswith(ENCODER_PREFIX)
    }
    if not state:
        raise CheckpointError(f"checkpoint has no parameter under {ENCODER_PREFIX!r}")
    return state


def load_encoder(
    source: str | Path | Checkpoint,
    backend: Backend = "table",
    device: torch.device | str = "cpu",
    fold: bool = False,
    precision: TorchPrecision = "fp32",
) -> Encoder3D:
    """The 3D encoder of a checkpoint (any mode), in eval mode on ``device``: the one way export,
    serving and evaluation load weights.

    Args:
        source: a checkpoint file or an already loaded `Checkpoint`.
        backend: ``table`` (the export form) or ``spconv`` (the reference).
        device: where the encoder runs; a ``table`` encoder on CPU convolves over the present
            neighbour taps only (the CPU fast path: same values, fewer operations).
        fold: fold BatchNorm into the neighbouring convolutions and linears (inference only).
        precision: ``bf16`` (or ``fp16``, CUDA only) stores the weights in that dtype once, here,
            after folding in float64 (`seg3d.model.precision.to_half`: what stays float32 and
            why); needs ``fold`` and the ``table`` backend.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, or weights that do not fit its own config.
        ValueError: a half precision without ``fold`` or on the ``spconv`` backend; ``fp16``
            on a CPU.
    """
    if precision != "fp32" and (backend != "table" or not fold):
        raise ValueError(f"precision {precision!r} needs backend 'table' and fold=True")
    if precision in CUDA_ONLY and torch.device(device).type != "cuda":
        raise ValueError(
            f"precision {precision!r} runs on a CUDA device only (CPUs have no float16 MatMul "
            "worth running; bf16 is the CPU's half precision)"
        )
    checkpoint = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    where = "checkpoint" if isinstance(source, Checkpoint) else str(source)
    encoder = Encoder3D(checkpoint.model_config, backend)
    try:
        encoder.load_state_dict(encoder_state_dict(checkpoint), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: 3D encoder weights do not fit its config: {exc}") from exc
    encoder = fold_batchnorm(encoder.eval()) if fold else encoder.eval()
    device = torch.device(device)
    encoder.present_taps = backend == "table" and device.type == "cpu"
    encoder = encoder.to(device)
    return encoder if precision == "fp32" else to_half(encoder, precision)
