"""Camera images for the 2D branch (`docs/architecture.md` §1.3, step 9), in torch without torchvision.

2DPASS resizes the 1600×900 nuScenes image to 400×240 (bilinear; the aspect ratio changes), jitters
brightness, contrast and saturation by 0.4, scales to [0, 1], flips horizontally with p = 0.5 and
normalises with the ImageNet statistics. Pixel coordinates of the projected points follow the same
resize (``floor(v)·240/900``, ``floor(u)·400/1600``, truncated) and flip (``col → W − 1 − col``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CameraImage", "ImageTransform", "load_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma weights, the grayscale that brightness/contrast/saturation jitter blend with.
_LUMA = (0.299, 0.587, 0.114)


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` resized (bilinear) to ``size = (width, height)``: ``(H, W, 3)`` uint8.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc


@dataclass(frozen=True)
class CameraImage:
    """A transformed image and the pixels its projected points read.

    Attributes:
        image: ``(3, H, W)`` float32, normalised.
        pixels: ``(M, 2)`` int64 ``(row, col)`` in ``image`` of each projected point.
        flipped: whether the image was mirrored (pixels already follow it).
    """

    image: torch.Tensor
    pixels: torch.Tensor
    flipped: bool


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1 - factor) * other).clamp_(0, 1)


def _gray(image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True)


@dataclass(frozen=True)
class ImageTransform:
    """Resize, jitter, flip and normalise one camera image, seedable.

    ``brightness``, ``contrast`` and ``saturation`` draw a factor in ``[1 − x, 1 + x]`` each and are
    applied in a random order, as torchvision's ``ColorJitter`` does (hue jitter is 0 in 2DPASS and
    not offered). Use ``ImageTransform.evaluation()`` for validation: no jitter, no flip.
    """

    size: tuple[int, int] = (400, 240)  # (width, height)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    flip_prob: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def evaluation(cls, size: tuple[int, int] = (400, 240)) -> ImageTransform:
        return cls(size=size, brightness=0.0, contrast=0.0, saturation=0.0, flip_prob=0.0)

    def scale_pixels(self, uv: np.ndarray, original_size: tuple[int, int]) -> torch.Tensor:
        """``(M, 2)`` int64 ``(row, col)`` in the resized image of original pixels ``uv = (u, v)``.

        2DPASS floors, rescales and truncates; ``uv`` inside ``(0, W) × (0, H)`` stays in range.
        """
        width, height = original_size
        new_width, new_height = self.size
        row = np.floor(uv[:, 1]) * new_height / height
        col = np.floor(uv[:, 0]) * new_width / width
        return torch.from_numpy(np.stack([row, col], axis=1).astype(np.int64))

    def __call__(self, image: np.ndarray, pixels: torch.Tensor, generator: torch.Generator) -> CameraImage:
        """Jitter, flip and normalise an already resized ``(H, W, 3)`` uint8 image."""
        height, width = image.shape[:2]
        if (width, height) != self.size:
            raise ValueError(
                f"image is {width}×{height}, the transform expects {self.size[0]}×{self.size[1]}"
            )
        out = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        jitters = [(0, self.brightness), (1, self.contrast), (2, self.saturation)]
        for kind, amount in (jitters[int(i)] for i in torch.randperm(3, generator=generator)):
            if amount <= 0:
                continue
            factor = 1 - amount + 2 * amount * float(torch.rand((), generator=generator))
            if kind == 0:
                out = _blend(out, torch.zeros_like(out), factor)
            elif kind == 1:
                out = _blend(out, _gray(out).mean().expand_as(out), factor)
            else:
                out = _blend(out, _gray(out).expand_as(out), factor)
        flipped = self.flip_prob > 0 and float(torch.rand((), generator=generator)) < self.flip_prob
        if flipped:
            out = out.flip(2)
            pixels = torch.stack([pixels[:, 0], width - 1 - pixels[:, 1]], dim=1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return CameraImage(image=(out - mean) / std, pixels=pixels, flipped=flipped)
