"""The export manifest's format and how to read it (export writes it, serving and export read it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seg3d.config import ModelConfig

__all__ = ["MANIFEST_FORMAT", "load_manifest"]

MANIFEST_FORMAT = "ddata-export/1"


def load_manifest(model_dir: Path) -> tuple[dict[str, Any], ModelConfig]:
    """The manifest of an export folder and its `ModelConfig`.

    Raises:
        FileNotFoundError: the folder has no ``manifest.json``.
        ValueError: another format.
    """
    path = Path(model_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: point --model at a folder written by export/to_trt.py")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return manifest, ModelConfig.model_validate(manifest["model_config"])
