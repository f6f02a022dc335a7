"""The manifest that travels with every exported artifact: the model's full input contract.

A runtime needs nothing else to feed the graph correctly: point columns and intensity scale, crop
range and grid, scales, classes and label map, the ignore index, the out-of-range policy, graph
input names and dims, and where the weights came from.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from seg3d import __version__ as seg3d_version
from seg3d.config import ModelConfig
from seg3d.io import POINT_FORMATS, write_atomic
from seg3d.labels import NUSCENES_RAW_CLASSES, nuscenes_train_id
from seg3d.manifest import MANIFEST_FORMAT
from seg3d.model.sparse_conv import WEIGHT_LAYOUT

__all__ = [
    "build_manifest",
    "graph_parameter_count",
    "versions",
    "write_json_atomic",
]

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.FLOAT16: "float16",
}


def versions() -> dict[str, str]:
    import numpy
    import torch

    found = {
        "seg3d": seg3d_version,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
    }
    for module in ("spconv", "onnxruntime", "tensorrt"):
        try:
            found[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            continue
    return found


def graph_parameter_count(model: onnx.ModelProto) -> int:
    """Learned values in the graph: the weight and bias initializers, not shape or axis constants."""
    return sum(
        int(onnx.numpy_helper.to_array(t).size)
        for t in model.graph.initializer
        if ".weight_" in t.name or ".bias_" in t.name
    )


def _label_map(config: ModelConfig) -> dict[str, Any] | None:
    if config.dataset in ("nuscenes", "synthetic") and config.num_classes == 17:
        return {
            "source": "nuScenes-lidarseg raw index → training id, by category name (architecture.md §1.2)",
            "raw_to_train": {str(i): nuscenes_train_id(name) for i, name in enumerate(NUSCENES_RAW_CLASSES)},
            "raw_names": list(NUSCENES_RAW_CLASSES),
        }
    return None  # SemanticKITTI's learning map arrives with the Data issue


def _file_formats(config: ModelConfig) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "columns": spec.columns,
            "layout": spec.description,
            "intensity_max": spec.intensity_max or config.input.intensity_max,
        }
        for name, spec in POINT_FORMATS.items()
    }


def _graph_io(model: onnx.ModelProto) -> dict[str, Any]:
    def describe(values: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "dtype": _DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
                "dims": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def build_manifest(
    *,
    config: ModelConfig,
    mode: str,
    random_init: bool,
    precision: str,
    onnx_model: onnx.ModelProto,
    op_types: list[str],
    hashes: dict[str, str],
    parity: dict[str, Any],
    engine: dict[str, Any] | None,
    source: str,
) -> dict[str, Any]:
    grid = config.grid
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": config.name,
            "mode": mode,
            "random_init": random_init,
            "source": source,
            "precision": precision,
            "parts": "3D encoder only (no 2D encoder, no fusion/LOB, no auxiliary heads)",
        },
        "input": {
            "columns": list(config.input.columns),
            "file_formats": _file_formats(config),
            "intensity_max": config.input.intensity_max,
            "frame": "sensor frame, metres, right-handed, z up",
            "crop_range": [list(r) for r in grid.point_range],
            "crop_rule": "strict: min < coordinate < max on every axis",
            "spatial_shape": list(grid.spatial_shape),
            "voxel_size": list(grid.voxel_size(1)),
            "scales": list(config.encoder.all_scales),
            "out_of_range_policy": {
                "policy": "nearest_in_crop",
                "description": "points outside the crop are not fed to the encoder; the service labels each "
                "with the class of the nearest in-crop point, so every input point gets one label",
            },
            "preprocessing": "seg3d.preprocess.prepare_inputs + seg3d.graph_inputs.graph_inputs",
        },
        "classes": {
            "names": list(config.class_names),
            "ignore_index": config.ignore_index,
            "labels_output": "argmax over every class except the ignore index",
            "label_map": _label_map(config),
        },
        "model_config": config.model_dump(mode="json"),
        "weight_layout": WEIGHT_LAYOUT,
        "graph": {
            "file": "model.onnx",
            "opset": next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
            "ir_version": onnx_model.ir_version,
            "op_types": op_types,
            "parameters": graph_parameter_count(onnx_model),
            **_graph_io(onnx_model),
        },
        "engine": engine,
        "versions": versions(),
        "hashes": hashes,
        "parity": parity,
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")
