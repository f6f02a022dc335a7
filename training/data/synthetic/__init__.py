"""A procedural dataset in the exact nuScenes-lidarseg on-disk layout, for tests and smoke training.

``generate(out, scenes, samples_per_scene, seed, version)`` writes ``<out>/<version>/*.json`` (every
table ``nuscenes.NuScenes`` loads, plus ``lidarseg.json``), ``samples/LIDAR_TOP/*.pcd.bin``,
``samples/CAM_*/*.jpg`` (1600×900), ``lidarseg/<version>/*_lidarseg.bin``, ``maps/*.png`` and
``synthetic.json`` (the arguments that fix the bytes: `read_recipe`); the devkit loads it as it
loads nuScenes, and its split lists apply (scene names are theirs).

Each scene is a random street (`world`): road, sidewalks, terrain and paved patches, buildings,
vegetation, street furniture and annotated objects of the 11 box classes that make up the 16
training classes. The LiDAR (`lidar`, the HDL-32E geometry of LIDAR_TOP) and the six cameras
(`render`) ray cast the same world (`raycast`) from the nuScenes rig (`sensors`) at their own
timestamps along the ego's drive (`plan`), so labels, images and boxes agree, ego motion included.
Each keyframe is simulated in `keyframe`, in parallel (`generator`); tables are built in `tables`,
map masks in `maps`. `checks` measures a dataset through the devkit (box purity, sweeps) for the tests
and ``bench/synthetic.py``.

``camera_cues=True`` (``--camera-cues``, off by default) makes a setting where the camera carries what
the LiDAR lacks: truck / construction vehicle and bicycle / motorcycle alike in the LiDAR and told apart
only by their colours in the images, and distant small objects with few returns but many pixels
(`world`'s docstring has the details).

Command line: ``python -m training.data.synthetic --out DIR`` (``--help`` for the options).
"""

from training.data.synthetic.generator import (
    RECIPE_FILE,
    GenerationReport,
    generate,
    read_recipe,
    recipe,
)
from training.data.synthetic.plan import VERSIONS, GenerationError

__all__ = [
    "RECIPE_FILE",
    "VERSIONS",
    "GenerationError",
    "GenerationReport",
    "generate",
    "read_recipe",
    "recipe",
]
