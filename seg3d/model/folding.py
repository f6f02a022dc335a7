"""BatchNorm folding for inference.

Every BN of the encoder folds exactly (in eval mode, BN is an affine map per channel):

- after a submanifold conv (``conv → BN``): ``W' = W·a`` over the output channel and ``b' = a·b + c``
  (for the 1×1×1 shortcut the output channel is the last axis of spconv's ``(C_in, C_out)`` view,
  see `seg3d.model.sparse_conv.one_by_one_matrix`);
- after an activation in the context MLP (``LReLU → BN → Linear``): into the *next* linear's input
  side, ``W' = W·diag(a)`` and ``b' = b + W·c``;

with ``a = γ / sqrt(σ² + ε)`` and ``c = β − μ·a``. The folded state dict loads into
``Encoder3D(config, backend, folded=True)`` of either backend.
"""

from __future__ import annotations

import torch

from seg3d.model.encoder import Encoder3D
from seg3d.model.sparse_conv import one_by_one_matrix

__all__ = ["fold_batchnorm", "fold_state_dict"]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _affine(state: dict[str, torch.Tensor], prefix: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pop BN ``prefix`` from ``state`` and return its per-channel ``(a, c)`` in float64."""
    bn = {k: state.pop(f"{prefix}.{k}") for k in _BN_KEYS if f"{prefix}.{k}" in state}
    a = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + eps)
    c = bn["bias"].double() - bn["running_mean"].double() * a
    return a, c


def fold_state_dict(state: dict[str, torch.Tensor], model: Encoder3D) -> dict[str, torch.Tensor]:
    """Fold the BNs of an unfolded ``state`` (of ``model``'s config) into a folded state dict."""
    if model.folded:
        raise ValueError("the model is already folded")
    eps = model.config.encoder.bn_eps
    out = {k: v.detach().clone() for k, v in state.items()}
    for i in range(len(model.blocks)):
        for j in range(2):
            base = f"blocks.{i}.voxel.{j}"
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("shortcut", "bn_shortcut")):
                a, c = _affine(out, f"{base}.{bn}", eps)
                weight = out[f"{base}.{conv}.weight"]
                bias = out.get(f"{base}.{conv}.bias")
                folded_bias = c if bias is None else a * bias.double() + c
                if weight.shape[1:4] == (1, 1, 1):
                    matrix = one_by_one_matrix(weight).double() * a[None, :]
                    scaled = matrix.reshape(weight.shape)
                else:
                    scaled = weight.double() * a[:, None, None, None, None]
                out[f"{base}.{conv}.weight"] = scaled.to(weight.dtype)
                out[f"{base}.{conv}.bias"] = folded_bias.to(weight.dtype)
        ctx = f"blocks.{i}.point.context"
        for bn, nxt in (("bn1", "fc2"), ("bn2", "fc3")):
            a, c = _affine(out, f"{ctx}.{bn}", eps)
            weight = out[f"{ctx}.{nxt}.weight"].double()
            bias = out[f"{ctx}.{nxt}.bias"].double()
            out[f"{ctx}.{nxt}.bias"] = (bias + weight @ c).to(torch.float32)
            out[f"{ctx}.{nxt}.weight"] = (weight * a[None, :]).to(torch.float32)
    return out


def fold_batchnorm(model: Encoder3D) -> Encoder3D:
    """An eval-mode copy of ``model`` (same backend) with every BatchNorm folded away."""
    folded = Encoder3D(model.config, model.backend, folded=True)
    folded.load_state_dict(fold_state_dict(model.state_dict(), model))
    return folded.to(next(model.parameters()).device).eval()
