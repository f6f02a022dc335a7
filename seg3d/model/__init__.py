"""The 3D encoder, its sparse-conv backends and BatchNorm folding."""

from seg3d.model.encoder import Encoder3D, EncoderOutput, labels_from_logits
from seg3d.model.folding import fold_batchnorm
from seg3d.model.precision import PRECISIONS, TorchPrecision, to_half
from seg3d.model.sparse_conv import WEIGHT_LAYOUT, Backend, spconv_available

__all__ = [
    "PRECISIONS",
    "WEIGHT_LAYOUT",
    "Backend",
    "Encoder3D",
    "EncoderOutput",
    "TorchPrecision",
    "fold_batchnorm",
    "labels_from_logits",
    "spconv_available",
    "to_half",
]
