"""The training model of all three modes (`docs/architecture.md` §5.3): one module, one loss.

`TrainingModel` owns

- ``encoder3d``: `seg3d.model.Encoder3D` on the ``table`` backend by default, or ``spconv`` where the
  loop chooses it (`training.backend`: CUDA only, the CPU spconv build has no backward); both
  backends share one state dict, whose keys start with ``encoder3d.``,
  the prefix `seg3d.checkpoint` extracts for export;
- ``encoder2d``: `ImageEncoder` with the backbone ``config.image_encoder`` (modes ``2dpass`` and
  ``2ddata``; None in ``3d``);
- ``branch``: `MSFSKD` (``2dpass``) or `LocalObjectBranch` (``2ddata``); None in ``3d``.

``forward(batch)`` returns the weighted total loss, every unweighted term as a float for logging and
the final 3D logits. Terms (weights: `BranchConfig.term_weight`):

| term | modes | what |
|---|---|---|
| ``seg3d`` | all | CE + Lovász of the final 3D logits on all points |
| ``aux3d/i`` | 2dpass, 2ddata | 3D aux head of scale ``i`` on voxels, majority-label targets |
| ``fused/i`` | 2dpass, 2ddata | scale ``i`` fused head: projected points (2dpass), in-box points (2ddata) |
| ``kl/i`` | 2dpass, 2ddata | KL(fused.detach() ‖ 3D aux) at the same points |
| ``seg2d`` | 2dpass, 2ddata | final fused classifier (2dpass) / 2D head on decoder features (2ddata) |

Every term enters the total, also at weight 0, and a scale without selected points still reaches
the LOB's parameters through an exact zero: every parameter gets a gradient on every step, which
DistributedDataParallel requires (without ``find_unused_parameters``).

Evaluation uses the 3D encoder alone: `TrainingModel.predict_logits`. For diagnostics,
`TrainingModel.encoder_grad_norms` measures how hard each weighted term pulls on the 3D encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from seg3d.checkpoint import ENCODER_PREFIX
from seg3d.config import ModelConfig
from seg3d.model import Encoder3D
from seg3d.model.sparse_conv import Backend
from seg3d.preprocess import EncoderInputs
from training.data.batch import Batch
from training.model.branch_inputs import build_branch_inputs
from training.model.config import BranchConfig, pretrained_backbone_problem
from training.model.image_encoder import ImageEncoder, ResNet34, load_torchvision_resnet34
from training.model.lob import LocalObjectBranch
from training.model.losses import seg_loss
from training.model.msfskd import MSFSKD

__all__ = ["LossOutput", "TrainingModel", "build_training_model", "parameter_counts"]

# The checkpoint format's prefix must be this attribute's name: export reads the encoder by it.
_ENCODER_ATTRIBUTE = "encoder3d"
if ENCODER_PREFIX != _ENCODER_ATTRIBUTE + ".":  # pragma: no cover - guards a rename on either side
    raise ImportError(f"checkpoint prefix {ENCODER_PREFIX!r} no longer names TrainingModel.encoder3d")


@dataclass(frozen=True)
class LossOutput:
    """Result of one training forward.

    Attributes:
        loss: scalar weighted total, with its graph.
        terms: every unweighted term (see the module table) and ``total``, detached floats.
        logits: ``(N, classes)`` final 3D logits, detached (for training metrics).
        graph_terms: every unweighted term with its graph (no ``total``), for per-term gradients
            (`TrainingModel.encoder_grad_norms`).
    """

    loss: torch.Tensor
    terms: dict[str, float]
    logits: torch.Tensor
    graph_terms: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingModel(nn.Module):
    """3D encoder plus, by mode, the 2D encoder and MSFSKD or the Local Object Branch."""

    def __init__(
        self,
        model_config: ModelConfig,
        config: BranchConfig,
        class_weights: torch.Tensor | None = None,
        backend: Backend = "table",
    ) -> None:
        """Args:
        model_config: the 3D encoder (grid, widths, scales, classes).
        config: mode, LOB knobs, loss weights, the 2D backbone and its optional ImageNet weights.
        class_weights: ``(classes,)`` weights of the final 3D head's cross-entropy (SemanticKITTI),
            or None for plain cross-entropy. Derived from the data, so kept out of the state dict.
        backend: the 3D encoder's sparse-conv backend (`training.backend.choose_backend`).
        """
        super().__init__()
        self.config = config
        self.model_config = model_config
        if class_weights is not None and class_weights.shape != (model_config.num_classes,):
            raise ValueError(
                f"class_weights has shape {tuple(class_weights.shape)}, the model "
                f"{model_config.num_classes} classes"
            )
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights, persistent=False)
        enc = model_config.encoder
        self.encoder3d = Encoder3D(model_config, backend=backend)
        self.encoder2d: ImageEncoder | None = None
        self.branch: MSFSKD | LocalObjectBranch | None = None
        if config.mode == "3d":
            return
        self.encoder2d = ImageEncoder(enc.hidden, config.image_encoder)
        if config.image_pretrained is not None:
            backbone = self.encoder2d.backbone
            if not isinstance(backbone, ResNet34):
                # The config refuses this pair, but a model_copy(update=...) skips its validation.
                raise ValueError(pretrained_backbone_problem(config.image_encoder, config.image_pretrained))
            load_torchvision_resnet34(backbone, config.image_pretrained)
        common = {
            "channels": enc.hidden,
            "num_scales": len(enc.scale_list),
            "head_hidden": enc.head_hidden,
            "num_classes": model_config.num_classes,
            "lovasz_weight": config.lovasz_weight,
            "ignore_index": model_config.ignore_index,
        }
        if config.mode == "2dpass":
            self.branch = MSFSKD(**common)
        else:
            self.branch = LocalObjectBranch(
                **common,
                num_box_classes=config.lob_classes,
                dim=config.lob_dim,
                tau=config.lob_tau,
                attention=config.lob_attention,
            )

    def predict_logits(self, inputs: EncoderInputs) -> torch.Tensor:
        """``(N, classes)`` logits of the 3D encoder alone: what evaluation and export see."""
        return self.encoder3d(inputs)

    def loss_terms(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every unweighted loss term with its graph, and the final 3D logits."""
        if batch.labels is None:
            raise ValueError("training needs labels (batch.labels is None)")
        if batch.inputs.num_points == 0:
            raise ValueError("empty batch: no point to train on")
        if self.branch is not None and batch.views is None:
            raise ValueError(f"mode {self.config.mode!r} needs camera views (batch.views is None)")
        labels = batch.labels.to(torch.int64)
        output = self.encoder3d.forward_features(batch.inputs, keep_point_features=False)
        terms = {
            "seg3d": seg_loss(
                output.logits,
                labels,
                self.config.lovasz_weight,
                self.model_config.ignore_index,
                self.class_weights,
            )
        }
        if self.encoder2d is not None and self.branch is not None and batch.views is not None:
            maps = self.encoder2d.forward_coarse(batch.views.images)
            terms.update(self.branch(build_branch_inputs(batch, labels, output, maps, self.model_config)))
        return terms, output.logits

    def forward(self, batch: Batch) -> LossOutput:
        terms, logits = self.loss_terms(batch)
        num_scales = len(self.model_config.encoder.scale_list)
        total = torch.stack([self.config.term_weight(k, num_scales) * v for k, v in terms.items()]).sum()
        # One device sync for all the logged values instead of one per term.
        values = torch.stack([t.detach() for t in (*terms.values(), total)]).tolist()
        names = [*terms, "total"]
        return LossOutput(total, dict(zip(names, values, strict=True)), logits.detach(), terms)

    def encoder_grad_norms(self, terms: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, float]:
        """L2 norm of each weighted term's gradient with respect to the 3D encoder's parameters.

        One extra backward per term (``torch.autograd.grad``: nothing is accumulated into ``.grad``,
        and the graph is kept for the training backward that follows); a term of weight 0 is 0
        without one. ``scale`` multiplies each term before its backward and divides the norm after:
        the loop passes its GradScaler's scale, so float16 gradients do not underflow.
        """
        num_scales = len(self.model_config.encoder.scale_list)
        parameters = [p for p in self.encoder3d.parameters() if p.requires_grad]
        norms: dict[str, torch.Tensor] = {}
        for name, term in terms.items():
            weight = self.config.term_weight(name, num_scales)
            if weight == 0 or not term.requires_grad:
                norms[name] = term.new_zeros(())
                continue
            grads = torch.autograd.grad(
                term * (weight * scale), parameters, retain_graph=True, allow_unused=True
            )
            squares = [g.float().square().sum() for g in grads if g is not None]
            # A term that does not reach the encoder (seg2d in 2ddata: the 2D side only) pulls with 0.
            norms[name] = torch.stack(squares).sum().sqrt() / scale if squares else term.new_zeros(())
        # One device sync for all the norms instead of one per term.
        values = torch.stack([v.detach().float() for v in norms.values()]).tolist() if norms else []
        return dict(zip(norms, values, strict=True))


def build_training_model(
    model_config: ModelConfig,
    config: BranchConfig,
    class_weights: torch.Tensor | None = None,
    backend: Backend = "table",
) -> TrainingModel:
    """The training model of ``config.mode`` around the 3D encoder of ``model_config`` (``backend``)."""
    return TrainingModel(model_config, config, class_weights, backend)


def parameter_counts(model: TrainingModel) -> dict[str, int]:
    """Parameters per part: ``encoder3d``, ``encoder2d``, ``branch`` (0 where absent) and ``total``."""

    def count(module: nn.Module | None) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    counts = {
        "encoder3d": count(model.encoder3d),
        "encoder2d": count(model.encoder2d),
        "branch": count(model.branch),
    }
    counts["total"] = sum(counts.values())
    return counts
