"""Acceptance: `table` equals the `spconv` reference at the full nuScenes config on real scans.

Same random weights (with non-trivial BatchNorm statistics), CPU, float32; the reference runs its
sparse convolutions single-threaded (spconv's CPU build races otherwise). The max |Δ| of each scan
is part of the test id's assertion message and printed with ``-rA``.
"""

from __future__ import annotations

import pytest
import torch

from seg3d.model import Encoder3D, fold_batchnorm
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans
from tests.helpers import randomize_batchnorm

pytestmark = pytest.mark.slow

SCANS = real_scans(("nuscenes",)) + real_scans(("semantickitti",))[:1]


@pytest.fixture(scope="module")
def models(full_config):
    pytest.importorskip("spconv.pytorch")
    torch.manual_seed(2024)
    table = Encoder3D(full_config, "table")
    randomize_batchnorm(table, seed=7)
    table.eval()
    reference = Encoder3D(full_config, "spconv")
    reference.load_state_dict(table.state_dict())
    return table, reference.eval(), fold_batchnorm(table)


@pytest.mark.skipif(not SCANS, reason="real scans not found in ../shared/data/real")
@pytest.mark.parametrize("scan", SCANS, ids=[s.name.split("/")[0] + ":" + s.path.stem for s in SCANS])
def test_table_matches_spconv_full_config(scan, models, full_config) -> None:
    table, reference, folded = models
    points = scan.points[crop_mask(scan.points[:, :3], full_config.grid)]
    inputs = prepare_inputs(points, full_config)
    with torch.no_grad():
        expected = reference(inputs)
        results = {"table": table(inputs), "table+folded-BN": folded(inputs)}
    scale = float(expected.abs().max())
    for label, logits in results.items():
        agreement = float((logits.argmax(1) == expected.argmax(1)).float().mean())
        diff = float((logits - expected).abs().max())
        report = (
            f"{scan.name} [{label}] N={points.shape[0]} V1={inputs.voxels[1].num_voxels}: "
            f"argmax agreement {agreement:.5%}, max |Δ| {diff:.3e} (max |logit| {scale:.3f})"
        )
        print(report)
        assert agreement >= 0.999, report
        assert diff <= 1e-4 * (1 + scale), report
