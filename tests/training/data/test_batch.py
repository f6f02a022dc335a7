"""Collate: per-sample view indices become global to the batch."""

from __future__ import annotations

import pytest
import torch

from seg3d.config import load_config
from training.data.batch import collate
from training.data.sample import CameraView, LidarSample


def _view(
    points: int, seen: list[int], boxes: int, owner: list[int], camera: str = "CAM_FRONT"
) -> CameraView:
    return CameraView(
        camera=camera,
        image=torch.full((3, 240, 400), float(points)),
        point_index=torch.tensor(seen, dtype=torch.int64),
        pixels=torch.tensor([[i, i] for i in seen], dtype=torch.int64).view(-1, 2),
        point_box=torch.tensor(owner, dtype=torch.int64),
        boxes=torch.arange(boxes * 4, dtype=torch.float32).view(boxes, 4),
        box_class=torch.arange(boxes, dtype=torch.int64),
        box_label=torch.full((boxes,), 4, dtype=torch.int64),
        box_depth=torch.ones(boxes),
    )


def _sample(name: str, points: int, views: tuple[CameraView, ...]) -> LidarSample:
    generator = torch.Generator().manual_seed(points)
    return LidarSample(
        name=name,
        points=torch.rand(points, 4, generator=generator) * 20 - 10,
        labels=torch.randint(1, 17, (points,), generator=generator),
        indices=torch.arange(points),
        num_file_points=points,
        views=views,
    )


def test_view_indices_are_offset_by_the_samples_before() -> None:
    first = _sample("a", 100, (_view(100, [3, 5, 7], 2, [1, -1, 0]),))
    second = _sample("b", 50, (_view(50, [0, 1], 1, [0, 0]), _view(50, [4], 0, [-1], camera="CAM_BACK")))
    batch = collate([first, second], load_config("tiny"))
    views = batch.views
    assert views is not None
    assert views.images.shape == (3, 3, 240, 400) and views.view_sample.tolist() == [0, 1, 1]
    assert views.point_index.tolist() == [3, 5, 7, 100, 101, 104]
    assert views.point_view.tolist() == [0, 0, 0, 1, 1, 2]
    assert views.point_box.tolist() == [1, -1, 0, 2, 2, -1]
    assert views.box_view.tolist() == [0, 0, 1] and views.boxes.shape == (3, 4)
    # a point's global index reads the same point as its per-sample index
    assert torch.equal(batch.points[views.point_index[3]], second.points[0])
    assert batch.sizes == [100, 50]


def test_views_must_be_all_or_nothing() -> None:
    with_view = _sample("a", 10, (_view(10, [1], 0, [-1]),))
    without = _sample("b", 10, ())
    with pytest.raises(ValueError, match="with and without camera views"):
        collate([with_view, without], load_config("tiny"))
    assert collate([without], load_config("tiny")).views is None
