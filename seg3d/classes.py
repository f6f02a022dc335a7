"""The class tables: every class list, its order, ignore index and colours, in one place.

A model's classes are fixed by its data set (`ModelConfig.dataset` → `class_table`): configs never
spell a class list, so a reordered copy cannot mislabel a model. Stored configs (checkpoints,
manifests of format ``ddata-export/1``) that still carry a ``class_names`` list are checked against
the table and refused when it differs.

nuScenes-lidarseg's 32 raw classes map to the 16 training classes (+ ignore 0) by category *name*
(`docs/architecture.md` §1.2), so the map survives a reordering of ``category.json``; the raw
indices are the official lidarseg ones. 3D box categories use the same strings, so the same map gives
a box's training class.

Colours (RGB): nuScenes classes take nuscenes-devkit's ``get_colormap()`` colour of their main raw
category; SemanticKITTI classes take the ``color_map`` of ``semantic-kitti.yaml`` (stored there as
BGR) of the raw id their training id maps back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLASS_TABLES",
    "NUSCENES_INTEREST_CATEGORIES",
    "NUSCENES_LIDARSEG",
    "NUSCENES_RAW_CLASSES",
    "NUSCENES_RAW_TO_TRAIN",
    "NUSCENES_TO_SEMANTICKITTI",
    "NUSCENES_TRAIN_CLASSES",
    "SEMANTICKITTI",
    "SEMANTICKITTI_TO_NUSCENES",
    "ClassMapping",
    "ClassTable",
    "DatasetName",
    "class_mapping",
    "class_table",
    "nuscenes_train_id",
]

#: The data sets a model can be trained for; each fixes the model's class table.
DatasetName = Literal["nuscenes", "semantickitti", "synthetic"]


@dataclass(frozen=True)
class ClassTable:
    """Training classes in output order: index ``i`` of the logits is ``names[i]``."""

    name: str
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]  # RGB 0-255, one per class
    ignore_index: int = 0

    def __post_init__(self) -> None:
        if len(self.colours) != len(self.names) or not 0 <= self.ignore_index < len(self.names):
            raise ValueError(f"class table {self.name}: one colour per class and a valid ignore index")

    def __len__(self) -> int:
        return len(self.names)


NUSCENES_LIDARSEG = ClassTable(
    name="nuscenes-lidarseg",
    names=(
        "ignore", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
        "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
        "manmade", "vegetation",
    ),
    colours=(
        (0, 0, 0), (112, 128, 144), (220, 20, 60), (255, 69, 0), (255, 158, 0), (233, 150, 70),
        (255, 61, 99), (0, 0, 230), (47, 79, 79), (255, 140, 0), (255, 99, 71), (0, 207, 191),
        (175, 0, 75), (75, 0, 75), (112, 180, 60), (222, 184, 135), (0, 175, 0),
    ),
)  # fmt: skip

SEMANTICKITTI = ClassTable(
    name="semantickitti",
    names=(
        "unlabeled", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
        "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
        "trunk", "terrain", "pole", "traffic-sign",
    ),
    colours=(
        (0, 0, 0), (100, 150, 245), (100, 230, 245), (30, 60, 150), (80, 30, 180), (0, 0, 255),
        (255, 30, 30), (255, 40, 200), (150, 30, 90), (255, 0, 255), (255, 150, 255), (75, 0, 75),
        (175, 0, 75), (255, 200, 0), (255, 120, 50), (0, 175, 0), (135, 60, 0), (150, 240, 80),
        (255, 240, 150), (255, 0, 0),
    ),
)  # fmt: skip

#: Data set → its class table.
CLASS_TABLES: dict[str, ClassTable] = {
    "nuscenes": NUSCENES_LIDARSEG,
    "synthetic": NUSCENES_LIDARSEG,  # the synthetic data set is in the nuScenes-lidarseg layout
    "semantickitti": SEMANTICKITTI,
}


def class_table(dataset: str) -> ClassTable:
    """The class table of a data set (`DatasetName`)."""
    try:
        return CLASS_TABLES[dataset]
    except KeyError:
        raise ValueError(f"no class table for data set {dataset!r}; known: {sorted(CLASS_TABLES)}") from None


NUSCENES_TRAIN_CLASSES: tuple[str, ...] = NUSCENES_LIDARSEG.names

#: Official lidarseg index → name.
NUSCENES_RAW_CLASSES: tuple[str, ...] = (
    "noise", "animal", "human.pedestrian.adult", "human.pedestrian.child",
    "human.pedestrian.construction_worker", "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer", "human.pedestrian.stroller", "human.pedestrian.wheelchair",
    "movable_object.barrier", "movable_object.debris", "movable_object.pushable_pullable",
    "movable_object.trafficcone", "static_object.bicycle_rack", "vehicle.bicycle", "vehicle.bus.bendy",
    "vehicle.bus.rigid", "vehicle.car", "vehicle.construction", "vehicle.emergency.ambulance",
    "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer", "vehicle.truck",
    "flat.driveable_surface", "flat.other", "flat.sidewalk", "flat.terrain", "static.manmade",
    "static.other", "static.vegetation", "vehicle.ego",
)  # fmt: skip

#: Raw category name → training class name; names absent here map to "ignore".
NUSCENES_RAW_TO_TRAIN: dict[str, str] = {
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.barrier": "barrier",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface",
    "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "static.manmade": "manmade",
    "static.vegetation": "vegetation",
}


def nuscenes_train_id(raw_name: str) -> int:
    """Training id of a raw lidarseg / box category name (0 = ignore)."""
    return NUSCENES_TRAIN_CLASSES.index(NUSCENES_RAW_TO_TRAIN.get(raw_name, "ignore"))


#: The 2DDATA paper's interest classes: the raw categories whose 2D boxes the Local Object Branch
#: works on (the loader's default ``interest_classes``, the synthetic data set's purity checks).
NUSCENES_INTEREST_CATEGORIES: tuple[str, ...] = (
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "vehicle.bicycle",
    "vehicle.car",
    "vehicle.truck",
    "vehicle.motorcycle",
)


@dataclass(frozen=True)
class ClassMapping:
    """Classes of one table → classes of another, by name: how labels of one data set are read in a
    model's classes (evaluating a nuScenes-class model on SemanticKITTI ground truth, say).

    ``pairs`` lists ``(source name, target name)``; a source class with no pair maps to the target's
    ignore class, so its points are left out of any metric. Several source classes may share a
    target (building, fence, pole → manmade); a source class maps to at most one target.
    """

    source: ClassTable
    target: ClassTable
    pairs: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        sources = [a for a, _ in self.pairs]
        if len(set(sources)) != len(sources):
            raise ValueError(f"{self.name}: a source class is mapped twice")
        for a, b in self.pairs:
            if a not in self.source.names or a == self.source.names[self.source.ignore_index]:
                raise ValueError(f"{self.name}: {a!r} is not a class of {self.source.name}")
            if b not in self.target.names or b == self.target.names[self.target.ignore_index]:
                raise ValueError(f"{self.name}: {b!r} is not a class of {self.target.name}")

    @property
    def name(self) -> str:
        return f"{self.source.name} → {self.target.name}"

    def lookup(self) -> npt.NDArray[np.int64]:
        """``(len(source),)`` target index of every source index (the target's ignore where unmapped)."""
        table = np.full(len(self.source), self.target.ignore_index, dtype=np.int64)
        for a, b in self.pairs:
            table[self.source.names.index(a)] = self.target.names.index(b)
        return table

    def apply(self, labels: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
        """Source class indices ``(N,)`` → target class indices ``(N,)``.

        Raises:
            ValueError: an index outside the source table.
        """
        labels = np.asarray(labels)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.source)):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.source)})")
        return self.lookup()[labels.astype(np.int64)]

    @property
    def targets(self) -> tuple[str, ...]:
        """The target classes some source class maps to, in target order."""
        reached = {b for _, b in self.pairs}
        return tuple(n for n in self.target.names if n in reached)

    @property
    def ignored(self) -> tuple[str, ...]:
        """The source classes left out (besides the source's own ignore class)."""
        mapped = {a for a, _ in self.pairs}
        skip = self.source.names[self.source.ignore_index]
        return tuple(n for n in self.source.names if n not in mapped and n != skip)

    def describe(self) -> list[str]:
        """One line per target class (``manmade ← building, fence, pole, traffic-sign``), then the
        ignored source classes: what an evaluation prints beside its figures."""
        lines = [f"{b} ← {', '.join(a for a, t in self.pairs if t == b)}" for b in self.targets]
        if self.ignored:
            lines.append(f"ignored: {', '.join(self.ignored)}")
        return lines


#: SemanticKITTI's 19 classes read as nuScenes-lidarseg classes by name. Left out: parking (road or
#: not, by markings), other-vehicle (buses, trailers and trams in one class), bicyclist and
#: motorcyclist (rider and vehicle as one class): no nuScenes class has the same meaning.
SEMANTICKITTI_TO_NUSCENES = ClassMapping(
    SEMANTICKITTI,
    NUSCENES_LIDARSEG,
    (
        ("car", "car"),
        ("bicycle", "bicycle"),
        ("motorcycle", "motorcycle"),
        ("truck", "truck"),
        ("person", "pedestrian"),
        ("road", "driveable_surface"),
        ("sidewalk", "sidewalk"),
        ("other-ground", "other_flat"),
        ("building", "manmade"),
        ("fence", "manmade"),
        ("pole", "manmade"),
        ("traffic-sign", "manmade"),
        ("vegetation", "vegetation"),
        ("trunk", "vegetation"),
        ("terrain", "terrain"),
    ),
)


#: nuScenes-lidarseg classes written as SemanticKITTI classes (a nuScenes-class model labelling
#: SemanticKITTI sequences, `python -m serve.label --semantickitti`): the reverse of
#: `SEMANTICKITTI_TO_NUSCENES` where it is one to one, buildings for manmade (its largest part), and
#: other-vehicle for the vehicles SemanticKITTI has no class of. Left out, so written as unlabeled:
#: barrier and traffic_cone (no SemanticKITTI class has the same meaning).
NUSCENES_TO_SEMANTICKITTI = ClassMapping(
    NUSCENES_LIDARSEG,
    SEMANTICKITTI,
    (
        ("car", "car"),
        ("bicycle", "bicycle"),
        ("motorcycle", "motorcycle"),
        ("truck", "truck"),
        ("bus", "other-vehicle"),
        ("construction_vehicle", "other-vehicle"),
        ("trailer", "other-vehicle"),
        ("pedestrian", "person"),
        ("driveable_surface", "road"),
        ("sidewalk", "sidewalk"),
        ("other_flat", "other-ground"),
        ("terrain", "terrain"),
        ("manmade", "building"),
        ("vegetation", "vegetation"),
    ),
)


def class_mapping(source: ClassTable, target: ClassTable) -> ClassMapping:
    """The declared mapping from ``source``'s classes to ``target``'s (the identity for one table).

    Raises:
        ValueError: no mapping is declared between the two tables.
    """
    if source == target:
        return ClassMapping(
            source, target, tuple((n, n) for i, n in enumerate(source.names) if i != source.ignore_index)
        )
    for mapping in (SEMANTICKITTI_TO_NUSCENES, NUSCENES_TO_SEMANTICKITTI):
        if mapping.source == source and mapping.target == target:
            return mapping
    raise ValueError(f"no class mapping is declared from {source.name} to {target.name}")
