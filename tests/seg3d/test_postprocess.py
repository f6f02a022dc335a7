from __future__ import annotations

import numpy as np
import pytest

from seg3d.postprocess import fill_outside_crop


def test_points_outside_the_crop_take_their_nearest_in_crop_label() -> None:
    xyz = np.array([[0.0, 0, 0], [10, 0, 0], [60, 0, 0], [11, 80, 0], [-70, 0, 0]])
    inside = np.array([True, True, False, False, False])
    labels = fill_outside_crop(xyz, inside, np.array([3, 7], dtype=np.uint8))
    assert labels.tolist() == [3, 7, 7, 7, 3] and labels.dtype == np.uint8
    with pytest.raises(ValueError, match="2 in-crop points"):
        fill_outside_crop(xyz, inside, np.array([1]))
    with pytest.raises(ValueError, match="no point inside"):
        fill_outside_crop(xyz, np.zeros(5, dtype=bool), np.array([], dtype=np.uint8))


def test_every_outside_point_of_a_real_scan_takes_a_nearest_in_crop_label(nuscenes_scans) -> None:
    """Against brute force on a real sweep: each outside point's label is that of an in-crop point
    at the smallest distance (the tree's build options must not change which distance wins)."""
    import torch

    from seg3d.config import load_config
    from seg3d.preprocess import crop_mask

    xyz = nuscenes_scans[0].points[:, :3].numpy().astype(np.float32)
    inside = crop_mask(torch.from_numpy(xyz), load_config("tiny").grid).numpy()
    inner = np.arange(int(inside.sum()), dtype=np.int64)  # each in-crop point labelled by its index
    labels = fill_outside_crop(xyz, inside, inner)
    assert (labels[inside] == inner).all()
    ins, outs = xyz[inside].astype(np.float64), xyz[~inside].astype(np.float64)
    assert len(outs) > 1000
    chosen = np.linalg.norm(outs - ins[labels[~inside]], axis=1)
    best = np.array([np.sqrt(((ins - o) ** 2).sum(1)).min() for o in outs[:400]])
    assert np.allclose(chosen[:400], best, rtol=0, atol=1e-6)
