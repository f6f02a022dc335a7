"""TensorRT optimization-profile shapes for every dynamic graph input.

Every symbolic dimension of the graph (points ``N``, voxels ``V<s>``, context cells ``C<s>``, pool
overflow sizes) gets a ``(min, opt, max)`` triple. ``opt`` comes from preprocessing a reference cloud
(a real sweep when available), scaled to ``opt_points``; ``max`` is a bound that holds for any
cloud of ``max_points`` points; ``min`` is 1 for everything but ``N``.
"""

from __future__ import annotations

import math

import onnx
import torch

from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_inputs
from seg3d.preprocess import prepare_inputs

__all__ = ["dimension_values", "profile_shapes", "symbolic_dims"]


def symbolic_dims(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Each graph input's dims: an int for a static dim, the symbol's name for a dynamic one."""
    dims: dict[str, list[int | str]] = {}
    for value in model.graph.input:
        dims[value.name] = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    return dims


def dimension_values(model: onnx.ModelProto, named: dict[str, torch.Tensor]) -> dict[str, int]:
    """The value of every symbolic dim for one set of graph inputs (checks they are consistent)."""
    values: dict[str, int] = {}
    for name, dims in symbolic_dims(model).items():
        for axis, dim in enumerate(dims):
            size = int(named[name].shape[axis])
            if isinstance(dim, str):
                if values.setdefault(dim, size) != size:
                    raise ValueError(f"dimension {dim} is {values[dim]} and {size} at once ({name})")
            elif dim != size:
                raise ValueError(f"{name} axis {axis} must be {dim}, got {size}")
    return values


def _upper_bound(dim: str, max_points: int, config: ModelConfig) -> int:
    widths = config.tables
    width = widths.point_pool_width if dim.startswith("pool_points") else widths.voxel_pool_width
    if dim.endswith("_E"):  # extra fragments: at most one per `width` sources
        return max_points // width + 1
    if dim.endswith("_H"):  # targets with more than `width` sources
        return max_points // (width + 1) + 1
    if dim.endswith("_K"):  # fragments of one target
        return max_points // width + 2
    return max_points  # N, voxels and context cells never outnumber the points


def profile_shapes(
    model: onnx.ModelProto,
    config: ModelConfig,
    reference_points: torch.Tensor,
    min_points: int,
    opt_points: int,
    max_points: int,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """``name → (min, opt, max)`` shapes for every graph input."""
    if not 1 <= min_points <= opt_points <= max_points:
        raise ValueError(f"need 1 <= min <= opt <= max points, got {min_points}/{opt_points}/{max_points}")
    measured = dimension_values(model, graph_inputs(prepare_inputs(reference_points, config), config))
    ratio = opt_points / max(1, reference_points.shape[0])
    low: dict[str, int] = {}
    opt: dict[str, int] = {}
    high: dict[str, int] = {}
    for dim, value in measured.items():
        high[dim] = _upper_bound(dim, max_points, config)
        low[dim] = min_points if dim == "N" else 1
        scaled = opt_points if dim == "N" else math.ceil(value * ratio)
        opt[dim] = min(max(scaled, low[dim]), high[dim])
    shapes = {}
    for name, dims in symbolic_dims(model).items():
        shapes[name] = tuple(
            tuple(d if isinstance(d, int) else table[d] for d in dims) for table in (low, opt, high)
        )
    return shapes  # type: ignore[return-value]
