"""Camera image transform: resize, jitter, flip, normalise, and the pixels that follow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.image import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, load_image


def _image(seed: int = 0, size: tuple[int, int] = (400, 240)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_evaluation_transform_only_normalises() -> None:
    image = _image()
    out = ImageTransform.evaluation()(image, torch.zeros(0, 2, dtype=torch.int64), torch.Generator())
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.image.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert not out.flipped


def test_flip_moves_pixels_with_the_image() -> None:
    image = _image(1)
    pixels = torch.tensor([[0, 0], [10, 399], [239, 123]])
    transform = ImageTransform(brightness=0, contrast=0, saturation=0, flip_prob=1.0)
    plain = ImageTransform.evaluation()(image, pixels, torch.Generator())
    flipped = transform(image, pixels, torch.Generator())
    assert flipped.flipped
    assert flipped.pixels.tolist() == [[0, 399], [10, 0], [239, 276]]
    # the feature a point reads is the same before and after the flip
    for (r0, c0), (r1, c1) in zip(plain.pixels.tolist(), flipped.pixels.tolist(), strict=True):
        assert torch.equal(plain.image[:, r0, c0], flipped.image[:, r1, c1])


def test_jitter_is_seeded_bounded_and_changes_the_image() -> None:
    image = _image(2)
    transform = ImageTransform(flip_prob=0)
    pixels = torch.zeros(0, 2, dtype=torch.int64)
    a = transform(image, pixels, torch.Generator().manual_seed(5)).image
    b = transform(image, pixels, torch.Generator().manual_seed(5)).image
    c = transform(image, pixels, torch.Generator().manual_seed(6)).image
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = ImageTransform.evaluation()(image, pixels, torch.Generator()).image
    assert not torch.allclose(a, plain)
    # back in [0, 1] before normalisation: jitter clamps
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    unnormalised = a * std + mean
    assert float(unnormalised.min()) >= -1e-6 and float(unnormalised.max()) <= 1 + 1e-6


def test_pixels_follow_the_2dpass_resize_rule() -> None:
    transform = ImageTransform()
    uv = np.array([[0.5, 0.5], [1599.9, 899.9], [800.7, 450.2], [3.99, 3.99]])
    pixels = transform.scale_pixels(uv, (1600, 900))
    # row = floor(v)·240/900, col = floor(u)·400/1600, truncated
    assert pixels.tolist() == [[0, 0], [239, 399], [120, 200], [0, 0]]
    inside = np.random.default_rng(0).uniform([0.001, 0.001], [1599.999, 899.999], (10_000, 2))
    scaled = transform.scale_pixels(inside, (1600, 900))
    assert int(scaled[:, 0].max()) <= 239 and int(scaled[:, 1].max()) <= 399 and int(scaled.min()) >= 0


def test_wrong_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="expects 400×240"):
        ImageTransform()(_image(size=(320, 240)), torch.zeros(0, 2, dtype=torch.int64), torch.Generator())


def test_load_image_resizes_and_names_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "cam.jpg"
    Image.fromarray(_image(3, (1600, 900))).save(path)
    assert load_image(path, (400, 240)).shape == (240, 400, 3)
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        load_image(tmp_path / "missing.jpg", (400, 240))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        load_image(broken, (400, 240))
