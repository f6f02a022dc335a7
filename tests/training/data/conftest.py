"""The real nuScenes tables of ../shared/data/real, completed so nuscenes-devkit loads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seg3d.scans import real_data_dir

#: The extract's tables come from v1.0-trainval (scenes 0523 and 0916, both in the val split), so
#: the fixture names its table folder after that version: the devkit's splits then apply.
REAL_VERSION = "v1.0-trainval"


@pytest.fixture(scope="session")
def devkit_root(tmp_path_factory) -> Path:
    """The real tables plus the four the extract lacks (attribute, visibility, log, map), and the real
    LIDAR_TOP / CAM_FRONT files where the tables say they are."""
    real = real_data_dir()
    if real is None:
        pytest.skip("real scans not found")
    root = tmp_path_factory.mktemp("nuscenes")
    source = real / "nuscenes"
    tables = root / REAL_VERSION
    shutil.copytree(source / "v1.0-mini-extract", tables)
    annotations = json.loads((tables / "sample_annotation.json").read_text())
    attributes = sorted({t for a in annotations for t in a["attribute_tokens"]})
    (tables / "attribute.json").write_text(
        json.dumps(
            [{"token": t, "name": f"attribute-{i}", "description": ""} for i, t in enumerate(attributes)]
        )
    )
    levels = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}
    (tables / "visibility.json").write_text(
        json.dumps([{"token": t, "level": level, "description": ""} for t, level in levels.items()])
    )
    logs = sorted({s["log_token"] for s in json.loads((tables / "scene.json").read_text())})
    (tables / "log.json").write_text(
        json.dumps(
            [{"token": t, "logfile": t, "vehicle": "", "date_captured": "", "location": ""} for t in logs]
        )
    )
    (tables / "map.json").write_text(
        json.dumps([{"token": "map", "log_tokens": logs, "category": "semantic_prior", "filename": ""}])
    )
    for folder in ("LIDAR_TOP", "CAM_FRONT"):
        (root / "samples" / folder).mkdir(parents=True)
        for file in (source / "samples" / folder).iterdir():
            (root / "samples" / folder / file.name).symlink_to(file)
    return root


@pytest.fixture(scope="session")
def nusc(devkit_root: Path):
    nuscenes = pytest.importorskip("nuscenes.nuscenes", reason="nuscenes-devkit is not installed")
    return nuscenes.NuScenes(version=REAL_VERSION, dataroot=str(devkit_root), verbose=False)
