from __future__ import annotations

import zipfile
from pathlib import Path

from export.check_trt_api import missing_names
from export.tensorrt_build import TRT_API_NAMES


def _wheel(path: Path, names: list[str]) -> Path:
    blob = b"\x00".join(n.encode() for n in names) + b"\x00"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tensorrt_bindings/tensorrt.so", b"\x7fELF" + b"\x00" * 16 + blob)
    return path


def test_complete_bindings_pass_and_tail_merged_names_count(tmp_path: Path) -> None:
    names = [n for n in TRT_API_NAMES if n != "num_errors"] + ["get_num_errors"]  # linker tail-merge
    assert missing_names(_wheel(tmp_path / "ok.whl", names)) == []


def test_a_removed_api_is_reported(tmp_path: Path) -> None:
    names = [n for n in TRT_API_NAMES if n not in ("build_serialized_network", "STRONGLY_TYPED")]
    assert missing_names(_wheel(tmp_path / "old.whl", names)) == [
        "STRONGLY_TYPED",
        "build_serialized_network",
    ]
