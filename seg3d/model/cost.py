"""Multiply-adds of one forward pass of the 3D encoder on a prepared cloud.

`multiply_adds` counts the multiply-adds (MACs) of every MatMul the encoder performs on one
`EncoderInputs`: the convolutions and the linear layers. A FLOP figure is ``2 × MACs``. What is
*not* counted: biases, activations, BatchNorm (folded at inference), the scatter-means (pools),
the per-voxel sums of the present-tap contributions, gathers and the argmax; these are
memory-bound and together a small fraction of the arithmetic.

Two forms of the 3×3×3 submanifold convolution (``form``):

- ``dense``: all 27 taps of every voxel, the missing neighbours read as zero rows (the ``dense``
  exported graph, and `seg3d.model.sparse_conv.gather_conv`): ``V × 27 × C_in × C_out``;
- ``sparse``: the centre tap of every voxel plus one product per present neighbour pair (the
  PyTorch CPU fast path `present_tap_conv`, the spconv reference, the ``sparse`` exported graph):
  ``(V + pairs) × C_in × C_out``, ``V + pairs`` being the entries of the ``(V, 27)`` neighbour table
  below the pad index ``V``.

The same weights run with three schedules of the linear layers (``schedule``), because some rows
are copies of each other and a schedule may compute them once:

- ``table`` (`Encoder3D` with the ``table`` backend, `Encoder3D._forward_table`): the embedding's
  second layer per scale-1 voxel (after the pool), the point branch's identity and output MLP per
  voxel at the block's resolution, the context MLP per 2× context cell, and the head's first layer
  as one slice per block applied to that block's output voxels (then gathered to points); the
  head's last layer per point.
- ``graph`` (the exported ONNX graph, `export.onnx_graph`): as ``table``, except that the head's
  first layer reads the concatenated per-point features, once per point. The ``sparse`` graph also
  multiplies one dummy row for each non-centre tap without a pair (`seg3d.graph_inputs`), counted.
- ``spconv`` (the reference, `Encoder3D._forward_spconv`, as 2DPASS runs it): the embedding's
  second layer and the point branch's output MLP per point, the head's first layer per point.

Per block ``i`` (resolution ``r_prev`` with ``V`` voxels, ``M`` context cells): two residual blocks of
two 3×3×3 convolutions and one 1×1×1 shortcut each (``conv3``, ``conv1``), then the point branch
``context`` ``C → C/2 → C/2 → C`` per cell, ``identity`` ``C → C`` per voxel and ``out1``/``out2``
``2C → C → C`` per voxel (per point for ``spconv``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch

from seg3d.config import KERNEL_TAPS, ModelConfig
from seg3d.manifest import GraphForm
from seg3d.preprocess import POINT_FEATURE_DIM, EncoderInputs

__all__ = ["MultiplyAdds", "Schedule", "multiply_adds", "present_taps"]

Schedule = Literal["table", "graph", "spconv"]


@dataclass(frozen=True)
class MultiplyAdds:
    """Multiply-adds of one forward pass, by part (`multiply_adds` says what each counts).

    Attributes:
        embedding: the input embedding's two linear layers.
        conv3: every 3×3×3 submanifold convolution (four per block).
        conv1: every 1×1×1 shortcut convolution (two per block).
        point_branch: the point branches' context MLP, identity layer and output MLP.
        head: the segmentation head's two linear layers.
    """

    embedding: int
    conv3: int
    conv1: int
    point_branch: int
    head: int

    @property
    def total(self) -> int:
        return self.embedding + self.conv3 + self.conv1 + self.point_branch + self.head

    @property
    def linear(self) -> int:
        """Everything but the 3×3×3 convolutions."""
        return self.total - self.conv3

    def as_dict(self) -> dict[str, int]:
        """Every part and the total, for a report."""
        return {**{f.name: int(getattr(self, f.name)) for f in fields(self)}, "total": self.total}


def present_taps(neighbours: torch.Tensor) -> int:
    """Entries of a ``(V, 27)`` neighbour table that name a voxel (the centre taps included)."""
    return int((neighbours < neighbours.shape[0]).sum())


def _empty_taps(neighbours: torch.Tensor) -> int:
    """Non-centre taps of the table that no voxel has (each a dummy row in the sparse graph)."""
    present = (neighbours < neighbours.shape[0]).any(dim=0)
    present[KERNEL_TAPS // 2] = True
    return int((~present).sum())


def multiply_adds(
    inputs: EncoderInputs, config: ModelConfig, form: GraphForm, schedule: Schedule = "table"
) -> MultiplyAdds:
    """Multiply-adds of one forward pass of ``config``'s encoder on ``inputs`` (see the module).

    Args:
        inputs: the prepared cloud (`seg3d.preprocess.prepare_inputs`).
        config: the model config the inputs were prepared for (widths, scales, classes).
        form: ``dense`` (27 taps per voxel) or ``sparse`` (centre plus present neighbour pairs).
        schedule: which rows the linear layers run on: ``table`` (`Encoder3D` ``table`` backend),
            ``graph`` (the exported graph) or ``spconv`` (the reference).
    """
    if form not in ("dense", "sparse"):
        raise ValueError(f"form must be 'dense' or 'sparse', got {form!r}")
    if schedule not in ("table", "graph", "spconv"):
        raise ValueError(f"schedule must be 'table', 'graph' or 'spconv', got {schedule!r}")
    enc = config.encoder
    c, half, head_hidden = enc.hidden, enc.hidden // 2, enc.head_hidden
    n = inputs.num_points
    if n == 0:
        return MultiplyAdds(0, 0, 0, 0, 0)
    per_point = schedule == "spconv"
    voxels1 = inputs.voxels[1].num_voxels
    embedding = n * POINT_FEATURE_DIM * c + (n if per_point else voxels1) * c * c
    conv3 = conv1 = point_branch = head = 0
    for r_prev, r in zip(enc.conv_scales, enc.scale_list, strict=True):
        level = inputs.conv[r_prev]
        v = int(level.neighbours.shape[0])
        if form == "dense":
            rows = v * KERNEL_TAPS
        else:
            rows = present_taps(level.neighbours)
            if schedule == "graph":
                rows += _empty_taps(level.neighbours)
        conv3 += 4 * rows * c * c  # two residual blocks of two 3×3×3 convs
        conv1 += 2 * v * c * c  # one 1×1×1 shortcut per residual block
        cells = level.context_pool.num_targets
        point_branch += cells * (c * half + half * half + half * c)  # context MLP per cell
        point_branch += v * c * c  # identity per voxel
        point_branch += (n if per_point else v) * (2 * c * c + c * c)  # output MLP
        if schedule == "table":
            head += inputs.voxels[r].num_voxels * c * head_hidden  # this block's head slice
    if schedule != "table":
        head += n * len(enc.scale_list) * c * head_hidden
    head += n * head_hidden * config.num_classes
    return MultiplyAdds(embedding, conv3, conv1, point_branch, head)
