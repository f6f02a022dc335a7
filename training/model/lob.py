"""The 2DDATA Local Object Branch (LOB, `docs/architecture.md` §5.2), mode ``2ddata``.

Per 3D scale ``l``, over the *selected points* (projected points with a box, ``point_box >= 0``):

- ``h_p = LeakyReLU_0.1(W_h [F3D_l[p] ‖ F2D_l[p]])`` (2C → C);
- ``e_p = W_e h_p`` (C → D); ``s_p = cos(e_p, Emb_l[class(b(p))])`` with ``max(‖·‖‖·‖, 1e-8)``;
- ``w_p`` = softmax of ``s_p / τ`` over the points of the same box;
- ``f_p = h_p + W_o [h_p ‖ c_p]`` (2C → C); fused logits ``S2D3D_l = head_l(f_p)``, where the
  context ``c_p`` is one of the two readings of the paper (``BranchConfig.lob_attention``):
  ``box_token`` (default) pools the box, ``c_p = t_b = Σ_{p∈b} w_p h_p``, the same for every point
  of the box; ``point_weights`` weights each point's own feature, ``c_p = w_p h_p``, with no
  pooling. Both have the same parameters and shapes. The weights sum to 1 over a box in both, so in
  ``point_weights`` a point's context shrinks with the size of its box (taken literally, not rescaled);
- terms ``fused/l`` = CE + Lovász of ``S2D3D_l`` against the point labels, and
  ``kl/l = KL(S2D3D_l.detach() ‖ S3D_l)`` with ``S3D_l`` the 3D aux head at the same points.

Besides, per scale, the 3D aux head is trained on voxels with majority labels (``aux3d/l``, 2DPASS
parity; the KL alone would only pull it towards the LOB), and one 2D segmentation head (``seg2d``)
is trained on every projected point.

Decisions where §5.2 is silent:

- ``W_h`` is one Linear + LeakyReLU (the spec's "MLP 2C → C"); ``W_e`` and ``W_o`` have no bias, as
  written (``W_e h``, ``W_o [·]``); ``Emb_l`` is an ``nn.Embedding`` (N(0, 1) init, one row per
  interest class).
- The "2D branch segmentation at the projected points (as 2DPASS)" term: 2DPASS's equivalent is its
  final classifier over the concatenated fused features, which exist here only for selected points.
  So ``seg2d`` is a head ``Linear(4C → hidden) → ReLU → Linear(hidden → classes)`` over the
  concatenation of the four decoder features at each projected point, CE + Lovász on their labels.
  It is what trains the 2D encoder on every projected point, not only the ones inside boxes.
- A scale with no selected point gives ``fused/l`` and ``kl/l`` = exact zeros, attached to the graph
  and to every parameter of that scale's LOB (zero gradients, so DDP sees every parameter used).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.model.branch_inputs import BranchInputs
from training.model.config import LOBAttention
from training.model.heads import ClassifierHead
from training.model.image_encoder import IMAGE_SCALES
from training.model.losses import distillation_kl, graph_zero, seg_loss

__all__ = ["COSINE_EPS", "BoxSelection", "LOBScale", "LOBScaleOutput", "LocalObjectBranch", "segment_softmax"]

#: ε of the class-aware cosine similarity (§5.2).
COSINE_EPS = 1e-8


def segment_softmax(scores: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` within each segment (``segment`` ``(S,)`` ids in ``[0, num_segments)``).

    Stable: each segment's maximum is subtracted before ``exp``. The maximum is a constant shift of its
    segment and does not change the result, so it is detached (no gradient through ``amax``).
    """
    if scores.numel() == 0:
        return scores
    maxima = scores.new_full((num_segments,), float("-inf"))
    maxima = maxima.scatter_reduce(0, segment, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - maxima[segment])
    sums = exp.new_zeros(num_segments).index_add(0, segment, exp)
    return exp / sums[segment]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise ``a·b / max(‖a‖‖b‖, ε)``, the formula of §5.1 (torch's ``cosine_similarity`` clamps
    each norm separately, ``max(‖a‖, ε)·max(‖b‖, ε)``, which differs for tiny vectors)."""
    norms = a.norm(dim=1) * b.norm(dim=1)
    return (a * b).sum(dim=1) / norms.clamp(min=COSINE_EPS)


@dataclass(frozen=True)
class BoxSelection:
    """The selected points of a step and their boxes, shared by every scale.

    Attributes:
        rows: ``(S,)`` rows among the projected points that lie in a box.
        segment: ``(S,)`` compact box id ``[0, B)`` of each selected point.
        segment_class: ``(B,)`` interest-class index of each compact box.
    """

    rows: torch.Tensor
    segment: torch.Tensor
    segment_class: torch.Tensor

    @property
    def num_selected(self) -> int:
        return int(self.rows.shape[0])

    @property
    def num_boxes(self) -> int:
        return int(self.segment_class.shape[0])

    @classmethod
    def from_point_box(
        cls, point_box: torch.Tensor, box_class: torch.Tensor, num_classes: int
    ) -> BoxSelection:
        """Select the points with ``point_box >= 0``; ``num_classes`` rows in the class embedding.

        Raises:
            ValueError: a selected point's box has a class outside ``[0, num_classes)``.
        """
        rows = torch.nonzero(point_box >= 0).flatten()
        boxes, segment = torch.unique(point_box[rows], return_inverse=True)
        segment_class = box_class[boxes]
        if segment_class.numel() and (
            int(segment_class.min()) < 0 or int(segment_class.max()) >= num_classes
        ):
            raise ValueError(
                f"box classes must lie in [0, {num_classes}) (lob_classes), got "
                f"{int(segment_class.min())}..{int(segment_class.max())}"
            )
        return cls(rows, segment, segment_class)


@dataclass(frozen=True)
class LOBScaleOutput:
    """``logits`` ``(S, classes)`` of the selected points; ``weights`` ``(S,)`` their in-box attention."""

    logits: torch.Tensor
    weights: torch.Tensor


class LOBScale(nn.Module):
    """The LOB of one scale: fusion, class-aware in-box attention, fused head.

    ``attention`` picks what the weights make of the in-box points (module docstring): one pooled
    token per box (``box_token``) or each point's weighted feature (``point_weights``).
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        num_box_classes: int,
        tau: float,
        head_hidden: int,
        num_classes: int,
        attention: LOBAttention = "box_token",
    ) -> None:
        super().__init__()
        if attention not in ("box_token", "point_weights"):
            raise ValueError(f"unknown LOB attention {attention!r}: 'box_token' or 'point_weights'")
        self.fuse = nn.Linear(2 * channels, channels)
        self.point_embed = nn.Linear(channels, dim, bias=False)
        self.class_embed = nn.Embedding(num_box_classes, dim)
        self.out = nn.Linear(2 * channels, channels, bias=False)
        self.head = ClassifierHead(channels, head_hidden, num_classes)
        self.tau = tau
        self.attention = attention

    def forward(
        self, features_3d: torch.Tensor, features_2d: torch.Tensor, selection: BoxSelection
    ) -> LOBScaleOutput:
        """Args: ``(P, C)`` 3D and 2D features of all projected points; only ``selection.rows`` are read."""
        f3d, f2d = features_3d[selection.rows], features_2d[selection.rows]
        h = F.leaky_relu(self.fuse(torch.cat([f3d, f2d], dim=1)), 0.1)
        similarity = _cosine(
            self.point_embed(h), self.class_embed(selection.segment_class)[selection.segment]
        )
        weights = segment_softmax(similarity / self.tau, selection.segment, selection.num_boxes)
        weighted = weights[:, None] * h
        # Under autocast the similarity (hence ``weighted``) may be float32 while h is bf16: sum in
        # the product's dtype, concatenate in h's.
        if self.attention == "box_token":
            tokens = weighted.new_zeros((selection.num_boxes, h.shape[1])).index_add(
                0, selection.segment, weighted
            )
            context = tokens[selection.segment]
        else:
            context = weighted
        fused = h + self.out(torch.cat([h, context.to(h.dtype)], dim=1))
        return LOBScaleOutput(self.head(fused), weights)


class LocalObjectBranch(nn.Module):
    """All training-only parts of mode ``2ddata``: per-scale 3D aux heads and LOBs, and the 2D head."""

    def __init__(
        self,
        channels: int,
        num_scales: int,
        head_hidden: int,
        num_classes: int,
        num_box_classes: int = 6,
        dim: int = 128,
        tau: float = 0.1,
        lovasz_weight: float = 1.0,
        ignore_index: int = 0,
        attention: LOBAttention = "box_token",
    ) -> None:
        super().__init__()
        self.aux3d = nn.ModuleList(
            [ClassifierHead(channels, head_hidden, num_classes) for _ in range(num_scales)]
        )
        self.scales = nn.ModuleList(
            [
                LOBScale(channels, dim, num_box_classes, tau, head_hidden, num_classes, attention)
                for _ in range(num_scales)
            ]
        )
        self.seg2d_head = ClassifierHead(len(IMAGE_SCALES) * channels, head_hidden, num_classes)
        self.num_box_classes = num_box_classes
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index

    def _seg(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return seg_loss(logits, labels, self.lovasz_weight, self.ignore_index)

    def forward(self, inputs: BranchInputs) -> dict[str, torch.Tensor]:
        """Unweighted loss terms ``aux3d/l``, ``fused/l``, ``kl/l`` per scale and ``seg2d``."""
        if inputs.num_scales != len(self.scales):
            raise ValueError(f"branch built for {len(self.scales)} scales, got {inputs.num_scales}")
        selection = BoxSelection.from_point_box(inputs.point_box, inputs.box_class, self.num_box_classes)
        labels = inputs.point_labels[selection.rows]
        terms: dict[str, torch.Tensor] = {}
        for i, (aux, lob) in enumerate(zip(self.aux3d, self.scales, strict=True)):
            voxel_logits = aux(inputs.voxel_features[i])
            terms[f"aux3d/{i}"] = self._seg(voxel_logits, inputs.voxel_targets[i])
            if selection.num_selected == 0:
                # Exact zero, yet every LOB parameter gets a (zero) gradient: DDP needs all of them.
                zero = sum((graph_zero(p) for p in lob.parameters()), graph_zero(voxel_logits))
                terms[f"fused/{i}"] = terms[f"kl/{i}"] = zero
                continue
            out = lob(inputs.point_features_3d(i), inputs.point_features_2d(i), selection)
            terms[f"fused/{i}"] = self._seg(out.logits, labels)
            student = voxel_logits[inputs.point_voxel[i][selection.rows]]
            terms[f"kl/{i}"] = distillation_kl(out.logits, student)
        terms["seg2d"] = self._seg(
            self.seg2d_head(torch.cat(inputs.image_features, dim=1)), inputs.point_labels
        )
        return terms
