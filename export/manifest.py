"""Builds the manifest that travels with every exported artifact (`seg3d.manifest.ExportManifest`).

A runtime needs nothing else to feed the graph correctly: point columns and intensity scale, crop
range and grid, scales, classes and label map, the ignore index, the out-of-range policy, graph
input names and dims, where the weights came from, and the SHA-256 of every file written.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone

import onnx
from onnx import numpy_helper

from export.onnx_graph import layer_precisions
from seg3d import __version__ as seg3d_version
from seg3d.checkpoint import Mode
from seg3d.classes import NUSCENES_LIDARSEG, NUSCENES_RAW_CLASSES, nuscenes_train_id
from seg3d.config import ModelConfig
from seg3d.graph_inputs import graph_form_of
from seg3d.manifest import (
    ClassesInfo,
    EngineInfo,
    ExportManifest,
    FileFormatInfo,
    FileRecord,
    GraphInfo,
    GraphVariant,
    InputContract,
    LabelMap,
    ModelInfo,
    OutOfRangePolicy,
    ParityReport,
    Precision,
    QuantizationInfo,
    RefusedVariant,
    TensorInfo,
)
from seg3d.model.sparse_conv import WEIGHT_LAYOUT
from seg3d.points import PointFormat

__all__ = ["build_manifest", "graph_info", "graph_parameter_count", "versions"]

_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT8: "int8",
}


def versions() -> dict[str, str]:
    import numpy
    import torch

    found = {
        "seg3d": seg3d_version,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
    }
    for module in ("spconv", "onnxruntime", "tensorrt"):
        try:
            found[module] = str(__import__(module).__version__)
        except (ImportError, AttributeError):
            continue
    return found


def graph_parameter_count(model: onnx.ModelProto) -> int:
    """Learned values in the graph: the weight and bias initializers, not shape or axis constants."""
    return sum(
        int(numpy_helper.to_array(t).size)
        for t in model.graph.initializer
        if ".weight_" in t.name or ".bias_" in t.name
    )


def _label_map(config: ModelConfig) -> LabelMap | None:
    if config.classes == NUSCENES_LIDARSEG:
        return LabelMap(
            source="nuScenes-lidarseg raw index → training id, by category name (docs/architecture.md §1.2)",
            raw_to_train={str(i): nuscenes_train_id(name) for i, name in enumerate(NUSCENES_RAW_CLASSES)},
            raw_names=list(NUSCENES_RAW_CLASSES),
        )
    return None  # SemanticKITTI's learning map is the data set's semantic-kitti.yaml


def _file_formats(config: ModelConfig) -> dict[str, FileFormatInfo]:
    return {
        fmt.value: FileFormatInfo(
            columns=fmt.columns,
            layout=fmt.description,
            intensity_max=(fmt.intensity_max or config.input.intensity_max) if fmt.has_intensity else None,
        )
        for fmt in PointFormat.raw()  # PCD and PLY carry their own layout in a header
    }


def _tensors(values: list[onnx.ValueInfoProto]) -> list[TensorInfo]:
    return [
        TensorInfo(
            name=v.name,
            dtype=_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
            dims=[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
        )
        for v in values
    ]


def graph_info(
    onnx_model: onnx.ModelProto,
    op_types: list[str],
    file: str = "model.onnx",
    quantization: QuantizationInfo | None = None,
) -> GraphInfo:
    """What the manifest records of one graph file: opset, ops, inputs and outputs, form, and the
    precision of every layer."""
    return GraphInfo(
        file=file,
        opset=next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
        ir_version=onnx_model.ir_version,
        op_types=op_types,
        parameters=graph_parameter_count(onnx_model),
        inputs=_tensors(list(onnx_model.graph.input)),
        outputs=_tensors(list(onnx_model.graph.output)),
        form=graph_form_of([i.name for i in onnx_model.graph.input]),
        layers=layer_precisions(onnx_model),
        quantization=quantization,
    )


def build_manifest(
    *,
    config: ModelConfig,
    mode: Mode,
    random_init: bool,
    precision: Precision,
    onnx_model: onnx.ModelProto,
    op_types: list[str],
    files: dict[str, FileRecord],
    parity: ParityReport,
    engine: EngineInfo | None,
    source: str,
    checkpoint_sha256: str | None,
    name: str | None = None,
    quantization: QuantizationInfo | None = None,
    variants: list[GraphVariant] | None = None,
    refused_variants: list[RefusedVariant] | None = None,
) -> ExportManifest:
    """The manifest of one export; ``files`` records every artifact written beside it, ``variants``
    the further graphs (export's ``--also``) and ``refused_variants`` those the gate refused.

    ``name`` is the model's own name (``model.name``, what the service answers to); the config's name
    when not given.
    """
    grid = config.grid
    return ExportManifest(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=ModelInfo(
            name=name or config.name,
            mode=mode,
            random_init=random_init,
            source=source,
            precision=precision,
            parts="3D encoder only (no 2D encoder, no fusion/LOB, no auxiliary heads)",
            checkpoint_sha256=checkpoint_sha256,
        ),
        input=InputContract(
            columns=list(config.input.columns),
            file_formats=_file_formats(config),
            intensity_max=config.input.intensity_max,
            frame="sensor frame, metres, right-handed, z up",
            crop_range=[list(r) for r in grid.point_range],
            crop_rule="strict: min < coordinate < max on every axis",
            spatial_shape=list(grid.spatial_shape),
            voxel_size=list(grid.voxel_size(1)),
            scales=list(config.encoder.all_scales),
            out_of_range_policy=OutOfRangePolicy(
                policy="nearest_in_crop",
                description="points outside the crop are not fed to the encoder; the service labels each "
                "with the class of the nearest in-crop point, so every input point gets one label",
            ),
            preprocessing="seg3d.preprocess.prepare_inputs + seg3d.graph_inputs.graph_inputs",
        ),
        classes=ClassesInfo(
            names=list(config.class_names),
            colours=list(config.classes.colours),
            ignore_index=config.ignore_index,
            labels_output="argmax over every class except the ignore index",
            label_map=_label_map(config),
        ),
        config=config,
        weight_layout=WEIGHT_LAYOUT,
        graph=graph_info(onnx_model, op_types, "model.onnx", quantization),
        engine=engine,
        versions=versions(),
        files=files,
        parity=parity,
        variants=variants or [],
        refused_variants=refused_variants or [],
    )
