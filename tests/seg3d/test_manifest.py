"""The typed export manifest: what it accepts, what it refuses, and how it checks the artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg3d.io import file_sha256
from seg3d.manifest import ArtifactError, ExportManifest, ManifestError, load_manifest, write_manifest

LEGACY = Path(__file__).parent / "data" / "manifest-ddata-export-1.json"
ARTIFACTS = b"graph bytes", b"weights bytes"


@pytest.fixture
def legacy_folder(tmp_path: Path) -> Path:
    """A ddata-export/1 folder whose hashes match two small stand-in artifacts."""
    data = json.loads(LEGACY.read_text())
    (tmp_path / "model.onnx").write_bytes(ARTIFACTS[0])
    (tmp_path / "encoder3d.pt").write_bytes(ARTIFACTS[1])
    data["hashes"]["onnx_sha256"] = file_sha256(tmp_path / "model.onnx")
    data["hashes"]["encoder3d_sha256"] = file_sha256(tmp_path / "encoder3d.pt")
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def test_a_version_1_folder_is_read_and_converted(legacy_folder: Path) -> None:
    manifest = load_manifest(legacy_folder)
    assert manifest.format == "ddata-export/2"
    assert set(manifest.files) == {"model.onnx", "encoder3d.pt"}
    assert manifest.files["model.onnx"].bytes is None  # /1 recorded no sizes
    assert manifest.model.checkpoint_sha256 == json.loads(LEGACY.read_text())["hashes"]["checkpoint_sha256"]
    assert manifest.config.class_names == tuple(manifest.classes.names)
    assert manifest.classes.colours[4] == (255, 158, 0)  # car, from the class table


def test_written_manifest_reads_back_equal(legacy_folder: Path, tmp_path_factory) -> None:
    manifest = load_manifest(legacy_folder)
    out = tmp_path_factory.mktemp("out")
    write_manifest(out, manifest)
    data = json.loads((out / "manifest.json").read_text())
    assert data["format"] == "ddata-export/2" and "model_config" in data and "hashes" not in data
    assert ExportManifest.model_validate(data) == manifest


def test_a_changed_artifact_is_refused_with_its_name(legacy_folder: Path) -> None:
    (legacy_folder / "model.onnx").write_bytes(b"graph bytez")  # same size, other content
    with pytest.raises(ArtifactError, match=r"model\.onnx: SHA-256 .* differs from the manifest"):
        load_manifest(legacy_folder)
    assert load_manifest(legacy_folder, verify=False).graph.file == "model.onnx"


def test_a_truncated_or_missing_artifact_is_refused(legacy_folder: Path, tmp_path_factory) -> None:
    manifest = load_manifest(legacy_folder)
    folder = tmp_path_factory.mktemp("v2")
    for name, data in zip(("model.onnx", "encoder3d.pt"), ARTIFACTS, strict=True):
        (folder / name).write_bytes(data)
    sized = {name: record.model_copy(update={"bytes": 11 if name == "model.onnx" else 13})
             for name, record in manifest.files.items()}  # fmt: skip
    write_manifest(folder, manifest.model_copy(update={"files": sized}))
    assert load_manifest(folder).files["model.onnx"].bytes == 11
    (folder / "model.onnx").write_bytes(ARTIFACTS[0][:5])
    with pytest.raises(ArtifactError, match=r"model\.onnx: 5 bytes, the manifest says 11"):
        load_manifest(folder)
    (folder / "encoder3d.pt").unlink()
    (folder / "model.onnx").write_bytes(ARTIFACTS[0])
    with pytest.raises(ArtifactError, match=r"encoder3d\.pt: listed in manifest\.json but missing"):
        load_manifest(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("model_config"), r"invalid manifest: .*model_config: Field required"),
        (
            lambda d: d.update(format="something-else/3"),
            r"format 'something-else/3' is not an export manifest",
        ),
        (lambda d: d["model"].update(mode="4d"), r"model\.mode"),
        (lambda d: d["classes"]["names"].reverse(), r"classes\.names differ"),
        (lambda d: d.update(surprise=1), r"surprise: Extra inputs"),
    ],
)
def test_malformed_manifests_name_the_problem(legacy_folder: Path, edit, message: str) -> None:
    path = legacy_folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(legacy_folder)


def test_artifact_names_stay_inside_the_folder(legacy_folder: Path) -> None:
    manifest = load_manifest(legacy_folder).model_dump(by_alias=True)
    manifest["files"]["../escape.bin"] = manifest["files"]["model.onnx"]
    with pytest.raises(ValueError, match="plain names inside the export folder"):
        ExportManifest.model_validate(manifest)


def test_not_json_and_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b"\x00\xff not json")
    with pytest.raises(ManifestError, match="not a JSON manifest"):
        load_manifest(tmp_path)


def test_the_bundled_model_verifies() -> None:
    folder = Path(__file__).resolve().parents[2] / "models" / "demo"
    manifest = load_manifest(folder)
    assert manifest.files["model.onnx"].bytes == (folder / "model.onnx").stat().st_size


def _with_variant(manifest: ExportManifest, **changes: object) -> dict[str, object]:
    """The manifest as data with one ``--also`` variant (a sparse fp32 graph in ``model.v.onnx``)."""
    data = manifest.model_dump(mode="json", by_alias=True)
    graph = {**data["graph"], "file": "model.v.onnx", "form": "sparse"}
    variant = {"name": "sparse-fp32", "precision": "fp32", "graph": graph, "parity": data["parity"]}
    data["variants"] = [{**variant, **changes}]
    data["files"]["model.v.onnx"] = data["files"]["model.onnx"]
    return data


def test_variants_are_named_for_their_graph_and_need_a_file_record(legacy_folder: Path) -> None:
    manifest = load_manifest(legacy_folder)
    assert manifest.variants == [] and [g.name for g in manifest.graphs()] == ["dense-fp32"]
    ok = ExportManifest.model_validate(_with_variant(manifest))
    assert [(g.name, g.primary) for g in ok.graphs()] == [("dense-fp32", True), ("sparse-fp32", False)]
    assert ok.servable_graph(None).name == "dense-fp32"
    assert ok.servable_graph("sparse-fp32").graph.file == "model.v.onnx"
    with pytest.raises(ManifestError, match="'sparse-int8' in this export; it has dense-fp32, sparse-fp32"):
        ok.servable_graph("sparse-int8")
    with pytest.raises(ValueError, match="is a sparse fp32 graph"):
        ExportManifest.model_validate(_with_variant(manifest, name="sparse-int8"))
    with pytest.raises(ValueError, match="graph names repeat"):
        ExportManifest.model_validate(
            _with_variant(
                manifest, name="dense-fp32", graph={**manifest.model_dump()["graph"], "file": "model.v.onnx"}
            )
        )
    unrecorded = _with_variant(manifest)
    del unrecorded["files"]["model.v.onnx"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"variant graph 'model\.v\.onnx' has no file record"):
        ExportManifest.model_validate(unrecorded)
