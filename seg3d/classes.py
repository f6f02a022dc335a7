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
from typing import Literal

__all__ = [
    "CLASS_TABLES",
    "NUSCENES_INTEREST_CATEGORIES",
    "NUSCENES_LIDARSEG",
    "NUSCENES_RAW_CLASSES",
    "NUSCENES_RAW_TO_TRAIN",
    "NUSCENES_TRAIN_CLASSES",
    "SEMANTICKITTI",
    "ClassTable",
    "DatasetName",
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
