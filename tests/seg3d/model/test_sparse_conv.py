"""The table convolution against spconv itself, one layer at a time."""

from __future__ import annotations

import pytest
import torch

from seg3d.config import GridConfig
from seg3d.model import sparse_conv
from seg3d.model.sparse_conv import (
    TableSubMConv3d,
    gather_conv,
    make_subm_conv,
    present_tap_conv,
    run_spconv,
    single_thread,
    tap_pairs,
)
from seg3d.preprocess import neighbour_table, voxelize

spconv = pytest.importorskip("spconv.pytorch", reason="spconv is the reference")

GRID = GridConfig(point_range=((-4.0, 4.0), (-4.0, 4.0), (-1.0, 1.0)), spatial_shape=(40, 40, 10))


def _cloud(n: int = 3000, batches: int = 2):
    g = torch.Generator().manual_seed(3)
    xyz = (torch.rand((n, 3), generator=g) * 2 - 1) * torch.tensor([4.2, 4.2, 1.1])  # some off-grid
    batch = torch.randint(0, batches, (n,), generator=g)
    vox = voxelize(xyz, batch, GRID, (1,))[0][1]
    return vox, batches


@pytest.mark.parametrize(
    ("kernel", "bias", "c_in", "c_out"),
    [(3, False, 8, 16), (3, True, 16, 8), (1, False, 12, 7), (1, True, 7, 12)],
)
def test_table_conv_equals_spconv(kernel: int, bias: bool, c_in: int, c_out: int) -> None:
    vox, batches = _cloud()
    reference = make_subm_conv("spconv", c_in, c_out, kernel, bias, "k")
    table = TableSubMConv3d(c_in, c_out, kernel, bias=bias)
    table.load_state_dict(reference.state_dict())  # same names, same KRSC shapes
    x = torch.randn((vox.num_voxels, c_in))
    with torch.no_grad():
        expected = run_spconv(
            reference, spconv.SparseConvTensor(x, vox.coords, vox.spatial_shape_zyx, batches)
        )
    expected = expected.features
    got = table(x, neighbour_table(vox.coords, vox.cells))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_one_by_one_follows_spconv_memory_view_not_a_transpose() -> None:
    """spconv 2.3 applies a 1×1×1 kernel as ``weight.view(C_in, C_out)``; a transpose would differ."""
    vox, batches = _cloud(200)
    reference = make_subm_conv("spconv", 5, 3, 1, False, "k")
    x = torch.randn((vox.num_voxels, 5))
    with torch.no_grad():
        out = reference(spconv.SparseConvTensor(x, vox.coords, vox.spatial_shape_zyx, batches)).features
    w = reference.weight.detach()
    torch.testing.assert_close(out, x @ w.reshape(5, 3))
    assert not torch.allclose(out, x @ w.reshape(3, 5).t())


def test_chunked_gather_equals_one_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    vox, _ = _cloud()
    x = torch.randn((vox.num_voxels, 8))
    w = torch.randn((4, 3, 3, 3, 8))
    table = neighbour_table(vox.coords, vox.cells)
    monkeypatch.setattr(sparse_conv, "GATHER_CHUNK_ELEMENTS", None)
    whole = gather_conv(x, table, w)
    monkeypatch.setattr(sparse_conv, "GATHER_CHUNK_ELEMENTS", 27 * 8 * 100)  # 100 rows per chunk
    torch.testing.assert_close(gather_conv(x, table, w), whole)


def test_single_thread_restores_thread_count() -> None:
    before = torch.get_num_threads()
    with single_thread(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_unknown_backend_and_kernel_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        make_subm_conv("cuda-magic", 2, 2, 3, False, "k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kernel sizes"):
        TableSubMConv3d(2, 2, 5)


@pytest.mark.parametrize("bias", [False, True])
def test_present_taps_equal_the_dense_gather_and_spconv(bias: bool) -> None:
    vox, batches = _cloud()
    reference = make_subm_conv("spconv", 8, 6, 3, bias, "k")
    x = torch.randn((vox.num_voxels, 8))
    table = neighbour_table(vox.coords, vox.cells)
    pairs = tap_pairs(table)
    # every present neighbour appears exactly once, under its own tap
    assert sum(r.numel() for r in pairs.rows) == int((table < vox.num_voxels).sum()) - vox.num_voxels
    b = reference.bias if bias else None
    with torch.no_grad():
        expected = run_spconv(
            reference, spconv.SparseConvTensor(x, vox.coords, vox.spatial_shape_zyx, batches)
        )
        fast = present_tap_conv(x, pairs, reference.weight, b)
        dense = gather_conv(x, table, reference.weight, b)
    torch.testing.assert_close(fast, expected.features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, dense, atol=1e-5, rtol=1e-5)


def test_spconvs_fx_probe_warning_is_silenced_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    """torch warns once when spconv calls is_fx_tracing(); seg3d drops that one message only."""
    import logging

    import seg3d.model.sparse_conv  # noqa: F401  (installs the filter)

    logger = logging.getLogger("torch.fx._symbolic_trace")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("is_fx_tracing will return true for both fx.symbolic_trace and torch.export.")
        logger.warning("another torch.fx warning")
    assert [r.getMessage() for r in caplog.records] == ["another torch.fx warning"]
