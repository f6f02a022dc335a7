"""BF16 inference for the `table` encoder on CPU: weights converted once, no autocast.

`to_bf16` stores every weight of the convolutions and linear layers in bfloat16, in place, so the
forward pass multiplies bf16 activations by bf16 weights (oneDNN's AVX512-BF16 / AMX kernels on CPU)
and never casts a weight per call, which is what `torch.autocast` would do on every Linear/MatMul.
What stays float32, and why:

- the input embedding's first layer (``embed.fc1``): it reads raw coordinates in metres, and bf16's
  8 significant bits would round 50 m to 0.25 m, coarser than a 0.1 m voxel;
- every mean over rows (`SegmentPool.apply`, the present-tap conv's tap sum): accumulated in
  float32 whatever the input (`seg3d.preprocess.tables.pool_dtypes`), rounded to bf16 once;
- the head's first bias (the per-point sum of the blocks' slices starts from it, so that sum is
  float32) and the head's last layer, so the logits are float32 (a ``(N, 17)`` layer: its cost is
  noise, and near-tied logits decide the argmax).

Activations are cast at two points only: the pooled embedding enters bf16 before ``embed.fc2``,
and the head's sum leaves it. Inference only: a bf16 encoder is never trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import nn

if TYPE_CHECKING:  # the encoder imports `TorchPrecision` from here
    from seg3d.model.encoder import Encoder3D

__all__ = ["FP32_PARAMETERS", "PRECISIONS", "TorchPrecision", "native_bf16_cpu", "to_bf16", "weight_dtypes"]

#: How the `table` encoder runs in PyTorch: float32 throughout, or bf16 weights and activations.
TorchPrecision = Literal["fp32", "bf16"]
PRECISIONS: tuple[TorchPrecision, ...] = get_args(TorchPrecision)

#: Parameters a bf16 encoder keeps in float32 (see the module docstring).
FP32_PARAMETERS = frozenset(
    {"embed.fc1.weight", "embed.fc1.bias", "head.0.bias", "head.2.weight", "head.2.bias"}
)


def to_bf16(model: Encoder3D) -> Encoder3D:
    """Convert ``model`` (folded, `table` backend, eval mode) to bf16 in place and return it.

    The float32 tensors are replaced, not kept: nothing on the hot path holds a float32 copy.

    Raises:
        ValueError: a `spconv` model (its CPU kernels have no bf16), or one with BatchNorm left
            (fold it first: folding runs in float64, and BN statistics do not belong in bf16).
    """
    if model.backend != "table":
        raise ValueError("bf16 runs on the 'table' backend only")
    if not model.folded:
        raise ValueError("bf16 needs a BatchNorm-folded encoder (fold_batchnorm or load_encoder(fold=True))")
    if model.precision == "bf16":
        return model
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, param in list(module.named_parameters(recurse=False)):
                full = f"{module_name}.{name}" if module_name else name
                if full in FP32_PARAMETERS or param.dtype == torch.bfloat16:
                    continue
                setattr(module, name, nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False))
    model.precision = "bf16"
    return model.eval()


def weight_dtypes(model: nn.Module) -> dict[str, torch.dtype]:
    """Each parameter's dtype by name (what a test or a log line checks)."""
    return {name: p.dtype for name, p in model.named_parameters()}


def native_bf16_cpu() -> bool:
    """Whether this CPU runs bf16 MatMuls natively through oneDNN (AVX512-BF16 or AMX). Without it
    PyTorch emulates bf16 and a bf16 encoder is slower than a float32 one."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
