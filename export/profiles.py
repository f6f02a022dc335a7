"""TensorRT optimization-profile shapes for every dynamic graph input.

Every symbolic dimension of the graph (points ``N``, voxels ``V<s>``, context cells ``C<s>``, pool
overflow sizes; in the sparse form the pairs per tap ``P<s>_<t>`` and the tap-sum sizes) gets a
``(min, opt, max)`` triple. ``opt`` comes from preprocessing a reference cloud (a real sweep when
available), scaled to ``opt_points``; ``max`` is a bound that holds for any
cloud of ``max_points`` points; ``min`` is 1 for everything but ``N``.

`memory_estimate` says what a profile's maximum costs on the GPU: the largest tensor (the gathered
``[V, 27, C]`` of a 3×3×3 conv at scale 1, ``V`` ≤ points) and the activation peak, so that export
refuses a ``--max-points`` whose largest tensor passes 2^31 elements (TensorRT's volume limit) and
sizes the builder workspace to the card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
import torch

from seg3d.config import ModelConfig
from seg3d.graph_inputs import TAP_SUM_WIDTH, graph_form_of, graph_inputs
from seg3d.preprocess import prepare_inputs

__all__ = [
    "MAX_TENSOR_ELEMENTS",
    "MemoryEstimate",
    "check_max_points",
    "default_workspace_bytes",
    "dimension_values",
    "max_points_limit",
    "memory_estimate",
    "profile_shapes",
    "symbolic_dims",
]

#: TensorRT's limit on a tensor's element count (volumes are int32 in many of its kernels).
MAX_TENSOR_ELEMENTS = 2**31 - 1
#: Builder workspace bounds: the default was 8 GiB, the most tactics gain from here.
WORKSPACE_MAX = 8 << 30
WORKSPACE_MIN = 1 << 30
#: Device memory left aside for the CUDA context, the weights and the allocator's slack.
DEVICE_HEADROOM = 2 << 30


@dataclass(frozen=True)
class MemoryEstimate:
    """GPU memory of an engine's profile maximum [estimate, from the graph's structure].

    ``activation_bytes`` is the peak of what must be live at once, taken over the three phases that
    dominate: a 3×3×3 conv at scale 1 (its gathered input, the padded features, its output and the
    four other ``[V, C]`` tensors of the block), a pooling (``[T, M, C']`` gathered and weighted,
    always float32) and the head (one ``[N, C]`` per block plus their concatenation). Each ``V``/``T``
    is bounded by the points. TensorRT fuses some of these, so this is an upper estimate.
    """

    config: str
    precision: str
    max_points: int
    largest_tensor: str
    largest_elements: int
    largest_bytes: int
    activation_bytes: int

    def describe(self) -> str:
        gb = 1e9
        return (
            f"{self.config} {self.precision} at {self.max_points:,} points: largest tensor "
            f"{self.largest_tensor} = {self.largest_elements:,} elements "
            f"({self.largest_elements / 2**31:.2f} × 2^31), {self.largest_bytes / gb:.2f} GB; "
            f"activation peak ≈ {self.activation_bytes / gb:.2f} GB"
        )


def memory_estimate(config: ModelConfig, max_points: int, precision: str = "fp32") -> MemoryEstimate:
    """What a profile of ``max_points`` points needs (see `MemoryEstimate`)."""
    n, c = max_points, config.encoder.hidden
    blocks = len(config.encoder.scale_list)
    size = 2 if precision == "fp16" else 4
    conv = (27 + 1 + 1 + 4) * n * c * size
    widest_pool = max(config.tables.point_pool_width * c, config.tables.voxel_pool_width * 2 * c)
    pool = (2 * widest_pool + 4 * c) * n * 4  # float32: gathered and weighted [T, M, C'], in and out
    head = (2 * blocks * c + config.encoder.head_hidden) * n * size
    largest = 27 * c * n
    return MemoryEstimate(
        config=config.name,
        precision=precision,
        max_points=max_points,
        largest_tensor=f"conv gather [V={n:,}, 27, C={c}]",
        largest_elements=largest,
        largest_bytes=largest * size,
        activation_bytes=max(conv, pool, head),
    )


def max_points_limit(config: ModelConfig) -> int:
    """The most points an engine's profile can take: its largest tensor stays within 2^31 elements."""
    return MAX_TENSOR_ELEMENTS // (27 * config.encoder.hidden)


def check_max_points(config: ModelConfig, max_points: int) -> None:
    """ValueError when ``max_points`` makes a tensor of more than 2^31 elements (TensorRT refuses it,
    or fails late in the build)."""
    limit = max_points_limit(config)
    if max_points > limit:
        estimate = memory_estimate(config, max_points)
        raise ValueError(
            f"--max-points {max_points:,} is too large for {config.name}: its {estimate.largest_tensor} "
            f"would have {estimate.largest_elements:,} elements, over TensorRT's 2^31 limit; use "
            f"--max-points {limit:,} or less"
        )


def default_workspace_bytes(estimate: MemoryEstimate, device_bytes: int) -> int:
    """The builder workspace: what the card has beyond the activations and a headroom, between
    1 and 8 GiB (an 8 GiB workspace on a 16 GB card left the full config no room to run)."""
    spare = device_bytes - estimate.activation_bytes - DEVICE_HEADROOM
    return int(min(WORKSPACE_MAX, max(WORKSPACE_MIN, spare)))


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


#: Non-centre taps whose contributions a voxel sums (sparse form).
_SIDE_TAPS = 26


def _upper_bound(dim: str, max_points: int, config: ModelConfig) -> int:
    if dim.startswith("tap_sum_"):  # sparse form: sums of ≤ 26 contributions per voxel
        fragments = -(-_SIDE_TAPS // TAP_SUM_WIDTH)
        if dim.endswith("_E"):
            return max_points * (fragments - 1) + 1
        if dim.endswith("_H"):
            return max_points
        if dim.endswith("_K"):
            return fragments
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
    form = graph_form_of([value.name for value in model.graph.input])
    measured = dimension_values(model, graph_inputs(prepare_inputs(reference_points, config), config, form))
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
