"""The training-time model: 2D image encoder, 2DPASS MSFSKD, the 2DDATA Local Object Branch, losses.

- `image_encoder`: ResNet-34 with the 2DPASS stem and decoders, ImageNet loading;
- `losses`: cross-entropy + Lovász-softmax, distillation KL;
- `heads`: classifier heads, voxel majority labels;
- `branch_inputs`: the 3D/2D features of the projected points that the branches read;
- `msfskd`: mode ``2dpass``; `lob`: mode ``2ddata``;
- `config`: the ``branch`` section of a training config; `training_model`: the assembled model.
"""

from training.model.config import BranchConfig
from training.model.training_model import LossOutput, TrainingModel, build_training_model, parameter_counts

__all__ = ["BranchConfig", "LossOutput", "TrainingModel", "build_training_model", "parameter_counts"]
