"""One definition of preprocessing, shared by training, export and serving."""

from seg3d.preprocess.pipeline import (
    POINT_FEATURE_DIM,
    ConvLevel,
    EncoderInputs,
    point_features,
    prepare_inputs,
)
from seg3d.preprocess.tables import (
    SegmentPool,
    TapPairs,
    build_segment_pool,
    kernel_offsets,
    neighbour_table,
    tap_pairs,
)
from seg3d.preprocess.voxelize import ScaleVoxels, crop_mask, quantize, voxelize

__all__ = [
    "POINT_FEATURE_DIM",
    "ConvLevel",
    "EncoderInputs",
    "ScaleVoxels",
    "SegmentPool",
    "TapPairs",
    "build_segment_pool",
    "crop_mask",
    "kernel_offsets",
    "neighbour_table",
    "point_features",
    "prepare_inputs",
    "quantize",
    "tap_pairs",
    "voxelize",
]
