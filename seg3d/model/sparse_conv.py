"""Submanifold convolutions in two interchangeable implementations with one weight layout.

Both store the kernel as spconv ≥ 2.2 does ("KRSC"): ``weight`` of shape
``(C_out, k, k, k, C_in)`` with the kernel dims in the order of the index columns ``(z, y, x)``, and an
optional ``bias`` ``(C_out,)``. A state dict therefore moves between them unchanged.

- ``spconv``: `spconv.pytorch.SubMConv3d`, the reference. Its CPU build races when torch runs more
  than one thread (about 0.1 % of output rows wrong, differently each run), so every call runs
  under `single_thread` on CPU. It is always built with ``algo=ConvAlgo.Native``: a CUDA wheel would
  otherwise pick ``MaskImplicitGemm`` for every conv, which asserts CUDA indices, so the reference
  would fail on CPU tensors (export's parity check, the parity tests). Native runs on CPU and CUDA,
  and with spconv ≥ 2.2 every algorithm keeps the KRSC weight layout.
- ``table``: Gather over the neighbour table (one zero row appended for missing neighbours), then one
  MatMul with the kernel flattened to ``(27·C_in, C_out)``: the plugin-free form that exports to ONNX.

The 1×1×1 kernel is the exception to "KRSC": spconv 2.3's 1×1 fast path multiplies by
``weight.view(C_in, C_out)``, a reinterpretation of the ``(C_out, 1, 1, 1, C_in)`` memory rather
than a transpose (spconv issue #556 is the same trap). Checkpoints trained with spconv carry that
meaning, so the table conv reads the weight the same way; `one_by_one_matrix` is the single place
that knows it, and a unit test pins it against spconv.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import nn

# The pair lists are part of the one preprocessing definition; the torch path reads the same ones.
from seg3d.preprocess.tables import TapPairs, pool_dtypes, tap_pairs

if TYPE_CHECKING:  # spconv is optional; it is imported where it runs
    from spconv.pytorch import SparseConvTensor

__all__ = [
    "WEIGHT_LAYOUT",
    "Backend",
    "TableSubMConv3d",
    "TapPairs",
    "gather_conv",
    "make_subm_conv",
    "one_by_one_matrix",
    "present_tap_conv",
    "run_spconv",
    "single_thread",
    "spconv_available",
    "tap_pairs",
]

Backend = Literal["table", "spconv"]

#: Recorded in checkpoints and manifests; refuse other layouts instead of permuting silently.
WEIGHT_LAYOUT = "KRSC: (C_out, k_z, k_y, k_x, C_in), spconv>=2.2"

#: Upper bound on elements of one gathered ``(rows, 27·C_in)`` block; larger inputs are processed in
#: row chunks so that memory stays bounded. ``None`` disables chunking (ONNX export wants one Gather).
GATHER_CHUNK_ELEMENTS: int | None = 1 << 24


def _not_spconvs_fx_probe(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("is_fx_tracing will return true")


# spconv 2.3 asks torch.fx.is_fx_tracing() in every convolution, and torch 2.13 answers with a
# deprecation warning meant for spconv's authors; it would open every serve, export and smoke run.
# Only that one message is dropped.
logging.getLogger("torch.fx._symbolic_trace").addFilter(_not_spconvs_fx_probe)


def spconv_available() -> bool:
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def single_thread(device: torch.device) -> Iterator[None]:
    """Run the block with one torch thread on CPU (no-op on CUDA)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_spconv(conv: Any, tensor: SparseConvTensor) -> SparseConvTensor:  # conv: spconv.SubMConv3d
    """Apply a spconv ``SubMConv3d`` the way the reference must run it.

    On CPU: with one torch thread (spconv's CPU build races otherwise), and with the bias added
    after the convolution, because spconv's CPU kernels refuse a fused bias ("cpu don't support act
    and bias"), which every BN-folded conv has.
    """
    device = tensor.features.device
    with single_thread(device):
        if conv.bias is None or device.type != "cpu":
            return conv(tensor)
        out = conv._conv_forward(
            conv.training,
            tensor,
            conv.weight,
            None,
            name=conv.name,
            sparse_unique_name=conv._sparse_unique_name,
        )
    return out.replace_feature(out.features + conv.bias)


def one_by_one_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``(C_in, C_out)`` matrix of a ``(C_out, 1, 1, 1, C_in)`` kernel as spconv 2.3 applies it."""
    c_out, c_in = weight.shape[0], weight.shape[-1]
    return weight.reshape(c_in, c_out)


def gather_conv(
    x: torch.Tensor, neighbours: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Submanifold 3×3×3 convolution as Gather + MatMul.

    Args:
        x: ``(V, C_in)`` voxel features.
        neighbours: ``(V, 27)`` rows into ``x``; the pad index ``V`` reads a zero row.
        weight: ``(C_out, 3, 3, 3, C_in)`` in spconv's layout.
        bias: optional ``(C_out,)``.
    """
    num, c_in = x.shape
    taps = neighbours.shape[1]
    flat = weight.permute(1, 2, 3, 4, 0).reshape(taps * c_in, weight.shape[0])
    padded = torch.cat([x, x.new_zeros((1, c_in))])
    limit = GATHER_CHUNK_ELEMENTS
    if limit is None or num * taps * c_in <= limit:
        out = padded[neighbours].reshape(num, taps * c_in) @ flat
    else:
        rows = max(1, limit // (taps * c_in))
        out = torch.cat(
            [
                padded[neighbours[start : start + rows]].reshape(-1, taps * c_in) @ flat
                for start in range(0, num, rows)
            ]
        )
    return out if bias is None else out + bias


def present_tap_conv(
    x: torch.Tensor, pairs: TapPairs, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Submanifold 3×3×3 convolution over the present taps only (the CPU fast path).

    Same result as `gather_conv` to float rounding, with about ``present/27`` of its work: the
    centre tap is one MatMul over every voxel, each other tap a MatMul over the voxels that have
    that neighbour, added in place. Not an export form: ``index_add`` becomes a scatter with
    reduction, which TensorRT cannot import natively.
    """
    # (C_out, 27, C_in) is a view of the KRSC weight; tap t's (C_in, C_out) matrix is its transposed
    # slice, which the MatMul reads in place (BLAS and oneDNN take the stride): no per-call copy
    # or cast of the weight, in float32 or bf16.
    kernel = weight.reshape(weight.shape[0], -1, weight.shape[-1])
    # Up to 27 products per row are summed in float32 even when they are bf16 (a bf16 encoder, or
    # autocast), as pools do; the bias joins the float32 sum, and the result is rounded once.
    compute, result = pool_dtypes(x)
    out = (x @ kernel[:, kernel.shape[1] // 2].t()).to(compute)
    present = [
        (rows, (x[src] @ kernel[:, tap].t()).to(compute))
        for tap, rows, src in zip(pairs.taps, pairs.rows, pairs.sources, strict=True)
        if rows.numel()
    ]
    rows_then_contributions = (*(r for r, _ in present), *(c for _, c in present))
    out = cast(torch.Tensor, _AccumulateRows.apply(out, len(present), *rows_then_contributions))  # type: ignore[no-untyped-call]
    if bias is not None:
        out = out + bias
    return out.to(result)


class _AccumulateRows(torch.autograd.Function):
    """``out.index_add_(0, rows_i, contribution_i)`` for every tap, saving only the row indices for
    the backward pass: autograd's own ``index_add_`` also saves each ``(rows, C_out)`` contribution
    (its backward calls ``expand_as(source)``), which doubled what a training conv keeps."""

    @staticmethod
    def forward(
        ctx: Any, out: torch.Tensor, count: int, *rows_and_contributions: torch.Tensor
    ) -> torch.Tensor:
        rows, contributions = rows_and_contributions[:count], rows_and_contributions[count:]
        ctx.mark_dirty(out)
        ctx.save_for_backward(*rows)
        # Measured on 2 CPU cores: index_add_ of these sizes is ~3x faster on one thread than on two,
        # so the MatMuls use every thread and the accumulation one. (set_num_threads is
        # process-wide: the service runs one inference thread, so nothing else is affected.)
        with single_thread(out.device):
            for r, contribution in zip(rows, contributions, strict=True):
                out.index_add_(0, r, contribution)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows = ctx.saved_tensors
        return (grad, None, *(None for _ in rows), *(grad.index_select(0, r) for r in rows))


class TableSubMConv3d(nn.Module):
    """Submanifold conv on precomputed neighbour tables, parameter-compatible with spconv's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"only kernel sizes 1 and 3 are used, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Variance 1/fan-in (fan-in = k³·C_in): activations keep their scale through 24 convs, which
        # keeps random-weight parity tests meaningful. Training inits both backends the same way.
        fan_in = self.kernel_size**3 * self.in_channels
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self, x: torch.Tensor, neighbours: torch.Tensor | None, pairs: TapPairs | None = None
    ) -> torch.Tensor:
        if self.kernel_size == 1:
            out = x @ one_by_one_matrix(self.weight)
            return out if self.bias is None else out + self.bias
        if pairs is not None:
            return present_tap_conv(x, pairs, self.weight, self.bias)
        if neighbours is None:
            raise ValueError("a 3×3×3 table conv needs the neighbour table")
        return gather_conv(x, neighbours, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}"
        )


def make_subm_conv(
    backend: Backend, in_channels: int, out_channels: int, kernel_size: int, bias: bool, indice_key: str
) -> nn.Module:
    """A submanifold conv of ``backend`` with parameters ``weight`` (and ``bias``) in KRSC layout."""
    if backend == "table":
        return TableSubMConv3d(in_channels, out_channels, kernel_size, bias=bias)
    if backend == "spconv":
        try:
            import spconv.pytorch as spconv
            from spconv.core import ConvAlgo
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "backend 'spconv' needs spconv: pip install '.[cpu]' (or '.[gpu]' on a GPU host)"
            ) from exc
        conv: nn.Module = spconv.SubMConv3d(
            in_channels,
            out_channels,
            kernel_size,
            bias=bias,
            indice_key=indice_key if kernel_size > 1 else None,
            algo=ConvAlgo.Native,
        )
        return conv
    raise ValueError(f"unknown backend {backend!r}; expected 'table' or 'spconv'")
