"""The export manifest: one typed model of the folder export writes and every runtime reads.

An export folder holds ``manifest.json`` beside its artifacts (``model.onnx``, ``encoder3d.pt``,
``model.engine``). The manifest is the model's whole input contract — point columns and intensity
scale, crop and grid, classes and label map, graph inputs — plus where the weights came from, the
parity figures, and the SHA-256 and size of every artifact. `load_manifest` parses and validates it
and, by default, verifies every artifact against it, so a corrupt, truncated or swapped file is
refused with a message naming it instead of being served.

Besides its primary graph (``graph``, ``model.precision``, ``parity``) a folder can hold further
graphs of the same weights, each gated on its own (``variants``: export's ``--also``); the variants
the gate refused are listed, with the reason, in ``refused_variants``. `ExportManifest.graphs`
lists every graph a runtime may serve, by name (``dense-fp32``, ``sparse-int8``, …).

Format ``ddata-export/2``. Folders of format ``ddata-export/1`` (no file sizes, hashes under
``hashes``) are read and converted on load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from seg3d.checkpoint import Mode
from seg3d.classes import class_table
from seg3d.config import ModelConfig
from seg3d.io import file_sha256, write_atomic

__all__ = [
    "GRAPH_FORMS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "ArtifactError",
    "ClassesInfo",
    "EngineInfo",
    "ExportManifest",
    "FileRecord",
    "GraphForm",
    "GraphInfo",
    "GraphVariant",
    "InputContract",
    "LayerPrecision",
    "ManifestError",
    "ModelInfo",
    "ParityReport",
    "ParityScan",
    "Precision",
    "QuantizationInfo",
    "RefusedVariant",
    "ServableGraph",
    "check_model_name",
    "file_record",
    "graph_name",
    "load_manifest",
    "write_manifest",
]

MANIFEST_FORMAT: Final = "ddata-export/2"
MANIFEST_NAME = "manifest.json"
_LEGACY_FORMAT = "ddata-export/1"

#: Weight and arithmetic precision of an exported graph: ``int8`` is explicit quantization (int8
#: weights and layer inputs, float32 sums), with some layers kept in float32 (`GraphInfo.layers`).
Precision = Literal["fp32", "fp16", "int8"]
#: What one conv or linear layer of a graph runs in.
LayerPrecision = Literal["fp32", "fp16", "int8"]

#: How an exported graph computes its 3×3×3 submanifold convolutions: ``dense`` gathers all 27 taps
#: of every voxel (im2col ``[V, 27·C]`` → one MatMul); ``sparse`` multiplies only the present taps
#: and sums them per voxel through fixed-width tables (`seg3d.graph_inputs`). The two take different
#: graph inputs; manifests written before the field existed hold ``dense`` graphs.
GraphForm = Literal["dense", "sparse"]
GRAPH_FORMS: tuple[GraphForm, ...] = ("dense", "sparse")


def graph_name(form: GraphForm, precision: Precision) -> str:
    """The name of a graph in an export folder: ``<form>-<precision>`` (``sparse-int8``)."""
    return f"{form}-{precision}"


#: What makes a model name one URL path segment (``/v2/models/{name}``), besides not being . or ..
MODEL_NAME_RULE = (
    "one URL path segment (/v2/models/NAME) of 1 to 64 letters, digits, '-', '_' or '.' (not '.' or '..')"
)


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (export's ``--name``, the service's ``--name``), else
    ValueError saying the rule."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) or name in (".", ".."):
        raise ValueError(f"{name!r} is not a valid model name: {MODEL_NAME_RULE}")
    return name


class ManifestError(ValueError):
    """A ``manifest.json`` that cannot be used: unreadable, of another format, or invalid."""


class ArtifactError(ValueError):
    """An artifact that does not match its manifest: missing, of another size, or another hash."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ModelInfo(_Strict):
    name: Annotated[str, AfterValidator(check_model_name)]
    mode: Mode
    random_init: bool
    source: str
    precision: Precision
    parts: str
    checkpoint_sha256: str | None = None  # the training checkpoint exported, when there was one


class FileFormatInfo(_Strict):
    columns: int
    layout: str
    intensity_max: float | None  # the file's intensity scale; None: the format has no intensity


class OutOfRangePolicy(_Strict):
    policy: Literal["nearest_in_crop"]
    description: str


class InputContract(_Strict):
    columns: list[str]
    file_formats: dict[str, FileFormatInfo]
    intensity_max: float
    frame: str
    crop_range: list[list[float]]
    crop_rule: str
    spatial_shape: list[int]
    voxel_size: list[float]
    scales: list[int]
    out_of_range_policy: OutOfRangePolicy
    preprocessing: str


class LabelMap(_Strict):
    source: str
    raw_to_train: dict[str, int]
    raw_names: list[str]


class ClassesInfo(_Strict):
    names: list[str]
    colours: list[tuple[int, int, int]]
    ignore_index: int
    labels_output: str
    label_map: LabelMap | None


class TensorInfo(_Strict):
    name: str
    dtype: str
    dims: list[str | int]


class QuantizationInfo(_Strict):
    """How an int8 graph was quantized (`export.calibrate`)."""

    scheme: str  # in words: int8, symmetric, per output channel for weights, per tensor for inputs
    method: str  # minmax, percentile or entropy
    percentile: float | None = None
    calibration: str  # the clouds, in words
    clouds: int
    #: agreement with the float32 graph's labels on the calibration clouds that the choice of int8
    #: layers had to reach, and what the chosen mix reached
    target_agreement: float
    calibration_agreement: float
    #: the layers returned to float32 because int8 there changed too many labels, most sensitive
    #: first (`GraphInfo.layers` has every layer's precision)
    float_layers: list[str]
    #: the input range of every int8 layer (scale = range / 127)
    activation_ranges: dict[str, float]


class GraphInfo(_Strict):
    file: str
    form: GraphForm = "dense"  # absent in manifests written before the sparse form: dense
    opset: int
    ir_version: int
    op_types: list[str]
    parameters: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    #: the precision of every conv and linear layer (absent before it was recorded)
    layers: dict[str, LayerPrecision] = Field(default_factory=dict)
    quantization: QuantizationInfo | None = None  # int8 graphs only


class GraphVariant(_Strict):
    """A further graph of the same weights in the folder (export's ``--also``), gated on its own."""

    name: str  # graph_name(graph.form, precision)
    precision: Precision
    graph: GraphInfo
    parity: ParityReport


class RefusedVariant(_Strict):
    """A graph export was asked for (``--also``) and did not write: its parity gate refused it."""

    name: str
    reason: str


class ServableGraph(GraphVariant):
    """One graph of the folder as a runtime sees it: the primary or a variant."""

    primary: bool


class EngineInfo(_Strict):
    file: str
    tensorrt: str
    gpu: str
    strongly_typed: bool
    layers: int
    layer_types: list[str]
    profile: dict[str, list[list[int]]]
    profile_points: dict[str, int]
    timing_cache_sha256: str | None = None  # the builder's cache beside the engine; not a model file
    # the parity gate run on the built engine itself (TensorRT may pick other kernels than ONNX
    # Runtime on CPU); absent in manifests written before it ran
    parity: ParityReport | None = None


class ParityScan(_Strict):
    scan: str
    points: int
    argmax_agreement: float
    label_agreement: float
    max_abs_diff: float
    max_abs_logit: float


class ParityReport(_Strict):
    status: Literal["passed", "failed", "skipped"]
    reason: str | None = None  # why it was skipped
    source: str | None = None  # the clouds checked: "user" (--parity-scans), "real" or "synthetic"
    reference: str | None = None
    runtime: str | None = None
    precision: Precision | None = None
    threshold_argmax_agreement: float | None = None
    min_argmax_agreement: float | None = None
    max_abs_diff: float | None = None
    scans: list[ParityScan] = Field(default_factory=list)


class FileRecord(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int | None = Field(None, ge=0)  # None only in manifests converted from ddata-export/1


def file_record(path: str | Path) -> FileRecord:
    """The record of a file as it is now."""
    path = Path(path)
    return FileRecord(sha256=file_sha256(path), bytes=path.stat().st_size)


class ExportManifest(_Strict):
    """``manifest.json`` of an export folder (see the module docstring)."""

    format: Literal["ddata-export/2"] = MANIFEST_FORMAT
    created: str
    model: ModelInfo
    input: InputContract
    classes: ClassesInfo
    config: ModelConfig = Field(alias="model_config")
    weight_layout: str
    graph: GraphInfo
    engine: EngineInfo | None
    versions: dict[str, str]
    files: dict[str, FileRecord]  # every model artifact of the folder, by file name
    parity: ParityReport
    variants: list[GraphVariant] = Field(default_factory=list)  # absent before --also: none
    refused_variants: list[RefusedVariant] = Field(default_factory=list)

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=(), populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        """Convert a ``ddata-export/1`` manifest: hashes → file records, class colours added."""
        if not isinstance(data, dict) or data.get("format") != _LEGACY_FORMAT:
            return data
        data = dict(data)
        hashes = data.pop("hashes", None) or {}
        files = {}
        if "onnx_sha256" in hashes:
            files["model.onnx"] = {"sha256": hashes["onnx_sha256"]}
        if "encoder3d_sha256" in hashes:
            files["encoder3d.pt"] = {"sha256": hashes["encoder3d_sha256"]}
        engine = data.get("engine")
        if isinstance(engine, dict):
            engine = dict(engine)
            if "sha256" in engine:
                files[str(engine.get("file", "model.engine"))] = {"sha256": engine.pop("sha256")}
            data["engine"] = engine
        data["files"] = files
        model = data.get("model")
        if isinstance(model, dict) and "checkpoint_sha256" in hashes:
            data["model"] = {**model, "checkpoint_sha256": hashes["checkpoint_sha256"]}
        classes = data.get("classes")
        config = data.get("model_config")
        if isinstance(classes, dict) and isinstance(config, dict) and "colours" not in classes:
            data["classes"] = {**classes, "colours": class_table(str(config.get("dataset"))).colours}
        data["format"] = MANIFEST_FORMAT
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExportManifest:
        for name in self.files:
            if Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"file {name!r}: artifacts are plain names inside the export folder")
        if self.graph.file not in self.files:
            raise ValueError(f"the graph {self.graph.file!r} has no file record")
        if self.engine is not None and self.engine.file not in self.files:
            raise ValueError(f"the engine {self.engine.file!r} has no file record")
        names = [g.name for g in self.graphs()]
        if len(set(names)) != len(names):
            raise ValueError(f"graph names repeat: {names}")
        for variant in self.variants:
            if variant.graph.file not in self.files:
                raise ValueError(f"the variant graph {variant.graph.file!r} has no file record")
            if variant.name != graph_name(variant.graph.form, variant.precision):
                raise ValueError(
                    f"variant {variant.name!r} is a {variant.graph.form} {variant.precision} graph"
                )
        if tuple(self.classes.names) != self.config.class_names:
            raise ValueError("classes.names differ from the model config's class table")
        return self

    def graphs(self) -> list[ServableGraph]:
        """Every graph of the folder, the primary first."""
        primary = ServableGraph(
            name=graph_name(self.graph.form, self.model.precision),
            precision=self.model.precision,
            graph=self.graph,
            parity=self.parity,
            primary=True,
        )
        return [primary] + [ServableGraph(**dict(v), primary=False) for v in self.variants]

    def servable_graph(self, name: str | None) -> ServableGraph:
        """The graph called ``name`` (None: the primary).

        Raises:
            ManifestError: no graph of that name, naming those the folder has and those refused.
        """
        graphs = self.graphs()
        if name is None:
            return graphs[0]
        for graph in graphs:
            if graph.name == name:
                return graph
        refused = {r.name: r.reason for r in self.refused_variants}
        why = f" (export refused it: {refused[name]})" if name in refused else ""
        raise ManifestError(
            f"no graph {name!r} in this export{why}; it has {', '.join(g.name for g in graphs)}"
        )

    def verify_files(self, folder: str | Path) -> None:
        """Check every artifact of the folder against its record.

        Raises:
            ArtifactError: naming the first file that is missing, of another size or another hash.
        """
        for name, record in self.files.items():
            path = Path(folder) / name
            if not path.is_file():
                raise ArtifactError(f"{path}: listed in {MANIFEST_NAME} but missing")
            size = path.stat().st_size
            if record.bytes is not None and size != record.bytes:
                raise ArtifactError(
                    f"{path}: {size} bytes, the manifest says {record.bytes} (truncated or replaced; "
                    "re-export the model)"
                )
            digest = file_sha256(path)
            if digest != record.sha256:
                raise ArtifactError(
                    f"{path}: SHA-256 {digest[:16]}… differs from the manifest's {record.sha256[:16]}… "
                    "(corrupt or replaced; re-export the model)"
                )

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def load_manifest(folder: str | Path, verify: bool = True) -> ExportManifest:
    """The manifest of an export folder, with every artifact verified unless ``verify`` is False.

    Raises:
        FileNotFoundError: the folder has no ``manifest.json``.
        ManifestError: not JSON, another format, or an invalid manifest (naming the fields).
        ArtifactError: an artifact does not match its record (`ExportManifest.verify_files`).
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: point --model at a folder written by export/to_trt.py")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a JSON manifest ({exc})") from exc
    found = data.get("format") if isinstance(data, dict) else None
    if found not in (MANIFEST_FORMAT, _LEGACY_FORMAT):
        raise ManifestError(
            f"{path}: format {found!r} is not an export manifest this version reads "
            f"({MANIFEST_FORMAT!r} or {_LEGACY_FORMAT!r}); re-export the model with export/to_trt.py"
        )
    try:
        manifest = ExportManifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest: {_first_errors(exc)}") from exc
    if verify:
        manifest.verify_files(folder)
    return manifest


def write_manifest(folder: str | Path, manifest: ExportManifest) -> Path:
    """Write ``manifest.json`` into ``folder`` atomically; returns its path."""
    path = Path(folder) / MANIFEST_NAME
    write_atomic(path, manifest.to_json())
    return path
