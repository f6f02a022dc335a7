"""Hand-made training samples for the model tests: a cloud, a toy front camera and a few 2D boxes.

The "camera" sees the points ahead of the sensor (x > 0.5 m, within ±35° of the x axis); a point's
pixel comes from its azimuth (column) and elevation (row). Boxes are pixel rectangles; a point in
several boxes takes the first. Everything is seeded.
"""

from __future__ import annotations

import torch

from seg3d.config import ModelConfig
from seg3d.preprocess import crop_mask
from training.data.batch import Batch, collate
from training.data.sample import CameraView, LidarSample

NUM_BOX_CLASSES = 6


def random_cloud(num_points: int, seed: int, extent: float = 30.0) -> torch.Tensor:
    """``(N, 4)`` points uniform in ``[-extent, extent]² × [-3, 2]`` m, intensity 0–255."""
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(num_points, 2, generator=g) * 2 - 1) * extent
    z = torch.rand(num_points, 1, generator=g) * 5 - 3
    intensity = torch.rand(num_points, 1, generator=g) * 255
    return torch.cat([xy, z, intensity], dim=1)


def camera_view(
    points: torch.Tensor,
    height: int,
    width: int,
    num_boxes: int,
    seed: int,
    boxes_used: bool = True,
) -> CameraView:
    """The toy front camera of ``points`` with ``num_boxes`` random boxes (``point_box`` all -1 unless
    ``boxes_used``)."""
    g = torch.Generator().manual_seed(seed)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    tan_limit = 0.7  # ≈ ±35°
    seen = torch.nonzero((x > 0.5) & (y.abs() < tan_limit * x)).flatten()
    xs, ys, zs = x[seen], y[seen], z[seen]
    cols = ((0.5 - 0.5 * ys / (tan_limit * xs)) * (width - 1)).round().long().clamp(0, width - 1)
    rows = ((0.5 - 0.5 * zs / (0.3 * xs)) * (height - 1)).round().long().clamp(0, height - 1)
    pixels = torch.stack([rows, cols], dim=1)
    corners = torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.7, height * 0.6])
    sizes = torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.3, height * 0.4]) + 4
    boxes = torch.stack(  # x_min, x_max, y_min, y_max
        [corners[:, 0], corners[:, 0] + sizes[:, 0], corners[:, 1], corners[:, 1] + sizes[:, 1]], dim=1
    )
    point_box = torch.full((seen.numel(),), -1, dtype=torch.int64)
    if boxes_used:
        for k in reversed(range(num_boxes)):  # reversed: the first box containing a point wins
            inside = (
                (cols >= boxes[k, 0]) & (cols <= boxes[k, 1]) & (rows >= boxes[k, 2]) & (rows <= boxes[k, 3])
            )
            point_box[inside] = k
    return CameraView(
        camera="CAM_FRONT",
        image=torch.randn(3, height, width, generator=g),
        point_index=seen,
        pixels=pixels,
        point_box=point_box,
        boxes=boxes,
        box_class=torch.randint(0, NUM_BOX_CLASSES, (num_boxes,), generator=g),
        box_label=torch.randint(1, 17, (num_boxes,), generator=g),
        box_depth=torch.rand(num_boxes, generator=g) * 30 + 1,
    )


def make_sample(
    name: str,
    points: torch.Tensor,
    config: ModelConfig,
    height: int,
    width: int,
    num_boxes: int,
    seed: int,
    boxes_used: bool = True,
) -> LidarSample:
    """A labelled sample of the in-range ``points`` with one camera view."""
    points = points[crop_mask(points[:, :3], config.grid)]
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, config.num_classes, (points.shape[0],), generator=g)
    view = camera_view(points, height, width, num_boxes, seed, boxes_used)
    return LidarSample(
        name=name,
        points=points,
        labels=labels,
        indices=torch.arange(points.shape[0]),
        num_file_points=points.shape[0],
        views=(view,),
    )


def make_batch(
    config: ModelConfig,
    sizes: tuple[int, ...] = (1500, 1200),
    height: int = 64,
    width: int = 96,
    num_boxes: int = 3,
    boxes_used: bool = True,
    seed: int = 0,
) -> Batch:
    """A batch of ``len(sizes)`` random samples (one view each) collated for ``config``."""
    samples = [
        make_sample(
            f"s{i}", random_cloud(n, seed + i), config, height, width, num_boxes, seed + i, boxes_used
        )
        for i, n in enumerate(sizes)
    ]
    return collate(samples, config)
