"""nuScenes table records for a generated dataset, and their file names.

The schema is the one ``nuscenes.NuScenes`` loads (nuscenes-devkit 1.1, ``nuscenes/nuscenes.py``):
thirteen tables under ``<root>/<version>/`` plus ``lidarseg.json``. What the devkit relies on:

- every record has a 32-hex ``token``; ``map`` records carry ``log_tokens`` and a ``filename`` that
  must exist (the devkit makes a ``MapMask`` of it at load time; `maps.write_map_masks` writes them);
- ``category`` has the 32 lidarseg classes with their official ``index`` (seg3d.classes);
- a ``lidarseg`` record's token *is* its LIDAR_TOP sample_data token (``nusc.get('lidarseg',
  lidar_token)``), its ``filename`` is ``lidarseg/<version>/<token>_lidarseg.bin`` relative to the root,
  and there must be exactly one ``.bin`` in that folder per record;
- as in nuScenes, an ``ego_pose`` has the token of its ``sample_data``; visibility tokens are
  ``"1"``–``"4"``; sample and sample_data records chain through ``prev``/``next`` ("" at the ends),
  sample_data per sensor; sample annotations chain per instance.

Tokens are the MD5 of the seed and the record's identity, so the same seed gives the same tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seg3d.classes import NUSCENES_RAW_CLASSES
from training.data.synthetic.plan import ScenePlan
from training.data.synthetic.sensors import CAMERA_CHANNELS, IMAGE_SIZE, LIDAR_CHANNEL, RIGS, yaw_quaternion
from training.data.synthetic.world import World

if TYPE_CHECKING:  # keyframe imports this module
    from training.data.synthetic.keyframe import KeyframeResult

__all__ = [
    "ATTRIBUTES",
    "CATEGORY_DESCRIPTIONS",
    "TABLE_NAMES",
    "VISIBILITY_LEVELS",
    "build_tables",
    "lidarseg_filename",
    "map_filename",
    "sample_data_filename",
    "sample_data_token",
    "token",
    "visibility_token",
    "write_tables",
]

#: The tables ``NuScenes()`` loads, plus lidarseg.
TABLE_NAMES = (
    "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
    "sample_annotation", "sample_data", "scene", "sensor", "visibility", "lidarseg",
)  # fmt: skip

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "noise": "Spurious LiDAR returns: dust, multipath, reflections.",
    "animal": "Any animal.",
    "human.pedestrian.adult": "Adult walking or standing.",
    "human.pedestrian.child": "Child walking or standing.",
    "human.pedestrian.construction_worker": "Worker in a construction zone.",
    "human.pedestrian.personal_mobility": "Person on a scooter, skateboard or segway.",
    "human.pedestrian.police_officer": "Police officer.",
    "human.pedestrian.stroller": "Stroller or pram.",
    "human.pedestrian.wheelchair": "Wheelchair.",
    "movable_object.barrier": "Temporary barrier redirecting traffic.",
    "movable_object.debris": "Debris on the road.",
    "movable_object.pushable_pullable": "Trolleys, bins and other objects pushed or pulled by hand.",
    "movable_object.trafficcone": "Traffic cone.",
    "static_object.bicycle_rack": "Rack for parking bicycles.",
    "vehicle.bicycle": "Bicycle, ridden or parked.",
    "vehicle.bus.bendy": "Articulated bus.",
    "vehicle.bus.rigid": "Rigid bus.",
    "vehicle.car": "Passenger car, van or SUV.",
    "vehicle.construction": "Construction vehicle: crane, excavator, loader.",
    "vehicle.emergency.ambulance": "Ambulance.",
    "vehicle.emergency.police": "Police vehicle.",
    "vehicle.motorcycle": "Motorcycle or moped, ridden or parked.",
    "vehicle.trailer": "Trailer pulled by another vehicle.",
    "vehicle.truck": "Truck for goods.",
    "flat.driveable_surface": "Road surface vehicles may drive on.",
    "flat.other": "Other flat ground: traffic islands, paved plazas.",
    "flat.sidewalk": "Sidewalk and pedestrian paths.",
    "flat.terrain": "Grass, soil, gravel.",
    "static.manmade": "Buildings, walls, poles, signs.",
    "static.other": "Other static background.",
    "static.vegetation": "Trees, bushes, hedges.",
    "vehicle.ego": "The ego vehicle's own body.",
}

#: The eight nuScenes attributes.
ATTRIBUTES: dict[str, str] = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle with a driver, stopped for now (traffic, lights).",
    "vehicle.parked": "Vehicle parked, without a driver.",
    "cycle.with_rider": "Bicycle or motorcycle with a rider.",
    "cycle.without_rider": "Bicycle or motorcycle without a rider.",
    "pedestrian.sitting_lying_down": "Pedestrian sitting or lying down.",
    "pedestrian.standing": "Pedestrian standing.",
    "pedestrian.moving": "Pedestrian moving.",
}

#: nuScenes visibility: the visible share of an object over the six images, in four bins.
VISIBILITY_LEVELS: tuple[tuple[str, str, float], ...] = (
    ("1", "v0-40", 0.0),
    ("2", "v40-60", 0.4),
    ("3", "v60-80", 0.6),
    ("4", "v80-100", 0.8),
)

Record = dict[str, object]
CHANNELS = (LIDAR_CHANNEL, *CAMERA_CHANNELS)


def token(seed: int, *identity: object) -> str:
    """A nuScenes-style 32-hex token, fixed by the seed and the record's identity."""
    return hashlib.md5("/".join(map(str, ("synthetic-nuscenes", seed, *identity))).encode()).hexdigest()


def sample_data_token(seed: int, plan: ScenePlan, sample: int, channel: str) -> str:
    """Token of a keyframe's sample_data (also its ego_pose's and, for LIDAR_TOP, its lidarseg's)."""
    return token(seed, "sample_data", plan.name, sample, channel)


def sample_data_filename(plan: ScenePlan, channel: str, timestamp: int) -> str:
    """``samples/<channel>/<logfile>__<channel>__<timestamp>.<ext>`` as nuScenes names keyframe files."""
    extension = "pcd.bin" if channel == LIDAR_CHANNEL else "jpg"
    return f"samples/{channel}/{plan.logfile}__{channel}__{timestamp}.{extension}"


def lidarseg_filename(version: str, lidar_token: str) -> str:
    return f"lidarseg/{version}/{lidar_token}_lidarseg.bin"


def map_filename(seed: int, location: str) -> str:
    return f"maps/{token(seed, 'map', location)}.png"


def visibility_token(fraction: float) -> str:
    """Token of the visibility bin of a visible share in [0, 1]."""
    return [t for t, _, low in VISIBILITY_LEVELS if fraction >= low][-1]


def _chain(records: list[Record]) -> None:
    """Link consecutive records through ``prev`` / ``next``."""
    for i, record in enumerate(records):
        record["prev"] = records[i - 1]["token"] if i else ""
        record["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


def _description(world: World) -> str:
    counts: dict[str, int] = {}
    for obj in world.objects:
        counts[obj.category] = counts.get(obj.category, 0) + 1
    words = {
        "vehicle.car": "cars", "vehicle.truck": "trucks", "vehicle.bus.rigid": "buses",
        "human.pedestrian.adult": "pedestrians", "human.pedestrian.child": "children",
        "vehicle.bicycle": "bicycles", "vehicle.motorcycle": "motorcycles",
    }  # fmt: skip
    parts = [f"{counts[c]} {w}" for c, w in words.items() if counts.get(c)]
    layout = world.layout
    extras = (
        ["work zone"]
        + (["median"] if layout.median_half_width else [])
        + (["zebra crossing"] if layout.crossings else [])
    )
    return f"Synthetic street: {', '.join(parts)}; {', '.join(extras)}"


def build_tables(
    seed: int,
    version: str,
    plans: Sequence[ScenePlan],
    worlds: Sequence[World],
    results: Mapping[tuple[int, int], KeyframeResult],
) -> dict[str, list[Record]]:
    """All records of the dataset; ``results[(scene, sample)]`` is that keyframe's result."""
    tables: dict[str, list[Record]] = {name: [] for name in TABLE_NAMES}
    tables.update(_vocabularies(seed))
    for plan, world in zip(plans, worlds, strict=True):
        keyframes = [results[(plan.index, k)] for k in range(plan.num_samples)]
        _add_scene(tables, seed, version, plan, world, keyframes)
    tables["map"] = [
        {
            "category": "semantic_prior",
            "token": token(seed, "map", location),
            "filename": map_filename(seed, location),
            "log_tokens": [token(seed, "log", p.name) for p in plans if p.location.name == location],
        }
        for location in sorted({p.location.name for p in plans})
    ]
    return tables


def _vocabularies(seed: int) -> dict[str, list[Record]]:
    """The tables that do not depend on the scenes: categories, attributes, visibility, sensors."""
    return {
        "category": [
            {"token": token(seed, "category", name), "name": name,
             "description": CATEGORY_DESCRIPTIONS[name], "index": index}
            for index, name in enumerate(NUSCENES_RAW_CLASSES)
        ],
        "attribute": [
            {"token": token(seed, "attribute", name), "name": name, "description": text}
            for name, text in ATTRIBUTES.items()
        ],
        "visibility": [
            {"token": t, "level": level, "description": f"visibility of whole object is {level[1:]}%"}
            for t, level, _ in VISIBILITY_LEVELS
        ],
        "sensor": [
            {"token": token(seed, "sensor", ch), "channel": ch,
             "modality": "lidar" if ch == LIDAR_CHANNEL else "camera"}
            for ch in CHANNELS
        ],
    }  # fmt: skip


def _add_scene(
    tables: dict[str, list[Record]],
    seed: int,
    version: str,
    plan: ScenePlan,
    world: World,
    keyframes: Sequence[KeyframeResult],
) -> None:
    """Add one scene's log, calibrations, samples, sensor data, ego poses and annotations."""
    log_token, scene_token = token(seed, "log", plan.name), token(seed, "scene", plan.name)
    tables["log"].append(
        {"token": log_token, "logfile": plan.logfile, "vehicle": plan.location.vehicle,
         "date_captured": plan.date_captured, "location": plan.location.name}
    )  # fmt: skip
    rig = RIGS[plan.location.vehicle]
    calibration = {ch: token(seed, "calibrated_sensor", plan.name, ch) for ch in CHANNELS}
    tables["calibrated_sensor"].extend(
        {"token": calibration[ch], "sensor_token": token(seed, "sensor", ch),
         "translation": list(rig[ch].translation), "rotation": list(rig[ch].rotation),
         "camera_intrinsic": rig[ch].intrinsic}
        for ch in CHANNELS
    )  # fmt: skip
    samples = [
        {"token": token(seed, "sample", plan.name, k), "timestamp": t.lidar, "prev": "", "next": "",
         "scene_token": scene_token}
        for k, t in enumerate(plan.times)
    ]  # fmt: skip
    _chain(samples)
    tables["sample"].extend(samples)
    tables["scene"].append(
        {"token": scene_token, "log_token": log_token, "nbr_samples": plan.num_samples,
         "first_sample_token": samples[0]["token"], "last_sample_token": samples[-1]["token"],
         "name": plan.name, "description": _description(world)}
    )  # fmt: skip

    heading = list(yaw_quaternion(plan.heading))
    for ch in CHANNELS:
        records = []
        for k, times in enumerate(plan.times):
            stamp = times.lidar if ch == LIDAR_CHANNEL else times.cameras[ch]
            sd_token = sample_data_token(seed, plan, k, ch)
            ego = plan.to_global(np.array([[plan.ego_x(stamp), world.ego_lane_y(), 0.0]]))[0]
            tables["ego_pose"].append(
                {"token": sd_token, "timestamp": stamp, "rotation": heading, "translation": ego.tolist()}
            )
            camera = ch != LIDAR_CHANNEL
            records.append(
                {"token": sd_token, "sample_token": samples[k]["token"], "ego_pose_token": sd_token,
                 "calibrated_sensor_token": calibration[ch], "timestamp": stamp,
                 "fileformat": "jpg" if camera else "pcd", "is_key_frame": True,
                 "height": IMAGE_SIZE[1] if camera else 0, "width": IMAGE_SIZE[0] if camera else 0,
                 "filename": sample_data_filename(plan, ch, stamp), "prev": "", "next": ""}
            )  # fmt: skip
            if not camera:
                tables["lidarseg"].append(
                    {
                        "token": sd_token,
                        "sample_data_token": sd_token,
                        "filename": lidarseg_filename(version, sd_token),
                    }
                )
        _chain(records)
        tables["sample_data"].extend(records)
    _add_annotations(tables, seed, plan, world, keyframes, [s["token"] for s in samples])


def _add_annotations(
    tables: dict[str, list[Record]],
    seed: int,
    plan: ScenePlan,
    world: World,
    keyframes: Sequence[KeyframeResult],
    sample_tokens: Sequence[str],
) -> None:
    """One instance per object annotated at least once; one annotation per keyframe that has it in range."""
    categories = {name: token(seed, "category", name) for name in NUSCENES_RAW_CLASSES}
    centres = plan.to_global(np.array([o.center for o in world.objects]).reshape(-1, 3))
    for i, obj in enumerate(world.objects):
        instance_token = token(seed, "instance", plan.name, i)
        attributes = [token(seed, "attribute", obj.attribute)] if obj.attribute else []
        annotations = []
        for k, keyframe in enumerate(keyframes):
            if not keyframe.annotated[i]:
                continue
            covered, visible = int(keyframe.covered[i]), int(keyframe.visible[i])
            annotations.append(
                {"token": token(seed, "sample_annotation", plan.name, i, k), "sample_token": sample_tokens[k],
                 "instance_token": instance_token,
                 "visibility_token": visibility_token(visible / covered if covered else 0.0),
                 "attribute_tokens": attributes, "translation": centres[i].tolist(), "size": list(obj.size),
                 "rotation": list(yaw_quaternion(plan.heading + obj.yaw)), "prev": "", "next": "",
                 "num_lidar_pts": int(keyframe.box_points[i]), "num_radar_pts": 0}
            )  # fmt: skip
        if not annotations:
            continue
        _chain(annotations)
        tables["sample_annotation"].extend(annotations)
        tables["instance"].append(
            {"token": instance_token, "category_token": categories[obj.category],
             "nbr_annotations": len(annotations), "first_annotation_token": annotations[0]["token"],
             "last_annotation_token": annotations[-1]["token"]}
        )  # fmt: skip


def write_tables(root: Path, version: str, tables: Mapping[str, list[Record]]) -> None:
    """Write each table as ``<root>/<version>/<name>.json`` (indented like the nuScenes release)."""
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (folder / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
