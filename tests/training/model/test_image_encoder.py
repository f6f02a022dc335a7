"""ResNet-34 (or the small backbone) + 2DPASS decoders: parameter counts, shapes, sampling, ImageNet
state-dict loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.model.image_encoder import (
    IMAGE_BACKBONES,
    SMALL_BACKBONE_PARAMETERS,
    ImageEncoder,
    PretrainedWeightsError,
    ResNet34,
    SmallBackbone,
    load_torchvision_resnet34,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_at_c256_match_the_spec() -> None:
    encoder = ImageEncoder(256)
    assert _count(encoder.backbone) == 21_284_672  # torchvision resnet34 (21,797,672) minus fc
    assert _count(encoder.decoders) == 5_149_248
    assert _count(encoder) == 26_433_920


def test_decoder_layers_as_specified() -> None:
    decoders = ImageEncoder(256).decoders
    convs = [[m for m in d.body if isinstance(m, torch.nn.Conv2d)] for d in decoders]
    transposed = [[m for m in d.body if isinstance(m, torch.nn.ConvTranspose2d)] for d in decoders]
    assert [len(t) for t in transposed] == [0, 0, 1, 2]
    assert [d.upsample for d in decoders] == [2, 4, 4, 4]
    for (conv,) in convs:
        assert conv.kernel_size == (7, 7) and conv.bias is None and conv.padding == (3, 3)
    for t in [t for ts in transposed for t in ts]:
        assert t.kernel_size == (3, 3) and t.stride == (2, 2) and t.bias is not None
        assert t.padding == (1, 1) and t.output_padding == (1, 1)
    stem = ImageEncoder(8).backbone.conv1
    assert stem.stride == (1, 1) and stem.kernel_size == (7, 7) and stem.bias is None


def test_four_full_resolution_maps() -> None:
    encoder = ImageEncoder(8).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        maps = encoder(images)
        stages = encoder.backbone(images)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 64, 96)] * 4
    assert [tuple(s.shape[1:]) for s in stages] == [(64, 32, 48), (128, 16, 24), (256, 8, 12), (512, 4, 6)]


@pytest.mark.parametrize("backbone", IMAGE_BACKBONES)
def test_sampling_the_coarse_maps_equals_reading_the_full_maps(backbone: str) -> None:
    encoder = ImageEncoder(8, backbone).eval()  # type: ignore[arg-type]
    images = torch.randn(3, 3, 32, 48)
    view = torch.tensor([0, 2, 1, 2, 0])
    pixels = torch.tensor([[0, 0], [31, 47], [17, 5], [8, 33], [30, 1]])
    with torch.no_grad():
        coarse = encoder.forward_coarse(images)
        full = encoder(images)
    for c, f in zip(coarse, full, strict=True):
        assert torch.equal(c.sample(view, pixels), f[view, :, pixels[:, 0], pixels[:, 1]])


def test_image_size_must_be_a_multiple_of_16() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        ImageEncoder(8)(torch.randn(1, 3, 40, 48))
    with pytest.raises(ValueError, match="multiples of 16"):
        ImageEncoder(8, "small")(torch.randn(1, 3, 48, 40))


def test_default_backbone_is_resnet34() -> None:
    assert isinstance(ImageEncoder(8).backbone, ResNet34)
    assert isinstance(ImageEncoder(8, "small").backbone, SmallBackbone)
    with pytest.raises(ValueError, match="unknown image backbone 'resnet18'"):
        ImageEncoder(8, "resnet18")  # type: ignore[arg-type]


def test_small_backbone_is_a_drop_in_for_resnet34() -> None:
    """Same input, same shapes everywhere the decoders and the branches look: the backbone stages,
    the coarse maps with their factors, the full maps."""
    torch.manual_seed(0)
    big, small = ImageEncoder(8).eval(), ImageEncoder(8, "small").eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(big.backbone(images), small.backbone(images), strict=True):
            assert a.shape == b.shape
        for a, b in zip(big.forward_coarse(images), small.forward_coarse(images), strict=True):
            assert a.features.shape == b.features.shape and a.factor == b.factor
        maps = small(images)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 64, 96)] * 4
    assert all(torch.isfinite(m).all() for m in maps)
    # the decoders are the ResNet-34 encoder's, layer for layer
    assert [tuple(p.shape) for p in big.decoders.parameters()] == [
        tuple(p.shape) for p in small.decoders.parameters()
    ]


def test_small_backbone_parameter_count() -> None:
    small, resnet = _count(SmallBackbone()), _count(ResNet34())
    assert small == SMALL_BACKBONE_PARAMETERS == 1_358_496
    assert resnet >= 10 * small  # 15.7×
    assert _count(ImageEncoder(256, "small")) == 1_358_496 + 5_149_248  # + the unchanged decoders


def _torchvision_like_state(seed: int) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's resnet34 format (with its classifier), random values."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in ResNet34().state_dict().items()}
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.randn_like(value)
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_loads_a_torchvision_state_dict_from_a_file(tmp_path: Path) -> None:
    state = _torchvision_like_state(1)
    del state["bn1.num_batches_tracked"]  # older torchvision files lack the BN step counters
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    backbone = ResNet34()
    load_torchvision_resnet34(backbone, path)
    loaded = backbone.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert torch.equal(loaded["layer3.5.bn2.running_var"], state["layer3.5.bn2.running_var"])
    assert torch.equal(loaded["layer4.0.downsample.0.weight"], state["layer4.0.downsample.0.weight"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("layer2.0.downsample.1.weight"), "missing .*layer2.0.downsample.1.weight"),
        (lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}), "unexpected .*layer5.0.conv1.weight"),
        (lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)}), r"shape mismatch .*conv1.weight"),
    ],
)
def test_bad_state_dicts_are_named(edit, message: str) -> None:
    state = _torchvision_like_state(2)
    edit(state)
    with pytest.raises(PretrainedWeightsError, match=message):
        load_torchvision_resnet34(ResNet34(), state)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ImageNet weights not found"):
        load_torchvision_resnet34(ResNet34(), tmp_path / "nope.pth")
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(PretrainedWeightsError, match="mapping"):
        load_torchvision_resnet34(ResNet34(), path)
