"""The 2DPASS 3D encoder (`docs/architecture.md` §2): input embedding, SPV blocks, head.

One module tree, two ways to run its sparse parts (``backend``):

- ``spconv``: the reference, written as 2DPASS computes it: spconv `SubMConv3d` with one indice key
  per block, scatter-means over points, ``unique`` for the point branch's context cells, and the
  point branch's output MLP run per point.
- ``table``: the export form: convolutions by neighbour-table Gather + MatMul, every scatter-mean by
  a precomputed `SegmentPool`, and the output MLP run once per voxel. The rows it would run per
  point are copies of their voxel's row, so this gives the same result with a fraction of the work
  (`docs/export.md` §2.3).

Both read the same `EncoderInputs` and have the same state dict (spconv's KRSC weight layout), so a
checkpoint trained with either runs on the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from seg3d.config import EncoderConfig, ModelConfig
from seg3d.model.precision import TorchPrecision
from seg3d.model.sparse_conv import Backend, TapPairs, make_subm_conv, run_spconv
from seg3d.preprocess import POINT_FEATURE_DIM, EncoderInputs
from seg3d.preprocess.tables import pool_dtypes

if TYPE_CHECKING:  # spconv is optional; it is imported where it runs
    from spconv.pytorch import SparseConvTensor

__all__ = [
    "ContextMLP",
    "Encoder3D",
    "EncoderOutput",
    "InputEmbedding",
    "PointBranch",
    "ResidualBlock",
    "labels_from_logits",
]


def _batch_norm(channels: int, enc: EncoderConfig, folded: bool) -> nn.Module:
    return nn.Identity() if folded else nn.BatchNorm1d(channels, eps=enc.bn_eps, momentum=enc.bn_momentum)


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, num: int) -> torch.Tensor:
    """Mean of ``values`` rows grouped by ``index`` into ``num`` rows (every group non-empty).

    Accumulated in float32 or wider, like every `SegmentPool` (dtypes by `pool_dtypes`).
    """
    compute, result = pool_dtypes(values)
    values = values.to(compute)
    sums = values.new_zeros((num, values.shape[1])).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=num).clamp_(min=1).to(compute)
    return (sums / counts[:, None]).to(result)


class InputEmbedding(nn.Module):
    """Per-point ``Linear(10→C) → ReLU → Linear(C→C)``, then the mean over each scale-1 voxel."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(POINT_FEATURE_DIM, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward_points(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(F.relu(self.fc1(features)))
        return out


class ResidualBlock(nn.Module):
    """``LeakyReLU(BN(conv3(LeakyReLU(BN(conv3(x))))) + BN(conv1(x)))`` with submanifold convs."""

    def __init__(self, enc: EncoderConfig, backend: Backend, indice_key: str, folded: bool) -> None:
        super().__init__()
        hidden = enc.hidden
        self.slope = enc.leaky_slope
        # Folded: each BN lives in its conv's weight and bias (see `seg3d.model.folding`).
        self.conv1 = make_subm_conv(backend, hidden, hidden, 3, folded, indice_key)
        self.bn1 = _batch_norm(hidden, enc, folded)
        self.conv2 = make_subm_conv(backend, hidden, hidden, 3, folded, indice_key)
        self.bn2 = _batch_norm(hidden, enc, folded)
        self.shortcut = make_subm_conv(backend, hidden, hidden, 1, folded, indice_key)
        self.bn_shortcut = _batch_norm(hidden, enc, folded)

    def forward_table(
        self, x: torch.Tensor, neighbours: torch.Tensor, pairs: TapPairs | None = None
    ) -> torch.Tensor:
        identity = self.bn_shortcut(self.shortcut(x, None))
        h = F.leaky_relu(self.bn1(self.conv1(x, neighbours, pairs)), self.slope)
        h = self.bn2(self.conv2(h, neighbours, pairs))
        return F.leaky_relu(h + identity, self.slope)

    def forward_spconv(self, tensor: SparseConvTensor) -> SparseConvTensor:
        identity = self.bn_shortcut(run_spconv(self.shortcut, tensor).features)
        h = run_spconv(self.conv1, tensor)
        h = h.replace_feature(F.leaky_relu(self.bn1(h.features), self.slope))
        h = run_spconv(self.conv2, h)
        return h.replace_feature(F.leaky_relu(self.bn2(h.features) + identity, self.slope))


class ContextMLP(nn.Module):
    """``Linear(C→C/2) → LReLU → BN → Linear(C/2→C/2) → LReLU → BN → Linear(C/2→C) → LReLU``."""

    def __init__(self, enc: EncoderConfig, folded: bool) -> None:
        super().__init__()
        hidden, half = enc.hidden, enc.hidden // 2
        self.slope = enc.leaky_slope
        self.fc1 = nn.Linear(hidden, half)
        self.bn1 = _batch_norm(half, enc, folded)
        self.fc2 = nn.Linear(half, half)
        self.bn2 = _batch_norm(half, enc, folded)
        self.fc3 = nn.Linear(half, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(F.leaky_relu(self.fc1(x), self.slope))
        x = self.bn2(F.leaky_relu(self.fc2(x), self.slope))
        return F.leaky_relu(self.fc3(x), self.slope)


class PointBranch(nn.Module):
    """The point encoder of an SPV block (2DPASS ``point_encoder``)."""

    def __init__(self, enc: EncoderConfig, folded: bool) -> None:
        super().__init__()
        hidden = enc.hidden
        self.slope = enc.leaky_slope
        self.context = ContextMLP(enc, folded)
        self.identity = nn.Linear(hidden, hidden)
        self.out1 = nn.Linear(2 * hidden, hidden)
        self.out2 = nn.Linear(hidden, hidden)

    def fuse(self, f: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``[LReLU(identity(F)) ‖ context]`` per voxel, the input of the output MLP."""
        return torch.cat([F.leaky_relu(self.identity(f), self.slope), context], dim=1)

    def output(self, fused: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out2(F.leaky_relu(self.out1(fused), self.slope))
        return out


class SPVBlock(nn.Module):
    """Voxel branch (two residual blocks sharing indice key ``spv_<index>``) and point branch."""

    def __init__(self, index: int, enc: EncoderConfig, backend: Backend, folded: bool) -> None:
        super().__init__()
        key = f"spv_{index}"
        self.voxel = nn.ModuleList([ResidualBlock(enc, backend, key, folded) for _ in range(2)])
        self.point = PointBranch(enc, folded)

    @property
    def residuals(self) -> list[ResidualBlock]:
        """The voxel branch's residual blocks, typed (a ModuleList yields plain Modules)."""
        return cast(list[ResidualBlock], list(self.voxel))


class EncoderOutput:
    """Logits per point plus the intermediate features the training branches read.

    Attributes:
        logits: ``(N, num_classes)``.
        voxel_features: per block ``i``, its voxel-branch output ``V_i`` at resolution ``r_prev``
            (``(V_{r_prev}, C)``), what 2DPASS calls ``layer_i``; gather it to points with
            ``inputs.voxels[r_prev].inverse``.
        point_features: per block, ``(N, C)`` point features fed to the head (kept on request).
    """

    __slots__ = ("logits", "point_features", "voxel_features")

    def __init__(
        self, logits: torch.Tensor, voxel_features: list[torch.Tensor], point_features: list[torch.Tensor]
    ) -> None:
        self.logits = logits
        self.voxel_features = voxel_features
        self.point_features = point_features


class Encoder3D(nn.Module):
    """2DPASS 3D encoder: ``forward(inputs) -> (N, num_classes)`` logits, one row per input point."""

    def __init__(self, config: ModelConfig, backend: Backend = "table", folded: bool = False) -> None:
        """Args:
        config: grid, widths, scales and classes.
        backend: ``"table"`` (export form) or ``"spconv"`` (reference); same state dict.
        folded: build the inference structure whose BatchNorms are folded into the preceding
            conv or following linear (load it with `fold_state_dict` output, or use
            `fold_batchnorm`). A folded model has no BN and cannot be trained meaningfully.
        """
        super().__init__()
        enc = config.encoder
        self.config = config
        self.backend: Backend = backend
        self.folded = folded
        # `table` only: compute the present taps instead of all 27 (the CPU fast path; same
        # result). The exported graph always uses the dense gather, which TensorRT imports natively.
        self.present_taps = False
        # "bf16"/"fp16" once `seg3d.model.precision.to_half` has converted the weights (inference only).
        self.precision: TorchPrecision = "fp32"
        self.embed = InputEmbedding(enc.hidden)
        self.blocks = nn.ModuleList([SPVBlock(i, enc, backend, folded) for i in range(len(enc.scale_list))])
        self.head = nn.Sequential(
            nn.Linear(enc.hidden * len(enc.scale_list), enc.head_hidden),
            nn.ReLU(),
            nn.Linear(enc.head_hidden, config.num_classes),
        )

    @property
    def spv_blocks(self) -> list[SPVBlock]:
        """The SPV blocks, typed (a ModuleList yields plain Modules)."""
        return cast(list[SPVBlock], list(self.blocks))

    def forward(self, inputs: EncoderInputs) -> torch.Tensor:
        return self.forward_features(inputs, keep_point_features=False).logits

    def forward_features(self, inputs: EncoderInputs, keep_point_features: bool = True) -> EncoderOutput:
        """Logits and the intermediate features (``point_features`` empty unless kept)."""
        if inputs.num_points == 0:
            # Nothing to convolve; spconv would fail on an empty grid.
            hidden = self.config.encoder.hidden
            empty = inputs.features.new_zeros((0, self.config.num_classes))
            return EncoderOutput(empty, [], [inputs.features.new_zeros((0, hidden)) for _ in self.blocks])
        if self.backend == "table":
            return self._forward_table(inputs, keep_point_features)
        return self._forward_spconv(inputs)

    def _forward_table(self, inputs: EncoderInputs, keep_point_features: bool) -> EncoderOutput:
        enc = self.config.encoder
        # mean(fc2(h)) == fc2(mean(h)): pool after the ReLU and run fc2 once per voxel.
        # fc1 reads raw coordinates and stays float32 in a bf16 encoder; the voxel mean enters the
        # weights' dtype here (a no-op in float32), and every layer after it runs in that dtype.
        h = F.relu(self.embed.fc1(inputs.features))
        x = self.embed.fc2(inputs.point_pool.apply(h).to(self.embed.fc2.weight.dtype))
        voxel_features: list[torch.Tensor] = []
        point_features: list[torch.Tensor] = []
        block_outputs: list[tuple[torch.Tensor, int]] = []
        for block, r_prev, r in zip(self.spv_blocks, enc.conv_scales, enc.scale_list, strict=True):
            level = inputs.conv[r_prev]
            pairs = level.tap_pairs if self.present_taps else None  # computed once per resolution
            v = x
            for residual in block.residuals:
                v = residual.forward_table(v, level.neighbours, pairs)
            voxel_features.append(v)
            f = x + v
            context = block.point.context(level.context_pool.apply(f))[level.context_inverse]
            out = block.point.output(block.point.fuse(f, context))
            if r_prev == r:
                p, v_down = out, v
            else:
                moved = inputs.down_pools[(r_prev, r)].apply(torch.cat([out, v], dim=1))
                p, v_down = torch.split(moved, enc.hidden, dim=1)
            block_outputs.append((p, r))
            if keep_point_features:
                point_features.append(p[inputs.voxels[r].inverse])
            x = p + v_down
        # The head's first layer over the concatenated per-point features equals the sum of each
        # block's slice applied per voxel, then gathered to points: ~12x fewer FLOPs at full width.
        # The sum starts from the bias, which a bf16 encoder keeps in float32: the sum and the
        # logits are then float32 (bf16 + float32 promotes), with no cast of any weight.
        first, activation, last = cast(tuple[nn.Linear, nn.Module, nn.Linear], tuple(self.head))
        hidden: torch.Tensor = first.bias
        for i, (p, r) in enumerate(block_outputs):
            part = p @ first.weight[:, i * enc.hidden : (i + 1) * enc.hidden].t()
            hidden = hidden + part[inputs.voxels[r].inverse]
        logits = last(activation(hidden))
        return EncoderOutput(logits, voxel_features, point_features)

    def _forward_spconv(self, inputs: EncoderInputs) -> EncoderOutput:
        import spconv.pytorch as spconv

        enc = self.config.encoder
        scale1 = inputs.voxels[1]
        x = _scatter_mean(self.embed.forward_points(inputs.features), scale1.inverse, scale1.num_voxels)
        voxel_features: list[torch.Tensor] = []
        point_features: list[torch.Tensor] = []
        for block, r_prev, r in zip(self.spv_blocks, enc.conv_scales, enc.scale_list, strict=True):
            fine, coarse = inputs.voxels[r_prev], inputs.voxels[r]
            tensor = spconv.SparseConvTensor(x, fine.coords, fine.spatial_shape_zyx, inputs.batch_size)
            for residual in block.residuals:
                tensor = residual.forward_spconv(tensor)
            v = tensor.features
            voxel_features.append(v)
            v_down = _scatter_mean(v[fine.inverse], coarse.inverse, coarse.num_voxels)
            f = x + v
            # Context cells exactly as 2DPASS finds them: unique over (b, z//2, y//2, x//2).
            halved = torch.cat([fine.coords[:, :1], fine.coords[:, 1:] // 2], dim=1)
            _, cell = torch.unique(halved, dim=0, return_inverse=True)
            num_cells = int(cell.max()) + 1
            context = block.point.context(_scatter_mean(f, cell, num_cells))[cell]
            fused = block.point.fuse(f, context)
            # The output MLP per point, as upstream runs it.
            p = _scatter_mean(block.point.output(fused[fine.inverse]), coarse.inverse, coarse.num_voxels)
            point_features.append(p[coarse.inverse])
            x = p + v_down
        logits = self.head(torch.cat(point_features, dim=1))
        return EncoderOutput(logits, voxel_features, point_features)

    def extra_repr(self) -> str:
        return (
            f"backend={self.backend!r}, folded={self.folded}, present_taps={self.present_taps}, "
            f"precision={self.precision!r}"
        )


def labels_from_logits(logits: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``(N,)`` int64 class of each row, never ``ignore_index``: the rule of the exported graph,
    the service and evaluation alike (the ignore class is never a positive training target)."""
    masked = logits.float().clone()
    masked[:, ignore_index] = -torch.inf
    return masked.argmax(dim=1)
