"""Point dropout and 3D augmentation: counts kept, seeded, within the 2DPASS ranges."""

from __future__ import annotations

import math

import pytest
import torch

from training.data.augment import Augment3D, IntensityAugment, PointDropout


def test_dropout_keeps_the_count_and_copies_point_zero() -> None:
    ratios = []
    for seed in range(50):
        source = PointDropout(0.2)(10_000, torch.Generator().manual_seed(seed))
        assert source.shape == (10_000,)
        kept = source == torch.arange(10_000)
        assert bool((source[~kept] == 0).all())
        ratios.append(float((~kept[1:]).float().mean()))
    assert max(ratios) < 0.22 and min(ratios) < 0.02 and max(ratios) > 0.1  # r ~ U[0, 0.2)
    assert torch.equal(PointDropout(0.0)(5, torch.Generator()), torch.arange(5))
    assert PointDropout(0.2)(0, torch.Generator()).shape == (0,)


def test_augmentation_is_seeded_and_a_similarity_in_xy() -> None:
    points = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)) * 20
    a = Augment3D()(points, torch.Generator().manual_seed(1))
    b = Augment3D()(points, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a[:, 3], points[:, 3])
    # rotation + flip + isotropic xy scale: pairwise xy distances scale by one factor in [0.95, 1.05]
    d0 = torch.cdist(points[:50, :2], points[:50, :2])
    d1 = torch.cdist(a[:50, :2], a[:50, :2])
    ratio = d1[d0 > 1] / d0[d0 > 1]
    assert float(ratio.std()) < 1e-4 and 0.95 <= float(ratio.mean()) <= 1.05
    # z only moves by the translation
    shift = a[:, 2] - points[:, 2]
    assert float(shift.std()) < 1e-5 and abs(float(shift[0])) < 0.6
    identity = Augment3D(rotate=False, flip=False, scale_range=(1.0, 1.0), translate_std=0.0)
    assert torch.allclose(identity(points, torch.Generator()), points)
    assert not math.isclose(float(a[0, 0]), float(points[0, 0]))


def test_intensity_augment_drops_or_rescales_a_whole_cloud() -> None:
    points = torch.rand(500, 4, generator=torch.Generator().manual_seed(0)) * 200
    assert not IntensityAugment().active
    jitter = IntensityAugment(drop=0.3, scale_range=(0.5, 2.0), intensity_max=255.0)
    dropped = scaled = 0
    for seed in range(200):
        out = jitter(points, torch.Generator().manual_seed(seed))
        assert torch.equal(out[:, :3], points[:, :3])
        assert torch.equal(out, jitter(points, torch.Generator().manual_seed(seed)))  # seeded
        if bool((out[:, 3] == 0).all()):
            dropped += 1
            continue
        scaled += 1
        unclipped = out[:, 3] < 255.0
        ratio = out[unclipped, 3] / points[unclipped, 3]
        assert float(ratio.std()) < 1e-4 and 0.5 <= float(ratio.mean()) <= 2.0  # one factor per cloud
        assert float(out[:, 3].max()) <= 255.0
    assert 40 <= dropped <= 80 and scaled == 200 - dropped  # p = 0.3 of 200


def test_class_levels_give_each_class_its_own_mean_and_keep_its_contrasts() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(3000, 4, generator=gen) * 40 + 1
    labels = torch.randint(0, 5, (3000,), generator=gen)
    points[labels == 3, 3] = 0.0  # a class with no intensity at all stays dark
    jitter = IntensityAugment(class_level=(0.01, 0.5), intensity_max=255.0)
    assert jitter.active
    seen = []
    for seed in range(100):
        out = jitter(points, torch.Generator().manual_seed(seed), labels)
        assert torch.equal(out[:, :3], points[:, :3])
        assert torch.equal(out, jitter(points, torch.Generator().manual_seed(seed), labels))  # seeded
        assert bool((out[labels == 3, 3] == 0).all())
        means = []
        for c in (0, 1, 2, 4):
            mine = labels == c
            ratio = out[mine, 3] / points[mine, 3]
            assert float(ratio.std()) < 1e-4  # one factor per class: contrasts inside a class are kept
            if bool((out[mine, 3] < 255).all()):  # unclipped: the class's mean is its level
                means.append(float(out[mine, 3].mean()))
                assert 0.01 * 255 - 1e-3 <= means[-1] <= 0.5 * 255 + 1e-3
        seen.append(means)
    levels = torch.tensor([m for row in seen for m in row]).log()
    # Log-uniform over [2.55, 127.5]: the mean of the logs is the log of the geometric mean (18).
    assert abs(float(levels.mean()) - math.log(255 * math.sqrt(0.01 * 0.5))) < 0.2
    assert len({tuple(torch.argsort(torch.tensor(row)).tolist()) for row in seen if len(row) == 4}) > 15
    with pytest.raises(ValueError, match="need the cloud's labels"):
        jitter(points, torch.Generator().manual_seed(0))
