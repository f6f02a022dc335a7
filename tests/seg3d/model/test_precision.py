"""BF16 inference of the `table` encoder: weights converted once at load, no per-call weight casts,
float32 pool sums and logits, and labels that agree with float32 on real scans (demo model)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from seg3d.checkpoint import ENCODER_PREFIX, Checkpoint, load_checkpoint, load_encoder
from seg3d.config import ModelConfig
from seg3d.model import Encoder3D, fold_batchnorm, labels_from_logits, to_half
from seg3d.model.precision import FP32_PARAMETERS, native_bf16_cpu, weight_dtypes
from seg3d.preprocess import EncoderInputs, crop_mask, prepare_inputs
from seg3d.scans import real_scans
from tests.helpers import randomize_batchnorm

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo" / "encoder3d.pt"
#: Ops that copy or convert a tensor: none may read a weight during a forward pass.
COPIES = {"_to_copy", "to", "clone", "copy_", "_reshape_copy", "contiguous", "_copy_from"}


def _checkpoint(config: ModelConfig) -> Checkpoint:
    torch.manual_seed(3)
    model = Encoder3D(config, "table")
    randomize_batchnorm(model, seed=1)
    return Checkpoint("3d", config, {ENCODER_PREFIX + k: v for k, v in model.state_dict().items()})


def _cloud(config: ModelConfig, n: int = 6000) -> EncoderInputs:
    g = torch.Generator().manual_seed(0)
    angle = torch.rand(n, generator=g) * 6.283
    radius = 3 + torch.rand(n, generator=g) * 30
    points = torch.stack(
        [
            radius * angle.cos(),
            radius * angle.sin(),
            torch.rand(n, generator=g) * 3 - 2,
            torch.rand(n, generator=g) * 255,
        ],
        dim=1,
    )
    return prepare_inputs(points[crop_mask(points[:, :3], config.grid)], config)


class _Recorder(TorchDispatchMode):
    """Every op that reads a parameter (or a view of one), with the dtypes of its tensor arguments;
    and the dtype of every ``index_add`` accumulator."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__()
        self.storages = {p.untyped_storage().data_ptr() for p in params}
        self.on_weights: list[tuple[str, tuple[torch.dtype, ...]]] = []
        self.accumulators: list[torch.dtype] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if any(t.untyped_storage().data_ptr() in self.storages for t in tensors):
            self.on_weights.append((name, tuple(t.dtype for t in tensors)))
        if name.startswith("index_add"):
            self.accumulators.append(args[0].dtype)
        return func(*args, **kwargs)


def _record(model: Encoder3D, run: Callable[[], torch.Tensor]) -> tuple[_Recorder, torch.Tensor]:
    recorder = _Recorder(list(model.parameters()))
    with torch.no_grad(), recorder:
        out = run()
    return recorder, out


@pytest.fixture(scope="module")
def bf16_tiny(tiny_config: ModelConfig) -> tuple[Encoder3D, Encoder3D]:
    checkpoint = _checkpoint(tiny_config)
    return load_encoder(checkpoint, fold=True), load_encoder(checkpoint, fold=True, precision="bf16")


def test_weights_are_stored_in_bf16_at_load(bf16_tiny: tuple[Encoder3D, Encoder3D]) -> None:
    fp32, bf16 = bf16_tiny
    assert bf16.precision == "bf16" and fp32.precision == "fp32" and "precision='bf16'" in repr(bf16)
    dtypes = {name: p.dtype for name, p in bf16.named_parameters()}
    assert {n for n, d in dtypes.items() if d == torch.float32} == FP32_PARAMETERS
    assert {d for n, d in dtypes.items() if n not in FP32_PARAMETERS} == {torch.bfloat16}
    assert list(bf16.buffers()) == []  # folded: no BN statistics, no float32 shadow of anything
    # The float32 tensors were replaced, not kept: the model holds bf16 bytes for every other weight.
    kept = sum(p.numel() * p.element_size() for p in bf16.parameters())
    fp32_bytes = sum(p.numel() * 4 for p in fp32.parameters())
    small = sum(p.numel() for n, p in fp32.named_parameters() if n in FP32_PARAMETERS)
    assert kept == (fp32_bytes - 4 * small) // 2 + 4 * small
    # Weights are the fp32 ones rounded once (folding ran in float64 before).
    for (name, a), b in zip(fp32.named_parameters(), bf16.parameters(), strict=True):
        assert torch.equal(a.to(b.dtype), b), name


def test_the_forward_never_casts_or_copies_a_weight(
    bf16_tiny: tuple[Encoder3D, Encoder3D], tiny_config: ModelConfig
) -> None:
    fp32, bf16 = bf16_tiny
    inputs = _cloud(tiny_config)
    recorder, logits = _record(bf16, lambda: bf16(inputs))
    assert logits.dtype == torch.float32
    names = {name for name, _ in recorder.on_weights}
    assert not names & COPIES, sorted(names & COPIES)
    assert not torch.is_autocast_enabled("cpu")
    # Every MatMul that reads a bf16 weight multiplies a bf16 activation (no silent promotion).
    products = [d for name, d in recorder.on_weights if name in {"mm", "addmm", "linear", "matmul"}]
    bf16_products = [d for d in products if torch.bfloat16 in d]
    assert bf16_products and all(set(d) == {torch.bfloat16} for d in bf16_products), bf16_products
    # Only the embedding's fc1 and the head's last layer multiply in float32.
    assert len(products) - len(bf16_products) == 2, products

    # The negative control: autocast on the float32 model casts weights on every call, and is seen.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast, _ = _record(fp32, lambda: fp32(inputs))
    assert "_to_copy" in {name for name, _ in autocast.on_weights}


def test_pool_and_tap_sums_accumulate_in_float32(
    bf16_tiny: tuple[Encoder3D, Encoder3D], tiny_config: ModelConfig
) -> None:
    _, bf16 = bf16_tiny
    inputs = _cloud(tiny_config)
    recorder, _ = _record(bf16, lambda: bf16(inputs))
    # point pool, context and down pools, and every present-tap conv's tap sum
    assert len(recorder.accumulators) > 10
    assert set(recorder.accumulators) == {torch.float32}


def test_bf16_follows_fp32_on_a_synthetic_cloud(
    bf16_tiny: tuple[Encoder3D, Encoder3D], tiny_config: ModelConfig
) -> None:
    fp32, bf16 = bf16_tiny
    inputs = _cloud(tiny_config)
    with torch.no_grad():
        a, b = fp32(inputs), bf16(inputs)
    relative = float((a - b).norm() / a.norm())
    assert relative < 0.05, relative  # bf16 has 8 significant bits; 12 convs deep


def test_bf16_refuses_what_it_cannot_run(tiny_config: ModelConfig) -> None:
    checkpoint = _checkpoint(tiny_config)
    with pytest.raises(ValueError, match="fold"):
        load_encoder(checkpoint, precision="bf16")
    with pytest.raises(ValueError, match="table"):
        load_encoder(checkpoint, "spconv", fold=True, precision="bf16")
    with pytest.raises(ValueError, match="folded"):
        to_half(Encoder3D(tiny_config, "table").eval())
    folded = fold_batchnorm(Encoder3D(tiny_config, "table").eval())
    assert to_half(to_half(folded)).precision == "bf16"  # idempotent
    with pytest.raises(ValueError, match="already bf16"):
        to_half(folded, "fp16")
    with pytest.raises(ValueError, match="not 'fp32'"):
        to_half(fold_batchnorm(Encoder3D(tiny_config, "table").eval()), "fp32")


def test_fp16_is_refused_on_cpu_and_keeps_the_float32_layers(tiny_config: ModelConfig) -> None:
    """fp16 serves on CUDA only (bench/gpu.py runs it there); the conversion itself is
    device-independent, so what it stores is checked here."""
    checkpoint = _checkpoint(tiny_config)
    with pytest.raises(ValueError, match="CUDA device only"):
        load_encoder(checkpoint, fold=True, precision="fp16")
    half = to_half(fold_batchnorm(Encoder3D(tiny_config, "table").eval()), "fp16")
    dtypes = weight_dtypes(half)
    assert {n for n, d in dtypes.items() if d == torch.float32} == FP32_PARAMETERS
    assert {d for n, d in dtypes.items() if n not in FP32_PARAMETERS} == {torch.float16}


def test_this_cpu_runs_bf16_matmuls_natively() -> None:
    """Reported, not required: without AVX512-BF16/AMX, bf16 is emulated (and slower than fp32)."""
    if not native_bf16_cpu():
        pytest.skip("no native bf16 MatMul on this CPU (oneDNN)")
    assert torch.backends.mkldnn.is_available()


def test_bf16_labels_agree_with_fp32_on_real_scans_with_the_demo_model() -> None:
    """The accuracy gate: trained weights (the bundled demo model), every real nuScenes sweep."""
    checkpoint = load_checkpoint(DEMO)
    config = checkpoint.model_config
    scans = real_scans(("nuscenes",), intensity_max=config.input.intensity_max)
    if not scans:
        pytest.skip("real nuScenes scans not found (set SEG3D_REAL_DATA or place ../shared/data/real)")
    fp32 = load_encoder(checkpoint, fold=True)
    bf16 = load_encoder(checkpoint, fold=True, precision="bf16")
    for scan in scans:
        points = scan.points[crop_mask(scan.points[:, :3], config.grid)]
        inputs = prepare_inputs(points, config)
        with torch.inference_mode():
            a = labels_from_logits(fp32(inputs), config.ignore_index)
            b = labels_from_logits(bf16(inputs), config.ignore_index)
        agreement = float((a == b).double().mean())
        assert agreement >= 0.995, (scan.name, agreement)
