"""Generate a whole dataset: plan, build the worlds, simulate the keyframes in parallel, write tables.

Everything is written into a staging folder beside the destination (``<out>.partial-<pid>``) that
is renamed to ``<out>`` only once complete, so an interrupted run never leaves a dataset that looks
whole. ``<out>/synthetic.json`` records the arguments that determine the bytes (`recipe`), so a
workflow can check that an existing data set is the one it asks for (`read_recipe`). Keyframes
draw from per-scene, per-sample random streams, so the bytes written do not depend on the number
of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg3d.classes import NUSCENES_RAW_CLASSES
from training.data.synthetic.keyframe import KeyframeResult, KeyframeTask, make_keyframe
from training.data.synthetic.maps import write_map_masks
from training.data.synthetic.plan import GenerationError, ScenePlan, plan_scenes, scene_rng
from training.data.synthetic.tables import build_tables, write_tables
from training.data.synthetic.world import World, build_world

__all__ = [
    "LIDAR_CHOICES",
    "RECIPE_FILE",
    "GenerationReport",
    "generate",
    "plan_worlds",
    "read_recipe",
    "recipe",
    "scene_lidar",
]

#: The file in a generated data set's root that records its `recipe`.
RECIPE_FILE = "synthetic.json"
#: Values of `generate`'s ``lidar``: a model of `sensors.LIDARS`, or both by scene (`scene_lidar`).
LIDAR_CHOICES = ("hdl32e", "hdl64e", "mixed")


@dataclass(frozen=True)
class GenerationReport:
    """What `generate` wrote, and how long it took."""

    root: Path
    version: str
    scenes: int
    samples: int
    workers: int
    seconds: float  # wall clock, end to end
    keyframe_seconds: float  # summed over keyframes (CPU time of the workers, roughly)
    points_per_sweep: tuple[int, ...]
    label_counts: dict[str, int]  # raw lidarseg class → points, over all sweeps
    instances: int
    annotations: int

    def summary(self) -> str:
        points = np.asarray(self.points_per_sweep)
        present = sum(1 for n in self.label_counts.values() if n)
        return (
            f"{self.version}: {self.scenes} scenes, {self.samples} samples, {self.instances} instances, "
            f"{self.annotations} annotations in {self.seconds:.1f} s with {self.workers} worker(s); "
            f"{points.mean():,.0f} points per sweep ({points.min():,}–{points.max():,}), "
            f"{present} of {len(self.label_counts)} lidarseg classes present → {self.root}"
        )


def plan_worlds(
    seed: int, version: str, scenes: int, samples_per_scene: int, camera_cues: bool = False
) -> list[tuple[ScenePlan, World]]:
    """The scenes `generate` makes for these arguments, with their worlds (cheap: no sensor is run)."""
    plans = plan_scenes(seed, version, scenes, samples_per_scene)
    return [
        (
            plan,
            build_world(
                scene_rng(seed, plan.index, 0, 1), plan.path_x, plan.location.left_hand_traffic, camera_cues
            ),
        )
        for plan in plans
    ]


def recipe(
    version: str,
    scenes: int,
    samples_per_scene: int,
    seed: int,
    render_scale: float,
    lidar: str = "hdl32e",
    camera_cues: bool = False,
) -> dict[str, object]:
    """The arguments that fix a generated data set's bytes (the worker count does not), as
    ``synthetic.json`` records them. ``camera_cues`` is recorded only when on, so that the data sets
    made without it (the bundled model's among them) keep the recipe they were recorded with."""
    made: dict[str, object] = {
        "generator": "training.data.synthetic",
        "version": version,
        "scenes": scenes,
        "samples_per_scene": samples_per_scene,
        "seed": seed,
        "render_scale": render_scale,
        "lidar": lidar,
    }
    if camera_cues:
        made["camera_cues"] = True
    return made


def scene_lidar(lidar: str, scene: int) -> str:
    """The LiDAR model (a key of `sensors.LIDARS`) of scene ``scene`` under the ``lidar`` option:
    ``mixed`` alternates HDL-32E (even scenes) and HDL-64E (odd), so that train and val hold both."""
    if lidar == "mixed":
        return "hdl32e" if scene % 2 == 0 else "hdl64e"
    return lidar


def read_recipe(root: str | Path) -> dict[str, object] | None:
    """The recipe ``root/synthetic.json`` records, or None when there is none (not generated here,
    or by an older generator) or it is unreadable."""
    try:
        data = json.loads((Path(root) / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GenerationError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Move the finished staging folder to ``out``, replacing an old ``out`` only when allowed."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        if not overwrite:
            raise GenerationError(f"--out {out} appeared while generating; the dataset is left in {staging}")
        aside = out.with_name(f"{out.name}.old-{os.getpid()}")
        out.rename(aside)
        staging.rename(out)
        shutil.rmtree(aside)
    else:
        staging.rename(out)


def generate(
    out: str | Path,
    scenes: int = 10,
    samples_per_scene: int = 5,
    seed: int = 0,
    version: str = "v1.0-trainval",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    render_scale: float = 0.5,
    lidar: str = "hdl32e",
    camera_cues: bool = False,
) -> GenerationReport:
    """Write a procedural nuScenes-lidarseg dataset at ``out`` that ``NuScenes(version, out)`` loads.

    Args:
        out: destination folder; must not exist or be empty unless ``overwrite``.
        scenes: number of scenes; at most 10 for ``v1.0-mini`` (its devkit split lists).
        samples_per_scene: keyframes per scene (2 Hz).
        seed: fixes everything; the same arguments give byte-identical files.
        version: ``v1.0-trainval`` (default; about 20% of the scenes in the devkit's ``val``
            split, whole scenes) or ``v1.0-mini`` (``mini_train`` / ``mini_val``): the table folder
            name and the scene names.
        workers: processes simulating keyframes (default: CPU count); does not change the output.
        overwrite: replace a non-empty ``out``.
        progress: show a progress bar over keyframes.
        render_scale: camera ray-casting resolution relative to 1600×900 (images are resized to it).
        lidar: the LIDAR_TOP sensor: ``hdl32e`` (nuScenes' own, the default), ``hdl64e`` (KITTI's,
            `sensors.HDL64E`) or ``mixed`` (alternating by scene, `scene_lidar`).
        camera_cues: a setting where the camera carries what the LiDAR lacks (`world`'s docstring):
            truck / construction vehicle and bicycle / motorcycle alike in the LiDAR (one size
            distribution and reflectivity per pair) and told apart only by their colours in the
            images, plus distant small pedestrians and cycles with few returns and many pixels.
            Off by default; recorded in ``synthetic.json`` when on.

    Raises:
        GenerationError: bad arguments, or ``out`` in the way.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out)
    scene_list = plan_worlds(seed, version, scenes, samples_per_scene, camera_cues)
    plans = [plan for plan, _ in scene_list]
    worlds = [world for _, world in scene_list]
    if not 0.1 <= render_scale <= 1.0:
        raise GenerationError(f"render scale must be within [0.1, 1], got {render_scale}")
    if lidar not in LIDAR_CHOICES:
        raise GenerationError(f"lidar must be one of {', '.join(LIDAR_CHOICES)}, got {lidar!r}")
    _check_destination(out, overwrite)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise GenerationError(f"--workers must be at least 1, got {workers}")

    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        tasks = [
            KeyframeTask(seed, version, staging, plan, world, k, render_scale, scene_lidar(lidar, plan.index))
            for plan, world in zip(plans, worlds, strict=True)
            for k in range(plan.num_samples)
        ]
        results: dict[tuple[int, int], KeyframeResult] = {}
        workers = min(workers, len(tasks))
        with tqdm(total=len(tasks), unit="sample", desc="keyframes", disable=not progress) as bar:
            if workers == 1:
                for task in tasks:
                    result = make_keyframe(task)
                    results[(result.scene, result.sample)] = result
                    bar.update()
            else:
                # spawn: the workers share nothing with this process (no forked threads or locks).
                with multiprocessing.get_context("spawn").Pool(workers) as pool:
                    for result in pool.imap_unordered(make_keyframe, tasks):
                        results[(result.scene, result.sample)] = result
                        bar.update()
        tables = build_tables(seed, version, plans, worlds, results)
        write_tables(staging, version, tables)
        write_map_masks(staging, seed, plans, worlds)
        made = recipe(version, scenes, samples_per_scene, seed, render_scale, lidar, camera_cues)
        (staging / RECIPE_FILE).write_text(json.dumps(made, indent=2) + "\n")
        _publish(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    ordered = [results[key] for key in sorted(results)]
    counts = np.sum([r.label_counts for r in ordered], axis=0)
    return GenerationReport(
        root=out,
        version=version,
        scenes=len(plans),
        samples=len(tasks),
        workers=workers,
        seconds=time.perf_counter() - start,
        keyframe_seconds=float(sum(r.seconds for r in ordered)),
        points_per_sweep=tuple(r.num_points for r in ordered),
        label_counts={name: int(n) for name, n in zip(NUSCENES_RAW_CLASSES, counts, strict=True)},
        instances=len(tables["instance"]),
        annotations=len(tables["sample_annotation"]),
    )
