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
