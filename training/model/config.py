"""The ``branch`` section of a training config: which mode, the LOB knobs and the loss weights.

Weights follow `docs/architecture.md` §4 / §5.2. The per-scale terms are given as 2DPASS's λ and divided
by the number of 3D scales ``S`` (6 at the nuScenes configuration), so ``fused_weight = 1`` means
1/6 per scale and ``kl_weight = 0.05`` means 0.05/6 per scale. The per-scale 3D auxiliary terms are
not divided (2DPASS adds each at full weight) unless ``aux3d_average`` is set.
`BranchConfig.term_weight` is the one place a term's weight is decided: the total loss and the
loop's per-term gradient norms both read it.

A weight of 0 turns a term off without removing it: every term still enters the total (see
`training.model.training_model`), so the 2D modes without auxiliary heads are ``aux3d_weight: 0``,
and a 3D-only baseline paired with ``2dpass`` is that mode with ``seg2d``, ``fused``, ``kl`` and
``aux3d`` weights all 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from seg3d.checkpoint import Mode
from training.model.image_encoder import ImageBackbone

__all__ = [
    "BranchConfig",
    "ImageBackbone",
    "LOBAttention",
    "Mode",
    "pretrained_backbone_problem",
    "term_kind",
]

#: How the Local Object Branch uses its in-box attention weights (`training.model.lob.LOBScale`).
LOBAttention = Literal["box_token", "point_weights"]


class BranchConfig(BaseModel):
    """Mode, Local Object Branch knobs and loss weights of the training model.

    Attributes:
        mode: ``3d`` (3D encoder alone), ``2dpass`` (+ 2D encoder + MSFSKD) or ``2ddata`` (+ 2D
            encoder + Local Object Branch).
        lob_dim: ``D``, width of the LOB's class-aware embeddings.
        lob_tau: ``τ``, temperature of the in-box softmax.
        lob_classes: rows of the LOB class embedding (interest classes; 6 by default, 10 with the
            "all thing classes" option). Every box class must be below it.
        lob_attention: the two readings of the paper's in-box attention: ``box_token`` pools the
            box's points into one token with the weights and fuses it into each point;
            ``point_weights`` fuses each point's own feature scaled by its weight (no pooling).
        lovasz_weight: weight of Lovász-softmax beside cross-entropy in every segmentation term.
        seg3d_weight: final 3D logits on all points.
        aux3d_weight: each scale's 3D auxiliary head on voxels (2DPASS adds it unscaled per scale).
        aux3d_average: give each scale's auxiliary term ``aux3d_weight / S`` instead, as the fused
            and KL terms get: the auxiliary heads then weigh as much in total whatever ``S``.
        seg2d_weight: 2dpass: the final fused classifier; 2ddata: the 2D head at the projected points.
        fused_weight: λ of the per-scale fused terms; each scale gets ``fused_weight / S``.
        kl_weight: λ of the per-scale distillation terms; each scale gets ``kl_weight / S``.
        image_encoder: the 2D backbone: ``resnet34`` (2DPASS's, the nuScenes default) or ``small``
            (`training.model.image_encoder.SmallBackbone`, ~16× fewer parameters, for short CPU
            runs where a ResNet-34 from scratch learns little). Same decoders and branches either way.
        image_pretrained: a torchvision ``resnet34`` ImageNet state dict to initialise the 2D
            backbone from; None trains it from scratch (the 2DPASS configs do). ``resnet34`` only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "2ddata"
    lob_dim: int = Field(128, ge=1)
    lob_tau: float = Field(0.1, gt=0)
    lob_classes: int = Field(6, ge=1)
    lob_attention: LOBAttention = "box_token"
    lovasz_weight: float = Field(1.0, ge=0)
    seg3d_weight: float = Field(1.0, ge=0)
    aux3d_weight: float = Field(1.0, ge=0)
    aux3d_average: bool = False
    seg2d_weight: float = Field(1.0, ge=0)
    fused_weight: float = Field(1.0, ge=0)
    kl_weight: float = Field(0.05, ge=0)
    image_encoder: ImageBackbone = "resnet34"
    image_pretrained: Path | None = None

    @model_validator(mode="after")
    def _pretrained_fits_the_backbone(self) -> BranchConfig:
        problem = pretrained_backbone_problem(self.image_encoder, self.image_pretrained)
        if problem is not None:
            raise ValueError(problem)
        return self

    def term_weight(self, name: str, num_scales: int) -> float:
        """Weight of the loss term ``name`` (``seg3d``, ``seg2d``, ``aux3d/i``, ``fused/i``, ``kl/i``)."""
        kind = term_kind(name)
        weights = {
            "seg3d": self.seg3d_weight,
            "seg2d": self.seg2d_weight,
            "aux3d": self.aux3d_weight / num_scales if self.aux3d_average else self.aux3d_weight,
            "fused": self.fused_weight / num_scales,
            "kl": self.kl_weight / num_scales,
        }
        if kind not in weights:
            raise KeyError(f"unknown loss term {name!r}")
        return weights[kind]


def term_kind(name: str) -> str:
    """The kind of the loss term ``name``: ``aux3d`` for ``aux3d/2``; a single term is its own kind."""
    return name.split("/")[0]


def pretrained_backbone_problem(image_encoder: ImageBackbone, image_pretrained: Path | None) -> str | None:
    """Why ``image_pretrained`` cannot initialise ``image_encoder``, or None if it can.

    Shared by the config's validation and `training.model.TrainingModel`, which also sees configs made
    with ``model_copy(update=...)`` (pydantic does not validate those).
    """
    if image_pretrained is None or image_encoder == "resnet34":
        return None
    return (
        f"image_pretrained ({image_pretrained}) holds torchvision resnet34 weights, which do not fit "
        f"image_encoder {image_encoder!r}: drop image_pretrained (the {image_encoder} encoder trains "
        "from scratch) or set image_encoder: resnet34"
    )
