"""What the training-only branches (MSFSKD, LOB) read: 3D and 2D features of the projected points.

Built once per step by `build_branch_inputs` from the batch, the 3D encoder's intermediate output
and the image maps, so both branches see exactly the same correspondence:

- the *projected points* are the rows ``views.point_index`` of the batch (each in one view);
- 3D scale ``i`` reads block ``i``'s voxel features ``V_i`` at its convolution resolution ``r_prev``
  (`seg3d.model.EncoderOutput.voxel_features`), gathered to points by ``voxels[r_prev].inverse``,
  not detached (`docs/architecture.md` §9 row 11);
- 2D: the decoder map of the point's view at its integer pixel (nearest, no interpolation); 3D scale
  ``i`` pairs with image scale ``scale_list[i]`` clamped to 2..16, i.e. decoders 2, 4, 8, 16, 16, 16
  at the nuScenes configuration (§3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seg3d.config import ModelConfig
from seg3d.model import EncoderOutput
from training.data.batch import Batch
from training.model.heads import voxel_majority_labels
from training.model.image_encoder import IMAGE_SCALES, CoarseMap

__all__ = ["BranchInputs", "build_branch_inputs", "image_scale_index"]


@dataclass(frozen=True)
class BranchInputs:
    """Per-step inputs of a training branch. ``P`` = projected points, ``S`` = 3D scales.

    Attributes:
        voxel_features: per scale, ``(V_i, C)`` voxel features ``V_i`` at ``r_prev``.
        voxel_targets: per scale, ``(V_i,)`` majority label of each voxel (target of the aux head).
        point_voxel: per scale, ``(P,)`` voxel row (into ``voxel_features[i]``) of each projected point.
        image_features: per decoder (image scales 2, 4, 8, 16), ``(P, C)`` at the projected points.
        image_scale: per 3D scale, the index into ``image_features`` it pairs with.
        point_labels: ``(P,)`` int64 labels of the projected points.
        point_box: ``(P,)`` box row of each projected point, -1 for none.
        box_class: ``(K,)`` interest-class index of each box.
    """

    voxel_features: list[torch.Tensor]
    voxel_targets: list[torch.Tensor]
    point_voxel: list[torch.Tensor]
    image_features: list[torch.Tensor]
    image_scale: tuple[int, ...]
    point_labels: torch.Tensor
    point_box: torch.Tensor
    box_class: torch.Tensor

    @property
    def num_scales(self) -> int:
        return len(self.voxel_features)

    def point_features_3d(self, scale: int) -> torch.Tensor:
        """``(P, C)`` 3D features of the projected points at ``scale``."""
        return self.voxel_features[scale][self.point_voxel[scale]]

    def point_features_2d(self, scale: int) -> torch.Tensor:
        """``(P, C)`` image features of the projected points for 3D ``scale``."""
        return self.image_features[self.image_scale[scale]]


def image_scale_index(scale: int) -> int:
    """Decoder index (0..3 for image scales 2, 4, 8, 16) that 3D scale ``scale`` reads."""
    return min(max(int(math.log2(scale)) - 1, 0), len(IMAGE_SCALES) - 1)


def _check_pixels(pixels: torch.Tensor, height: int, width: int) -> None:
    if pixels.numel() == 0:
        return
    low = pixels.min(dim=0).values
    high = pixels.max(dim=0).values
    if bool((low < 0).any()) or int(high[0]) >= height or int(high[1]) >= width:
        raise ValueError(
            f"pixels outside the {height}×{width} images: rows {int(low[0])}..{int(high[0])}, "
            f"cols {int(low[1])}..{int(high[1])}"
        )


def build_branch_inputs(
    batch: Batch,
    labels: torch.Tensor,
    output: EncoderOutput,
    image_maps: list[CoarseMap],
    config: ModelConfig,
) -> BranchInputs:
    """Assemble `BranchInputs` (see the module docstring for the correspondence).

    Args:
        batch: the step's batch; must have views.
        labels: ``(N,)`` int64 point labels.
        output: ``Encoder3D.forward_features`` of ``batch.inputs``.
        image_maps: ``ImageEncoder.forward_coarse(batch.views.images)``.
        config: the 3D model config.
    """
    views = batch.views
    if views is None:
        raise ValueError("this mode needs camera views in the batch (batch.views is None)")
    _check_pixels(views.pixels, int(views.images.shape[-2]), int(views.images.shape[-1]))
    enc = config.encoder
    inputs = batch.inputs
    rows = views.point_index
    targets: dict[int, torch.Tensor] = {}
    voxel_targets, point_voxel = [], []
    for r_prev in enc.conv_scales:
        voxels = inputs.voxels[r_prev]
        if r_prev not in targets:  # blocks sharing a resolution share its targets
            targets[r_prev] = voxel_majority_labels(
                labels, voxels.inverse, voxels.num_voxels, config.num_classes
            )
        voxel_targets.append(targets[r_prev])
        point_voxel.append(voxels.inverse[rows])
    return BranchInputs(
        voxel_features=list(output.voxel_features),
        voxel_targets=voxel_targets,
        point_voxel=point_voxel,
        image_features=[m.sample(views.point_view, views.pixels) for m in image_maps],
        image_scale=tuple(image_scale_index(s) for s in enc.scale_list),
        point_labels=labels[rows],
        point_box=views.point_box,
        box_class=views.box_class,
    )
