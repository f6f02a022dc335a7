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

The graph comes in two forms (`seg3d.manifest.GraphForm`) that differ only in how a 3×3×3
submanifold convolution at scale ``s`` reads its neighbours:

- ``dense``: ``neighbours_s<s>`` ``[V, 27]``, the whole neighbour table (im2col of all 27 taps);
- ``sparse``: the present taps only, from `seg3d.preprocess.ConvLevel.tap_pairs`. For each tap
  ``t ≠ 13`` in order, ``tap_source_s<s>_t<t>`` ``[P]``: the rows of ``x`` whose product with the
  tap's ``[C_in, C_out]`` weight is one *contribution row*. Taps ``t`` and ``26 − t`` have the same
  number of pairs and share the dim ``P<s>_<min(t, 26−t)>``. A tap without pairs gets one dummy
  pair reading row 0, whose contribution no voxel sums, so no dim is ever 0 and the graph needs no
  appended zero row (a cloud always has a voxel: one without is refused before the graph). The
  contributions of all taps, concatenated in tap order, are summed per output voxel by ``tap_sum_s<s>_*``: the
  index parts of a `SegmentPool` export form (weight 1, so no weight input and no Mul), width
  `TAP_SUM_WIDTH`: ``index [V, M]``, ``extra_index [E, M]``, ``overflow_target [H, 1]``,
  ``overflow_index [H, K]``, pad = the number of contribution rows (an appended zero row). The
  centre tap is one MatMul over every voxel, added to that sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seg3d.config import KERNEL_TAPS, ModelConfig
from seg3d.manifest import GRAPH_FORMS, GraphForm
from seg3d.preprocess import EncoderInputs, SegmentPool, TapPairs, build_segment_pool

__all__ = [
    "NON_CENTRE_TAPS",
    "POOL_PARTS",
    "SUM_PARTS",
    "TAP_SUM_WIDTH",
    "ExportPool",
    "ExportTaps",
    "export_pool",
    "export_taps",
    "graph_form_of",
    "graph_input_names",
    "graph_inputs",
    "pool_names",
    "tap_input_names",
]

POOL_PARTS = ("index", "weight", "extra_index", "extra_weight", "overflow_target", "overflow_index")
#: The parts of a pure sum (a pool without weights) in the sparse form's graph inputs.
SUM_PARTS = ("index", "extra_index", "overflow_target", "overflow_index")
#: Taps of a 3×3×3 kernel other than the centre, in the order of the sparse form's inputs.
NON_CENTRE_TAPS = tuple(t for t in range(KERNEL_TAPS) if t != KERNEL_TAPS // 2)
#: Width of the per-voxel tap sums: a 0.1 m voxel has ~2.3 present non-centre neighbours on
#: average; voxels with more continue in extra rows (exact at any width).
TAP_SUM_WIDTH = 4


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


@dataclass(frozen=True)
class ExportTaps:
    """The sparse form of one resolution's tap pairs (see the module docstring)."""

    sources: tuple[torch.Tensor, ...]  # one (P_t ≥ 1,) per tap of NON_CENTRE_TAPS
    index: torch.Tensor
    extra_index: torch.Tensor
    overflow_target: torch.Tensor
    overflow_index: torch.Tensor


def export_taps(pairs: TapPairs, num_voxels: int, width: int = TAP_SUM_WIDTH) -> ExportTaps:
    """The sparse graph's inputs for one resolution from its `TapPairs` (``num_voxels`` = V)."""
    by_tap = {t: (r, s) for t, r, s in zip(pairs.taps, pairs.rows, pairs.sources, strict=True)}
    if sorted(by_tap) != list(NON_CENTRE_TAPS):
        raise ValueError(f"tap pairs must cover the taps {NON_CENTRE_TAPS}, got {sorted(by_tap)}")
    device = pairs.rows[0].device
    sources, contribution_rows, targets = [], [], []
    offset = 0
    for t in NON_CENTRE_TAPS:
        rows, src = by_tap[t]
        count = int(rows.shape[0])
        if count == 0:  # one dummy pair: reads row 0, and no voxel sums it
            sources.append(torch.zeros((1,), dtype=torch.int64, device=device))
            offset += 1
            continue
        sources.append(src.to(torch.int64))
        contribution_rows.append(torch.arange(offset, offset + count, device=device))
        targets.append(rows.to(torch.int64))
        offset += count
    empty = torch.empty(0, dtype=torch.int64, device=device)
    summed = build_segment_pool(
        torch.cat(contribution_rows) if contribution_rows else empty,
        torch.cat(targets) if targets else empty,
        offset,
        num_voxels,
        width,
    )
    form = export_pool(summed)
    return ExportTaps(tuple(sources), form.index, form.extra_index, form.overflow_target, form.overflow_index)


def tap_input_names(scale: int) -> tuple[list[str], list[str]]:
    """The sparse form's inputs of one resolution: per-tap sources, then the sum tables."""
    return (
        [f"tap_source_s{scale}_t{t}" for t in NON_CENTRE_TAPS],
        [f"tap_sum_s{scale}_{part}" for part in SUM_PARTS],
    )


def graph_form_of(input_names: list[str]) -> GraphForm:
    """The form of a graph (or engine) from its input names."""
    return "sparse" if any(name.startswith("tap_source_") for name in input_names) else "dense"


def _check_form(graph: str) -> GraphForm:
    if graph not in GRAPH_FORMS:
        raise ValueError(f"graph form must be one of {', '.join(GRAPH_FORMS)}, got {graph!r}")
    return graph


def pool_names(config: ModelConfig) -> list[str]:
    """Names of every pool the graph reads, in graph-input order."""
    enc = config.encoder
    names = ["pool_points"]
    names += [f"pool_context_s{s}" for s in sorted(set(enc.conv_scales))]
    names += [f"pool_down_s{a}_s{b}" for a, b in zip(enc.conv_scales, enc.scale_list, strict=True) if a != b]
    return names


def graph_input_names(config: ModelConfig, graph: GraphForm = "dense") -> list[str]:
    """Every input name of the exported graph of form ``graph``, in order."""
    _check_form(graph)
    enc = config.encoder
    conv_scales = sorted(set(enc.conv_scales))
    names = ["features"]
    if graph == "dense":
        names += [f"neighbours_s{s}" for s in conv_scales]
    else:
        for s in conv_scales:
            sources, sums = tap_input_names(s)
            names += sources + sums
    names += [f"context_inverse_s{s}" for s in conv_scales]
    names += [f"inverse_s{s}" for s in sorted(set(enc.scale_list))]
    names += [f"{pool}_{part}" for pool in pool_names(config) for part in POOL_PARTS]
    return names


def graph_inputs(
    inputs: EncoderInputs, config: ModelConfig, graph: GraphForm = "dense"
) -> dict[str, torch.Tensor]:
    """Flatten a prepared cloud into the named inputs of the graph of form ``graph`` (int64
    indices, float32 values). The sparse form computes each resolution's tap pairs (once, kept on
    ``inputs``)."""
    _check_form(graph)
    enc = config.encoder
    named: dict[str, torch.Tensor] = {"features": inputs.features}
    for s in sorted(set(enc.conv_scales)):
        level = inputs.conv[s]
        if graph == "dense":
            named[f"neighbours_s{s}"] = level.neighbours
        else:
            taps = export_taps(level.tap_pairs, int(level.neighbours.shape[0]))
            source_names, sum_names = tap_input_names(s)
            named.update(zip(source_names, taps.sources, strict=True))
            named.update((name, getattr(taps, part)) for name, part in zip(sum_names, SUM_PARTS, strict=True))
        named[f"context_inverse_s{s}"] = level.context_inverse
    for s in sorted(set(enc.scale_list)):
        named[f"inverse_s{s}"] = inputs.voxels[s].inverse
    pools: dict[str, SegmentPool] = {"pool_points": inputs.point_pool}
    pools.update({f"pool_context_s{s}": inputs.conv[s].context_pool for s in sorted(set(enc.conv_scales))})
    pools.update({f"pool_down_s{a}_s{b}": pool for (a, b), pool in inputs.down_pools.items()})
    for name in pool_names(config):
        form = export_pool(pools[name])
        for part in POOL_PARTS:
            named[f"{name}_{part}"] = getattr(form, part)
    order = graph_input_names(config, graph)
    missing = set(order) - set(named)
    if missing:  # pragma: no cover - guards the two lists above against drifting apart
        raise RuntimeError(f"graph inputs not produced: {sorted(missing)}")
    return {name: named[name] for name in order}
