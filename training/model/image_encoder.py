"""The 2D image encoder of modes ``2dpass`` and ``2ddata`` (`docs/architecture.md` §3).

A ResNet-34 backbone with the 2DPASS stem (7×7 conv at stride 1, so ``layer1`` works at /2 instead of
/4) and four decoders that bring ``layer1``..``layer4`` back to the input resolution with ``C``
channels each ("image scales" 2, 4, 8, 16).

`SmallBackbone` is a drop-in for the ResNet-34 (``BranchConfig.image_encoder: small``): the same four
maps at the same strides and widths, so the decoders and everything after them are unchanged, from a
plain conv-BN-ReLU stack with about 16× fewer parameters. ResNet-34 trained from scratch learns
little in a few hundred CPU steps; the small one is for experiments at that budget.

Every decoder ends with a nearest-neighbour upsampling, which is pure indexing: the full-resolution
map at pixel ``(r, c)`` equals the pre-upsampling map at ``(r // f, c // f)``. `ImageEncoder.forward`
returns the full-resolution maps (the spec's output); `ImageEncoder.forward_coarse` returns the maps
before that last step together with ``f``, which is what the training model samples: same values,
a fraction of the memory (four full maps of a 240×400 view at C = 256 are ~390 MB, with gradients
twice that, per view).

There is no CPU torchvision in this project, so the backbone is written here with torchvision's
module names, which lets `load_torchvision_resnet34` read an ImageNet ``resnet34`` state dict as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGE_BACKBONES",
    "IMAGE_SCALES",
    "RESNET34_BLOCKS",
    "SMALL_BACKBONE_PARAMETERS",
    "SMALL_WIDTHS",
    "BasicBlock",
    "CoarseMap",
    "Decoder",
    "ImageBackbone",
    "ImageEncoder",
    "PretrainedWeightsError",
    "ResNet34",
    "SmallBackbone",
    "load_torchvision_resnet34",
]

#: The 2D backbones `ImageEncoder` can be built with (``BranchConfig.image_encoder``).
ImageBackbone = Literal["resnet34", "small"]
IMAGE_BACKBONES: tuple[ImageBackbone, ...] = get_args(ImageBackbone)

#: Output stride of ``layer1``..``layer4`` with the stride-1 stem, i.e. the four image scales.
IMAGE_SCALES: tuple[int, ...] = (2, 4, 8, 16)
#: BasicBlocks per stage of ResNet-34.
RESNET34_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
_STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
#: The 2DPASS decoders have a 64-channel bottleneck before their transposed convolutions.
_DECODER_BOTTLENECK = 64
#: Widths of `SmallBackbone`'s stages (half of ResNet-34's); its stem has the first.
SMALL_WIDTHS: tuple[int, ...] = (32, 64, 128, 256)
#: Parameters of `SmallBackbone` (measured; ResNet-34 here has 21,284,672, 15.7× as many).
SMALL_BACKBONE_PARAMETERS = 1_358_496


class PretrainedWeightsError(ValueError):
    """An ImageNet state dict that does not fit the backbone; the message lists the offending keys."""


class BasicBlock(nn.Module):
    """``ReLU(BN(conv3(ReLU(BN(conv3(x))))) + shortcut(x))``, the ResNet-18/34 block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # torchvision's name and layout (``downsample.0`` conv, ``downsample.1`` BN): checkpoints load as is.
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + identity)


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    first = BasicBlock(in_channels, out_channels, stride)
    return nn.Sequential(first, *[BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)])


class ResNet34(nn.Module):
    """ResNet-34 without its classifier, with the 2DPASS stride-1 stem.

    ``forward`` returns the outputs of ``layer1``..``layer4`` (64, 128, 256, 512 channels at strides
    2, 4, 8, 16 of the input).
    """

    def __init__(self) -> None:
        super().__init__()
        # Same shape as torchvision's conv1 (only the stride differs), so ImageNet weights copy over.
        self.conv1 = nn.Conv2d(3, 64, 7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = (64, *_STAGE_WIDTHS)
        self.layer1 = _stage(widths[0], widths[1], RESNET34_BLOCKS[0], 1)
        self.layer2 = _stage(widths[1], widths[2], RESNET34_BLOCKS[1], 2)
        self.layer3 = _stage(widths[2], widths[3], RESNET34_BLOCKS[2], 2)
        self.layer4 = _stage(widths[3], widths[4], RESNET34_BLOCKS[3], 2)
        for module in self.modules():
            # torchvision's initialisation, for training from scratch (the 2DPASS default).
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(images))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SmallBackbone(nn.Module):
    """A small plain backbone with ResNet-34's outputs: 64, 128, 256, 512 channels at strides 2, 4, 8, 16.

    ``stem``: 3×3 conv at stride 2 (ResNet's stride-1 7×7 conv and max-pool also end at /2, but this
    never convolves at full resolution). ``layer1``..``layer4``: two 3×3 conv-BN-ReLU each at
    `SMALL_WIDTHS` (the first at stride 2 from ``layer2`` on, as ResNet's stages). ``lateral[i]``: a
    1×1 conv-BN-ReLU widening stage ``i`` to ResNet's width for its decoder; a side output, the next
    stage reads the narrow map. `SMALL_BACKBONE_PARAMETERS` parameters; the decoders that read it
    keep theirs (e.g. 5,149,248 at C = 256), as they see the same widths.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(3, SMALL_WIDTHS[0], 3, stride=2)
        strides = (1, 2, 2, 2)
        stages = []
        previous = SMALL_WIDTHS[0]
        for width, stride in zip(SMALL_WIDTHS, strides, strict=True):
            stages.append(
                nn.Sequential(_conv_bn_relu(previous, width, 3, stride), _conv_bn_relu(width, width, 3))
            )
            previous = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # ReLU'd like ResNet's stage outputs: the decoders see the same kind of input from either backbone.
        self.lateral = nn.ModuleList(
            [_conv_bn_relu(small, wide, 1) for small, wide in zip(SMALL_WIDTHS, _STAGE_WIDTHS, strict=True)]
        )
        for module in self.modules():
            # As ResNet34: He initialisation for ReLU networks trained from scratch.
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        features = []
        for stage, lateral in zip(
            (self.layer1, self.layer2, self.layer3, self.layer4), self.lateral, strict=True
        ):
            x = stage(x)
            features.append(lateral(x))
        return features


def _transposed(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """3×3 stride-2 transposed conv that exactly doubles H and W."""
    return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)


class Decoder(nn.Module):
    """One 2DPASS decoder: 7×7 conv (no bias) → ReLU → ``doublings`` × (ConvT s2 → ReLU) → nearest.

    ``body`` is everything before the final nearest upsampling; ``upsample`` is its factor.
    """

    def __init__(self, in_channels: int, out_channels: int, doublings: int, upsample: int) -> None:
        super().__init__()
        first_out = out_channels if doublings == 0 else _DECODER_BOTTLENECK
        layers: list[nn.Module] = [nn.Conv2d(in_channels, first_out, 7, padding=3, bias=False), nn.ReLU()]
        for i in range(doublings):
            last = i == doublings - 1
            layers += [_transposed(_DECODER_BOTTLENECK, out_channels if last else _DECODER_BOTTLENECK)]
            layers += [nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(x), scale_factor=self.upsample, mode="nearest")


class CoarseMap:
    """A decoder output before its nearest upsampling: full-resolution pixel ``(r, c)`` reads
    ``features[:, :, r // factor, c // factor]``."""

    __slots__ = ("factor", "features")

    def __init__(self, features: torch.Tensor, factor: int) -> None:
        self.features = features
        self.factor = factor

    def full(self) -> torch.Tensor:
        """The full-resolution map ``(V, C, H, W)``."""
        return F.interpolate(self.features, scale_factor=self.factor, mode="nearest")

    def sample(self, view: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """``(P, C)`` features of the full-resolution map at ``pixels`` (``(P, 2)`` row, col) of ``view``."""
        rows = torch.div(pixels[:, 0], self.factor, rounding_mode="floor")
        cols = torch.div(pixels[:, 1], self.factor, rounding_mode="floor")
        # Channels-last view: one advanced index picks whole C-vectors instead of C separate gathers.
        return self.features.permute(0, 2, 3, 1)[view, rows, cols]


class ImageEncoder(nn.Module):
    """Backbone + the four decoders D1..D4: images ``(V, 3, H, W)`` → 4 maps ``(V, C, H, W)``.

    ``backbone``: ``resnet34`` (`ResNet34`, the 2DPASS encoder) or ``small`` (`SmallBackbone`); both
    give the decoders the same inputs. ``H`` and ``W`` must be multiples of 16 (every decoder then
    lands exactly on the input size).
    """

    def __init__(self, channels: int, backbone: ImageBackbone = "resnet34") -> None:
        super().__init__()
        if backbone not in IMAGE_BACKBONES:
            raise ValueError(
                f"unknown image backbone {backbone!r}; choose one of {', '.join(IMAGE_BACKBONES)}"
            )
        self.backbone: ResNet34 | SmallBackbone = ResNet34() if backbone == "resnet34" else SmallBackbone()
        # (doublings by transposed conv, final nearest factor) per stage, from §3:
        # D1 /2 → ×2; D2 /4 → ×4; D3 /8 → ConvT → /4 → ×4; D4 /16 → ConvT, ConvT → /4 → ×4.
        shapes = ((0, 2), (0, 4), (1, 4), (2, 4))
        self.decoders = nn.ModuleList(
            [
                Decoder(width, channels, doublings, upsample)
                for width, (doublings, upsample) in zip(_STAGE_WIDTHS, shapes, strict=True)
            ]
        )
        self.channels = channels

    def forward_coarse(self, images: torch.Tensor) -> list[CoarseMap]:
        """The four decoder outputs before their nearest upsampling (image scales 2, 4, 8, 16)."""
        height, width = images.shape[-2:]
        if height % 16 or width % 16:
            raise ValueError(f"image height and width must be multiples of 16, got {height}×{width}")
        stages = self.backbone(images)
        return [
            CoarseMap(decoder.body(x), decoder.upsample)
            for decoder, x in zip(self.decoders, stages, strict=True)
        ]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Four full-resolution maps ``(V, C, H, W)``, image scales 2, 4, 8, 16."""
        return [m.full() for m in self.forward_coarse(images)]


def load_torchvision_resnet34(backbone: ResNet34, source: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load an ImageNet ``torchvision.models.resnet34`` state dict into ``backbone``.

    ``source`` is a file saved with ``torch.save(model.state_dict(), path)`` (read with
    ``weights_only=True``) or the mapping itself. The classifier (``fc.*``) is dropped; the stem conv
    weight is used unchanged (2DPASS copies it into its stride-1 conv). Every other key must match
    by name and shape.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        PretrainedWeightsError: not a mapping of tensors, or keys missing, unexpected or of another shape.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        origin = str(path)
    else:
        state, origin = source, "state dict"
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{origin}: expected a mapping of parameter names to tensors")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    # Older torchvision checkpoints predate BN's step counter; it only matters for momentum=None.
    state.update({k: v for k, v in own.items() if k.endswith(".num_batches_tracked") and k not in state})
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        raise PretrainedWeightsError(
            f"{origin} is not a torchvision resnet34 state dict: " + "; ".join(problems)
        )
    backbone.load_state_dict(state, strict=True)
