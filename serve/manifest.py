"""Read an export folder's manifest and the model config it carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seg3d.config import ModelConfig

__all__ = ["EXPECTED_FORMAT", "load_manifest"]

EXPECTED_FORMAT = "ddata-export/1"


def load_manifest(model_dir: Path) -> tuple[dict[str, Any], ModelConfig]:
    """The manifest and its `ModelConfig`; `FileNotFoundError` or `ValueError` with the reason."""
    path = Path(model_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: point --model at a folder written by export/to_trt.py")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != EXPECTED_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {EXPECTED_FORMAT!r}")
    return manifest, ModelConfig.model_validate(manifest["model_config"])
