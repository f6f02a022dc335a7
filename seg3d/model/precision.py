"""Half-precision inference for the `table` encoder: weights converted once, no autocast.

`to_half` stores every weight of the convolutions and linear layers in bfloat16 (``bf16``) or
float16 (``fp16``), in place, so the forward pass multiplies half activations by half weights
(oneDNN's AVX512-BF16 / AMX kernels on CPU, tensor cores on a GPU) and never casts a weight per
call, which is what `torch.autocast` would do on every Linear/MatMul. ``fp16`` is for CUDA only:
CPUs have no float16 MatMul worth running (PyTorch converts per call). What stays float32, and why:

- the input embedding's first layer (``embed.fc1``): it reads raw coordinates in metres, and bf16's
  8 significant bits would round 50 m to 0.25 m, coarser than a 0.1 m voxel (fp16's 11 bits: 3 cm);
- every mean over rows (`SegmentPool.apply`, the present-tap conv's tap sum): accumulated in
  float32 whatever the input (`seg3d.preprocess.tables.pool_dtypes`), rounded to bf16 once;
- the head's first bias (the per-point sum of the blocks' slices starts from it, so that sum is
  float32) and the head's last layer, so the logits are float32 (a ``(N, 17)`` layer: its cost is
  noise, and near-tied logits decide the argmax).

Activations are cast at two points only: the pooled embedding enters the half dtype before
``embed.fc2``, and the head's sum leaves it. Inference only: a half encoder is never trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import nn

if TYPE_CHECKING:  # the encoder imports `TorchPrecision` from here
    from seg3d.model.encoder import Encoder3D

__all__ = [
    "CUDA_ONLY",
    "FP32_PARAMETERS",
    "HALF_DTYPES",
    "PRECISIONS",
    "TorchPrecision",
    "native_bf16_cpu",
    "to_half",
    "weight_dtypes",
]

#: How the `table` encoder runs in PyTorch: float32 throughout, or bf16/fp16 weights and activations.
TorchPrecision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[TorchPrecision, ...] = get_args(TorchPrecision)
#: The weight dtype of each half precision.
HALF_DTYPES: dict[TorchPrecision, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Precisions that need a CUDA device.
CUDA_ONLY: frozenset[TorchPrecision] = frozenset({"fp16"})

#: Parameters a bf16 encoder keeps in float32 (see the module docstring).
FP32_PARAMETERS = frozenset(
    {"embed.fc1.weight", "embed.fc1.bias", "head.0.bias", "head.2.weight", "head.2.bias"}
)


def to_half(model: Encoder3D, precision: TorchPrecision = "bf16") -> Encoder3D:
    """Convert ``model`` (folded, `table` backend, eval mode) to ``precision`` (``bf16`` or
    ``fp16``) in place and return it.

    The float32 tensors are replaced, not kept: nothing on the hot path holds a float32 copy.

    Raises:
        ValueError: ``fp32`` or an unknown precision, a model already in the other half precision,
            a `spconv` model (its CPU kernels have no half types), or one with BatchNorm left (fold
            it first: folding runs in float64, and BN statistics do not belong in half precision).
    """
    if precision not in HALF_DTYPES:
        raise ValueError(f"to_half converts to {sorted(HALF_DTYPES)}, not {precision!r}")
    if model.backend != "table":
        raise ValueError(f"{precision} runs on the 'table' backend only")
    if not model.folded:
        raise ValueError(
            f"{precision} needs a BatchNorm-folded encoder (fold_batchnorm or load_encoder(fold=True))"
        )
    if model.precision == precision:
        return model
    if model.precision != "fp32":
        raise ValueError(f"the encoder is already {model.precision}; convert a float32 one")
    dtype = HALF_DTYPES[precision]
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, param in list(module.named_parameters(recurse=False)):
                full = f"{module_name}.{name}" if module_name else name
                if full in FP32_PARAMETERS:
                    continue
                setattr(module, name, nn.Parameter(param.detach().to(dtype), requires_grad=False))
    model.precision = precision
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
