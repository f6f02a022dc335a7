"""2DPASS multi-scale fusion-to-single knowledge distillation (MSFSKD), mode ``2dpass``.

Design: `docs/architecture.md` §4.

Per 3D scale ``i``:

1. 3D auxiliary head on the voxel features ``V_i`` (targets: voxel majority labels) → ``aux3d/i``;
2. at the projected points, the "2D learner" fusion of the image feature ``x`` and 3D feature ``f``:
   ``l = ReLU(W_l f)``, ``u = W_u [x ‖ l]``, ``g = σ(W_g u)``, ``fused = ReLU(u ⊙ g)``;
3. fused head → ``fused/i`` (segmentation of the projected points);
4. ``kl/i = KL(softmax(fused logits).detach() ‖ softmax(3D aux logits at the points))``.

Then the final fused classifier over the concatenation of the ``S`` fused features → ``seg2d``.
Terms are returned unweighted; `training.model.training_model.TrainingModel` applies the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.model.branch_inputs import BranchInputs
from training.model.heads import ClassifierHead
from training.model.losses import distillation_kl, seg_loss

__all__ = ["MSFSKD", "FusionLearner"]


class FusionLearner(nn.Module):
    """The 2DPASS "2D learner" fusion of one scale: ``(x_2d, f_3d) → fused`` (all ``C`` wide)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.learner = nn.Linear(channels, channels)
        self.fuse = nn.Linear(2 * channels, channels)
        self.gate = nn.Linear(channels, channels)

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        learned = F.relu(self.learner(points))
        u = self.fuse(torch.cat([image, learned], dim=1))
        return F.relu(u * torch.sigmoid(self.gate(u)))


class MSFSKD(nn.Module):
    """All training-only parts of mode ``2dpass``: 3D aux heads, fusions, fused heads, final classifier."""

    def __init__(
        self,
        channels: int,
        num_scales: int,
        head_hidden: int,
        num_classes: int,
        lovasz_weight: float = 1.0,
        ignore_index: int = 0,
    ) -> None:
        super().__init__()
        self.aux3d = nn.ModuleList(
            [ClassifierHead(channels, head_hidden, num_classes) for _ in range(num_scales)]
        )
        self.fusions = nn.ModuleList([FusionLearner(channels) for _ in range(num_scales)])
        self.fused_heads = nn.ModuleList(
            [ClassifierHead(channels, head_hidden, num_classes) for _ in range(num_scales)]
        )
        self.classifier = ClassifierHead(num_scales * channels, head_hidden, num_classes)
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index

    def _seg(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return seg_loss(logits, labels, self.lovasz_weight, self.ignore_index)

    def forward(self, inputs: BranchInputs) -> dict[str, torch.Tensor]:
        """Unweighted loss terms ``aux3d/i``, ``fused/i``, ``kl/i`` per scale and ``seg2d``."""
        if inputs.num_scales != len(self.fusions):
            raise ValueError(f"branch built for {len(self.fusions)} scales, got {inputs.num_scales}")
        terms: dict[str, torch.Tensor] = {}
        fused_all = []
        for i, (aux, fusion, head) in enumerate(zip(self.aux3d, self.fusions, self.fused_heads, strict=True)):
            voxel_logits = aux(inputs.voxel_features[i])
            terms[f"aux3d/{i}"] = self._seg(voxel_logits, inputs.voxel_targets[i])
            fused = fusion(inputs.point_features_2d(i), inputs.point_features_3d(i))
            fused_logits = head(fused)
            terms[f"fused/{i}"] = self._seg(fused_logits, inputs.point_labels)
            # The aux head at a point is its voxel's logits: gather instead of re-running the head.
            terms[f"kl/{i}"] = distillation_kl(fused_logits, voxel_logits[inputs.point_voxel[i]])
            fused_all.append(fused)
        terms["seg2d"] = self._seg(self.classifier(torch.cat(fused_all, dim=1)), inputs.point_labels)
        return terms
