"""The flat, named tensor contract between preprocessing and an exported encoder graph.

An exported graph (ONNX, TensorRT) cannot take `EncoderInputs`; it takes named arrays. This module
is the one place that names them and flattens a prepared cloud into them, for the exporter that
declares the graph inputs and for every runtime that feeds it.

Each `SegmentPool` is passed in an *export form* that never has an empty dimension (TensorRT
profiles and kernels dislike zero-sized tensors):

- ``<pool>_index`` / ``_weight`` ``[T, M]``: the first fragment of each of the ``T`` targets;
- ``<pool>_extra_index`` / ``_extra_weight`` ``[E, M]``, ``E ≥ 1``: further fragments (one all-pad
  row when there are none);
- ``<pool>_overflow_target`` ``[H, 1]`` and ``<pool>_overflow_index`` ``[H, K]``, ``H ≥ 1``: targets to
  complete by summing fragment rows of ``concat(main, extra, zero)`` (pad ``T + E``). With no
  overflow, a single no-op row rewrites target 0 with its own first fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import ModelConfig
from seg3d.preprocess import EncoderInputs, SegmentPool

__all__ = [
    "POOL_PARTS",
    "ExportPool",
    "export_pool",
    "graph_input_names",
    "graph_inputs",
    "pool_names",
]

POOL_PARTS = ("index", "weight", "extra_index", "extra_weight", "overflow_target", "overflow_index")


@dataclass(frozen=True)
class ExportPool:
    index: torch.Tensor
    weight: torch.Tensor
    extra_index: torch.Tensor
    extra_weight: torch.Tensor
    overflow_target: torch.Tensor
    overflow_index: torch.Tensor


def export_pool(pool: SegmentPool) -> ExportPool:
    """The export form of ``pool`` (see the module docstring)."""
    t = pool.num_targets
    rows, width = pool.index.shape
    device = pool.index.device
    index, weight = pool.index[:t], pool.weight[:t]
    extra_index, extra_weight = pool.index[t:], pool.weight[t:]
    if extra_index.shape[0] == 0:
        extra_index = torch.full((1, width), pool.num_sources, dtype=torch.int64, device=device)
        extra_weight = torch.zeros((1, width), dtype=pool.weight.dtype, device=device)
    pad = t + extra_index.shape[0]  # the zero row after concat(main, extra)
    if pool.overflow_targets.numel():
        target = pool.overflow_targets[:, None]
        overflow = torch.where(pool.overflow_index == rows, pad, pool.overflow_index)
    else:
        target = torch.zeros((1, 1), dtype=torch.int64, device=device)
        overflow = torch.zeros((1, 1), dtype=torch.int64, device=device)
    return ExportPool(index, weight, extra_index, extra_weight, target, overflow)


def pool_names(config: ModelConfig) -> list[str]:
    """Names of every pool the graph reads, in graph-input order."""
    enc = config.encoder
    names = ["pool_points"]
    names += [f"pool_context_s{s}" for s in sorted(set(enc.conv_scales))]
    names += [f"pool_down_s{a}_s{b}" for a, b in zip(enc.conv_scales, enc.scale_list, strict=True) if a != b]
    return names


def graph_input_names(config: ModelConfig) -> list[str]:
    """Every input name of the exported graph, in order."""
    enc = config.encoder
    conv_scales = sorted(set(enc.conv_scales))
    names = ["features"]
    names += [f"neighbours_s{s}" for s in conv_scales]
    names += [f"context_inverse_s{s}" for s in conv_scales]
    names += [f"inverse_s{s}" for s in sorted(set(enc.scale_list))]
    names += [f"{pool}_{part}" for pool in pool_names(config) for part in POOL_PARTS]
    return names


def graph_inputs(inputs: EncoderInputs, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Flatten a prepared cloud into the graph's named inputs (int64 indices, float32 values)."""
    enc = config.encoder
    named: dict[str, torch.Tensor] = {"features": inputs.features}
    for s in sorted(set(enc.conv_scales)):
        named[f"neighbours_s{s}"] = inputs.conv[s].neighbours
        named[f"context_inverse_s{s}"] = inputs.conv[s].context_inverse
    for s in sorted(set(enc.scale_list)):
        named[f"inverse_s{s}"] = inputs.voxels[s].inverse
    pools: dict[str, SegmentPool] = {"pool_points": inputs.point_pool}
    pools.update({f"pool_context_s{s}": inputs.conv[s].context_pool for s in sorted(set(enc.conv_scales))})
    pools.update({f"pool_down_s{a}_s{b}": pool for (a, b), pool in inputs.down_pools.items()})
    for name in pool_names(config):
        form = export_pool(pools[name])
        for part in POOL_PARTS:
            named[f"{name}_{part}"] = getattr(form, part)
    missing = set(graph_input_names(config)) - set(named)
    if missing:  # pragma: no cover - guards the two lists above against drifting apart
        raise RuntimeError(f"graph inputs not produced: {sorted(missing)}")
    return {name: named[name] for name in graph_input_names(config)}
