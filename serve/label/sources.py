"""The inputs of a labelling job: a nuScenes root, SemanticKITTI sequences or a set of point files.

Each source checks that its root is the layout it claims (`LayoutError` otherwise, naming what is
missing), lists the job's `Task`s in a fixed order, says how labels are encoded (`LabelEncoding`),
and, once the files are written, adds what makes the output folder a data set its tools read
(`finalize`): nuScenes' tables and ``lidarseg.json``, the submission's ``submission.json``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from seg3d.classes import NUSCENES_RAW_CLASSES, ClassTable
from seg3d.io import write_atomic
from seg3d.labelfiles import label_file_name
from seg3d.overlay import OverlayError, find_version, load_nuscenes
from seg3d.points import PointFormat
from serve.label.outputs import Encoding, LabelEncoding
from serve.label.tasks import Task
from serve.segment import ScanJob, plan_outputs

__all__ = [
    "FileSource",
    "LayoutError",
    "NuScenesLayout",
    "NuScenesSource",
    "SemanticKittiSource",
    "Source",
]

NuScenesLayout = Literal["lidarseg", "submission"]

#: Tables of a nuScenes root that a predictions root does not take over: it writes its own
#: ``lidarseg.json`` and ``category.json``, and has no panoptic labels.
_OWN_TABLES = ("lidarseg.json", "panoptic.json", "category.json")

#: Folders of a nuScenes root linked into a predictions root, so that the devkit's renderers find
#: the point clouds, images and maps the predictions are drawn on.
_LINKED_FOLDERS = ("samples", "sweeps", "maps")

_SUBMISSION_META = {
    "use_camera": False,
    "use_lidar": True,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}


class LayoutError(ValueError):
    """A root is not the layout it was given as (the message says what is missing)."""


class Source(Protocol):
    @property
    def kind(self) -> str:
        """``nuscenes``, ``semantickitti`` or ``files``."""
        ...

    def tasks(self, model_classes: ClassTable) -> list[Task]:
        """The job's tasks, in a fixed order (the files' names may depend on the model's classes)."""
        ...

    def encoding(self, model_classes: ClassTable) -> LabelEncoding: ...

    def finalize(self, out: Path) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What the job reads, as the job record keeps it: a resumed job must describe the same."""
        ...


@dataclass
class NuScenesSource:
    """The LIDAR_TOP key frames of a nuScenes root (every scene of ``version``, a devkit ``split``,
    or named ``scenes``), written in the lidarseg layout (``lidarseg/<version>/<token>_lidarseg.bin``
    beside linked tables, ``lidarseg.json`` and ``category.json``: a root ``NuScenes`` loads with
    the predictions as its labels) or the challenge's submission layout
    (``lidarseg/<split>/<token>_lidarseg.bin`` and ``<split>/submission.json``).

    Raises `LayoutError` (root, version, split or scenes) or `seg3d.overlay.DevkitMissingError` on
    construction.
    """

    root: Path
    version: str | None = None
    split: str | None = None
    scenes: Sequence[str] = ()
    layout: NuScenesLayout = "lidarseg"
    kind: ClassVar[str] = "nuscenes"
    _nusc: Any = field(init=False, repr=False)
    _scene_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise LayoutError(f"not a nuScenes root: {self.root} is not a folder")
        try:
            self.version = self.version or find_version(self.root)
        except OverlayError as exc:
            raise LayoutError(f"not a nuScenes root: {exc}") from exc
        if not (self.root / self.version / "sample.json").is_file():
            found = sorted(p.name for p in self.root.iterdir() if (p / "sample.json").is_file())
            raise LayoutError(
                f"not a nuScenes root: {self.root / self.version / 'sample.json'} is missing "
                f"(table folders here: {', '.join(found) or 'none'})"
            )
        if self.split and self.scenes:
            raise LayoutError("give --split or --scenes, not both")
        if self.layout == "submission" and not self.split:
            raise LayoutError("the submission layout is per split: give --split")
        try:
            self._nusc = load_nuscenes(self.root, self.version)
        except OverlayError as exc:
            raise LayoutError(str(exc)) from exc
        self._scene_names = self._chosen_scenes()

    def _chosen_scenes(self) -> list[str]:
        present = sorted(s["name"] for s in self._nusc.scene)
        if self.split:
            # load_nuscenes has imported the devkit already
            table = importlib.import_module("nuscenes.utils.splits").create_splits_scenes()
            if self.split not in table:
                raise LayoutError(f"unknown split {self.split!r}; the devkit's splits are {sorted(table)}")
            wanted = set(table[self.split])
            chosen = [n for n in present if n in wanted]
            if not chosen:
                raise LayoutError(
                    f"split {self.split!r} has no scene in the {self.version} tables of {self.root} "
                    f"(they hold {len(present)} scenes, e.g. {present[:3]})"
                )
            return chosen
        if self.scenes:
            unknown = sorted(set(self.scenes) - set(present))
            if unknown:
                raise LayoutError(f"scenes {unknown[:5]} are not in the {self.version} tables of {self.root}")
            return [n for n in present if n in set(self.scenes)]
        return present

    @property
    def _folder(self) -> str:
        return f"lidarseg/{self.split if self.layout == 'submission' else self.version}"

    def tasks(self, model_classes: ClassTable) -> list[Task]:
        nusc = self._nusc
        by_name = {s["name"]: s for s in nusc.scene}
        found: list[Task] = []
        for name in self._scene_names:
            token = by_name[name]["first_sample_token"]
            while token:
                sample = nusc.get("sample", token)
                sd_token = sample["data"]["LIDAR_TOP"]
                record = nusc.get("sample_data", sd_token)
                found.append(
                    Task(
                        key=sd_token,
                        source=str(self.root / record["filename"]),
                        fmt=PointFormat.NUSCENES.value,
                        output=f"{self._folder}/{sd_token}_lidarseg.bin",
                    )
                )
                token = sample["next"]
        return found

    def raw_index(self) -> dict[str, int]:
        """The data set's raw category numbering (its ``category.json`` ``index`` fields), or the
        official one when its category table has none (a root without lidarseg)."""
        records = self._nusc.category
        if records and all("index" in r for r in records):
            return {str(r["name"]): int(r["index"]) for r in records}
        return {name: i for i, name in enumerate(NUSCENES_RAW_CLASSES)}

    def encoding(self, model_classes: ClassTable) -> LabelEncoding:
        if self.layout == "submission":
            return LabelEncoding(Encoding.NUSCENES_CHALLENGE, model_classes)
        return LabelEncoding(Encoding.NUSCENES_RAW, model_classes, self.raw_index())

    def finalize(self, out: Path) -> None:
        if self.layout == "submission":
            assert self.split is not None
            (out / self.split).mkdir(parents=True, exist_ok=True)
            write_atomic(
                out / self.split / "submission.json", json.dumps({"meta": _SUBMISSION_META}, indent=2)
            )
            return
        assert self.version is not None
        tables = out / self.version
        tables.mkdir(parents=True, exist_ok=True)
        source = (self.root / self.version).resolve()
        for table in sorted(source.glob("*.json")):
            if table.name not in _OWN_TABLES:
                _link(tables / table.name, table)
        for name in _LINKED_FOLDERS:
            if (self.root / name).is_dir():
                _link(out / name, (self.root / name).resolve())
        index = self.raw_index()
        categories = {str(r["name"]): r for r in self._nusc.category}
        category = [
            {
                "token": categories.get(name, {}).get("token") or _token("category", name),
                "name": name,
                "description": categories.get(name, {}).get("description", ""),
                "index": i,
            }
            for name, i in sorted(index.items(), key=lambda item: item[1])
        ]
        write_atomic(tables / "category.json", json.dumps(category, indent=1))
        # lidarseg.json lists exactly the label files present: the devkit refuses a root whose
        # records and files differ in number, and a failed scan has no file.
        written = sorted(p.name for p in (out / self._folder).glob("*_lidarseg.bin"))
        # As in nuScenes-lidarseg, a record's token is its sample_data token (the devkit looks
        # records up by it).
        tokens = [name.removesuffix("_lidarseg.bin") for name in written]
        records = [
            {"token": t, "sample_data_token": t, "filename": f"{self._folder}/{t}_lidarseg.bin"}
            for t in tokens
        ]
        write_atomic(tables / "lidarseg.json", json.dumps(records, indent=1))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "root": str(self.root),
            "version": self.version,
            "split": self.split,
            "scenes": sorted(self.scenes),
            "layout": self.layout,
        }


def _token(kind: str, name: str) -> str:
    """A stable 32-hex token for a record the job writes (the same on every run)."""
    return hashlib.sha256(f"serve.label:{kind}:{name}".encode()).hexdigest()[:32]


def _link(link: Path, target: Path) -> None:
    """``link`` → ``target`` as a symbolic link, replacing an earlier link (a resumed run)."""
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise LayoutError(f"{link} exists and is not a link: the output folder is not this job's")
    link.symlink_to(target)


@dataclass
class SemanticKittiSource:
    """SemanticKITTI scans ``ROOT/sequences/NN/velodyne/*.bin`` (every sequence, or ``sequences``),
    labelled into ``OUT/sequences/NN/predictions/*.label``: raw SemanticKITTI ids, the layout the
    semantic-kitti-api's evaluation reads. Raises `LayoutError` on construction."""

    root: Path
    sequences: Sequence[int] = ()
    kind: ClassVar[str] = "semantickitti"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        folder = self.root / "sequences"
        if not folder.is_dir():
            hint = (
                " (did you mean its dataset/ folder?)"
                if (self.root / "dataset" / "sequences").is_dir()
                else ""
            )
            raise LayoutError(f"not a SemanticKITTI root: {folder} is missing{hint}")
        present = sorted(p.name for p in folder.iterdir() if (p / "velodyne").is_dir())
        if self.sequences:
            wanted = [f"{n:02d}" for n in self.sequences]
            missing = [s for s in wanted if s not in present]
            if missing:
                raise LayoutError(
                    f"sequences {missing} have no velodyne/ folder in {folder} (found: {present or 'none'})"
                )
            self._names = wanted
        else:
            if not present:
                raise LayoutError(
                    f"not a SemanticKITTI root: no sequences/NN/velodyne/ folder in {self.root}"
                )
            self._names = present

    def tasks(self, model_classes: ClassTable) -> list[Task]:
        found: list[Task] = []
        for sequence in self._names:
            for path in sorted((self.root / "sequences" / sequence / "velodyne").glob("*.bin")):
                found.append(
                    Task(
                        key=f"{sequence}/{path.stem}",
                        source=str(path),
                        fmt=PointFormat.KITTI.value,
                        output=f"sequences/{sequence}/predictions/{path.stem}.label",
                    )
                )
        return found

    def encoding(self, model_classes: ClassTable) -> LabelEncoding:
        return LabelEncoding(Encoding.SEMANTICKITTI, model_classes)

    def finalize(self, out: Path) -> None:
        """Nothing to add: the semantic-kitti-api reads the predictions folders alone."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "sequences": list(self._names)}


#: Names a folder's point files end with (`seg3d.points.PointFormat.for_path`).
_POINT_SUFFIXES = (".bin", ".pcd", ".ply")


@dataclass
class FileSource:
    """Point files: a folder (its point files, in sub-folders too) or a glob (``**`` for any depth),
    one label file per input (`seg3d.labelfiles.label_file_name`) in the folder layout below the
    files' common parent. ``fmt``: every file's format, else each file's name tells it (a file whose
    name does not is recorded as failed). Raises `LayoutError` when nothing matches."""

    pattern: str
    fmt: PointFormat | None = None
    kind: ClassVar[str] = "files"

    def __post_init__(self) -> None:
        base = Path(self.pattern)
        if base.is_dir():
            files = sorted(
                p for p in base.rglob("*") if p.is_file() and p.name.lower().endswith(_POINT_SUFFIXES)
            )
        else:
            files = sorted(Path(p) for p in glob.glob(self.pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise LayoutError(f"{self.pattern!r} matches no point file")
        self._files = files

    def tasks(self, model_classes: ClassTable) -> list[Task]:
        jobs = [ScanJob(path, self.fmt or PointFormat.for_path(path)) for path in self._files]
        try:
            plan_outputs(jobs, Path())
        except ValueError as exc:
            raise LayoutError(str(exc)) from exc
        return [
            Task(
                key=job.title,
                source=str(job.path),
                fmt=job.fmt.value if job.fmt is not None else "",
                output=str(job.output("")) + label_file_name("", model_classes),
            )
            for job in jobs
        ]

    def encoding(self, model_classes: ClassTable) -> LabelEncoding:
        return LabelEncoding(Encoding.MODEL, model_classes)

    def finalize(self, out: Path) -> None:
        """Nothing to add: one label file per input."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "format": self.fmt.value if self.fmt else None}
