"""Map masks: the ``maps/<token>.png`` semantic prior of each location.

nuscenes-devkit wraps every ``map`` record in a ``MapMask`` when it loads the tables (it asserts the
file exists) and reads it lazily for ``render_egoposes_on_map`` and the ego-centric map view: an 8-bit
image at 0.1 m per pixel whose pixel ``(row, col)`` is global ``(x, y) = (col, height - row) · 0.1``,
255 on drivable area and sidewalks, 0 elsewhere (``nuscenes/utils/map_mask.py``). Ours draws each
scene's carriageway and sidewalks, as far as its world reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data.synthetic.plan import ScenePlan, map_size
from training.data.synthetic.tables import map_filename
from training.data.synthetic.world import World

__all__ = ["MAP_RESOLUTION", "write_map_masks"]

MAP_RESOLUTION = 0.1  # m per pixel, the devkit's native map resolution
WORLD_REACH = 130.0  # m before and after each drive that the worlds fill (world.build_world)


def write_map_masks(root: Path, seed: int, plans: Sequence[ScenePlan], worlds: Sequence[World]) -> list[Path]:
    """Write one mask per location of ``plans``; returns the files written."""
    from PIL import Image, ImageDraw

    side = round(map_size(plans[0].num_samples) / MAP_RESOLUTION)
    written = []
    for location in sorted({p.location.name for p in plans}):
        mask = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(mask)
        for plan, world in zip(plans, worlds, strict=True):
            if plan.location.name != location:
                continue
            x0, x1 = plan.path_x
            half = world.layout.sidewalk_outer
            corners = np.array(
                [
                    [x0 - WORLD_REACH, -half, 0],
                    [x1 + WORLD_REACH, -half, 0],
                    [x1 + WORLD_REACH, half, 0],
                    [x0 - WORLD_REACH, half, 0],
                ]
            )
            xy = plan.to_global(corners)[:, :2] / MAP_RESOLUTION
            draw.polygon([(float(x), float(side - y)) for x, y in xy], fill=255)
        path = root / map_filename(seed, location)
        path.parent.mkdir(parents=True, exist_ok=True)
        mask.save(path, format="PNG")
        written.append(path)
    return written
