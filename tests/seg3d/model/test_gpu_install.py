"""What changes when the same code runs from a GPU install or under autocast, checked on CPU.

- A CUDA wheel of spconv picks ``ConvAlgo.MaskImplicitGemm`` for every conv built without ``algo``,
  and that algorithm asserts CUDA indices: the reference on CPU (export's parity check, the parity
  tests) would die. The wheel's choice is reproduced here by clearing the ``CPU_ONLY_BUILD`` flag
  that spconv's conv module reads.
- Under bf16 autocast every pooled mean must still be an fp32 mean (bf16 weights and bf16
  accumulation drift by ~0.5-1 %). CPU autocast runs the same dtype logic as CUDA's.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from seg3d.config import GridConfig, ModelConfig
from seg3d.model import Encoder3D
from seg3d.model.encoder import _scatter_mean
from seg3d.model.sparse_conv import TableSubMConv3d, make_subm_conv, present_tap_conv, run_spconv, tap_pairs
from seg3d.preprocess import build_segment_pool, neighbour_table, prepare_inputs, voxelize

GRID = GridConfig(point_range=((-4.0, 4.0), (-4.0, 4.0), (-1.0, 1.0)), spatial_shape=(40, 40, 10))


def _bf16_autocast() -> Any:
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


# --- 1. the spconv reference as a GPU install builds it ----------------------------------------


@pytest.fixture
def gpu_install(monkeypatch: pytest.MonkeyPatch) -> Any:
    """spconv's conv module as a CUDA wheel sees it (``CPU_ONLY_BUILD`` false); yields spconv.pytorch."""
    spconv = pytest.importorskip("spconv.pytorch", reason="spconv is the reference")
    import spconv.pytorch.conv as spconv_conv

    monkeypatch.setattr(spconv_conv, "CPU_ONLY_BUILD", False)
    return spconv


def _voxels(n: int = 2000) -> tuple[Any, int]:
    g = torch.Generator().manual_seed(5)
    xyz = (torch.rand((n, 3), generator=g) * 2 - 1) * torch.tensor([4.0, 4.0, 1.0])
    batch = torch.randint(0, 2, (n,), generator=g)
    return voxelize(xyz, batch, GRID, (1,))[0][1], 2


def test_gpu_install_default_algo_is_mask_implicit_gemm_and_fails_on_cpu(gpu_install: Any) -> None:
    """The premise: built without ``algo``, a GPU install's conv cannot run on CPU tensors."""
    spconv = gpu_install
    conv = spconv.SubMConv3d(8, 8, 3, bias=False, indice_key="k")
    assert conv.algo == spconv.ConvAlgo.MaskImplicitGemm
    vox, batches = _voxels(300)
    x = torch.randn(vox.num_voxels, 8)
    tensor = spconv.SparseConvTensor(x, vox.coords, vox.spatial_shape_zyx, batches)
    with pytest.raises(AssertionError), torch.no_grad():
        run_spconv(conv, tensor)


@pytest.mark.parametrize(("kernel", "bias"), [(3, False), (3, True), (1, False), (1, True)])
def test_reference_conv_is_native_krsc_and_runs_on_cpu_under_gpu_install(
    gpu_install: Any, kernel: int, bias: bool
) -> None:
    spconv = gpu_install
    reference = make_subm_conv("spconv", 8, 6, kernel, bias, "k")
    assert reference.algo == spconv.ConvAlgo.Native
    table = TableSubMConv3d(8, 6, kernel, bias=bias)
    # KRSC, and the very state dict of the table conv (names and shapes)
    state = reference.state_dict()
    assert state["weight"].shape == (6, kernel, kernel, kernel, 8)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in table.state_dict().items()}
    table.load_state_dict(state)
    vox, batches = _voxels()
    x = torch.randn((vox.num_voxels, 8))
    tensor = spconv.SparseConvTensor(x, vox.coords, vox.spatial_shape_zyx, batches)
    with torch.no_grad():
        expected = run_spconv(reference, tensor).features
        got = table(x, neighbour_table(vox.coords, vox.cells))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_reference_encoder_runs_on_cpu_under_gpu_install(gpu_install: Any, tiny_config: ModelConfig) -> None:
    spconv = gpu_install
    torch.manual_seed(0)
    table = Encoder3D(tiny_config, "table").eval()
    reference = Encoder3D(tiny_config, "spconv").eval()
    reference.load_state_dict(table.state_dict(), strict=True)
    algos = {m.algo for m in reference.modules() if isinstance(m, spconv.SubMConv3d)}
    assert algos == {spconv.ConvAlgo.Native}
    inputs = prepare_inputs(_points(3000), tiny_config)
    with torch.no_grad():
        a, b = table(inputs), reference(inputs)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --- 2. pooling under bf16 autocast ---------------------------------------------------------------


def _points(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    xyz = (torch.rand((n, 3), generator=g) * 2 - 1) * torch.tensor([8.0, 8.0, 1.5])
    return torch.cat([xyz, torch.rand((n, 1), generator=g) * 255], dim=1)


def _pool_case(weighted: bool) -> tuple[Any, torch.Tensor]:
    """A pool with crowded targets (up to ~250 sources) and overflow rows, and bf16-valued inputs."""
    g = torch.Generator().manual_seed(2)
    sources, targets = 6000, 60
    target = torch.randint(0, targets, (sources,), generator=g)
    weight = torch.rand(sources, generator=g) + 0.1 if weighted else None
    pool = build_segment_pool(torch.arange(sources), target, sources, targets, width=16, weight=weight)
    assert pool.overflow_targets.numel()
    x = (torch.randn((sources, 24), generator=g) + 3.0).to(torch.bfloat16)  # a mean far from 0
    return pool, x


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("form", ["apply", "apply_tables"])
def test_pool_under_bf16_autocast_is_an_fp32_mean(form: str, weighted: bool) -> None:
    pool, x = _pool_case(weighted)
    expected = getattr(pool, form)(x.float())  # the fp32 mean of the same (bf16-rounded) values
    assert expected.dtype == torch.float32
    with _bf16_autocast():
        got = getattr(pool, form)(x)
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32  # the mean keeps its precision; autocast casts where it needs


@pytest.mark.parametrize("form", ["apply", "apply_tables"])
def test_pool_of_bf16_without_autocast_accumulates_in_fp32(form: str) -> None:
    """A bf16 model outside autocast gets bf16 back, rounded once from the fp32 mean."""
    pool, x = _pool_case(weighted=True)
    got = getattr(pool, form)(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, getattr(pool, form)(x.float()).to(torch.bfloat16), rtol=0, atol=0)


def test_reference_scatter_mean_under_bf16_autocast_is_an_fp32_mean() -> None:
    g = torch.Generator().manual_seed(4)
    index = torch.randint(0, 20, (8000,), generator=g)  # ~400 rows per group: counts beyond bf16's 256
    values = (torch.randn((8000, 16), generator=g) + 3.0).to(torch.bfloat16)
    expected = _scatter_mean(values.float(), index, 20)
    with _bf16_autocast():
        got = _scatter_mean(values, index, 20)
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32
    plain = _scatter_mean(values, index, 20)
    assert plain.dtype == torch.bfloat16
    torch.testing.assert_close(plain, expected.to(torch.bfloat16), rtol=0, atol=0)


def test_pool_keeps_float64() -> None:
    pool, x = _pool_case(weighted=True)
    assert pool.apply(x.double()).dtype == torch.float64
    assert pool.apply_tables(x.double()).dtype == torch.float64


@pytest.mark.parametrize("present_taps", [False, True])
def test_table_encoder_runs_under_bf16_autocast(tiny_config: ModelConfig, present_taps: bool) -> None:
    torch.manual_seed(0)
    model = Encoder3D(tiny_config, "table").eval()
    model.present_taps = present_taps
    inputs = prepare_inputs(_points(4000), tiny_config)
    with torch.no_grad():
        exact = model(inputs)
        with _bf16_autocast():
            out = model.forward_features(inputs)
    assert out.logits.shape == exact.shape
    assert torch.isfinite(out.logits).all()
    scale = float(exact.abs().max())
    assert float((out.logits.float() - exact).abs().max()) < 0.05 * scale


# --- 3. device placement --------------------------------------------------------------------------


def test_table_encoder_creates_every_tensor_on_its_inputs_device(tiny_config: ModelConfig) -> None:
    """A forward on the 'meta' device: any tensor made on the CPU inside it would raise a device
    mismatch, as it would on CUDA (the CPU-only present-tap path is not meant for CUDA)."""
    model = Encoder3D(tiny_config, "table").to("meta").eval()
    inputs = prepare_inputs(_points(2000), tiny_config).to("meta")
    with torch.no_grad():
        out = model.forward_features(inputs)
    assert out.logits.device.type == "meta"
    assert out.logits.shape == (2000, tiny_config.num_classes)
    assert all(p.device.type == "meta" for p in out.point_features + out.voxel_features)


def test_present_tap_conv_under_bf16_autocast_sums_in_fp32() -> None:
    """Each row sums up to 27 bf16 products: the sum is float32, not a bf16 running sum."""
    voxels, _ = _voxels(6000)
    pairs = tap_pairs(neighbour_table(voxels.coords, voxels.cells))
    g = torch.Generator().manual_seed(11)
    x = torch.randn((voxels.num_voxels, 16), generator=g)
    weight = torch.randn((24, 3, 3, 3, 16), generator=g)
    with _bf16_autocast():
        out = present_tap_conv(x, pairs, weight)
    # the same bf16 products, summed in float32 by hand
    kernel = weight.permute(1, 2, 3, 4, 0).reshape(27, 16, 24).bfloat16()
    xb = x.bfloat16()
    expected = (xb @ kernel[13]).float()
    for tap, rows, src in zip(pairs.taps, pairs.rows, pairs.sources, strict=True):
        expected.index_add_(0, rows, (xb[src] @ kernel[tap]).float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
