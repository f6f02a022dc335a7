"""One training step of every mode at the full nuScenes configuration (C = 256, 6 scales) on CPU.

Each mode runs in its own process so that its peak RSS is its own. The sample is a real nuScenes
sweep when the shared scans are present (else the synthetic stand-in), cropped to the grid (~32 k
points), with a 240×400 image and a few boxes on the toy front camera of `samples`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seg3d.config import load_config
from seg3d.scans import real_scans, synthetic_sweep
from training.data.batch import collate
from training.model import BranchConfig, build_training_model

from .samples import make_sample

ROOT = Path(__file__).resolve().parents[3]
RSS_LIMIT_GIB = 24.0


def probe(mode: str) -> dict[str, float]:
    """Build the full model of ``mode``, run forward + backward once; times (s) and peak RSS (GiB)."""
    torch.manual_seed(0)
    config = load_config("nuscenes_full")
    scans = real_scans(("nuscenes",))
    cloud = scans[0].points if scans else synthetic_sweep(34_000)
    start = time.perf_counter()
    batch = collate([make_sample("full", cloud, config, 240, 400, num_boxes=5, seed=0)], config)
    collated = time.perf_counter()
    model = build_training_model(config, BranchConfig(mode=mode))  # type: ignore[arg-type]
    built = time.perf_counter()
    out = model(batch)
    forward = time.perf_counter()
    out.loss.backward()
    backward = time.perf_counter()
    grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert batch.views is not None
    return {
        "points": batch.points.shape[0],
        "projected": int(batch.views.point_index.numel()),
        "selected": int((batch.views.point_box >= 0).sum()),
        "scale1_voxels": batch.inputs.voxels[1].num_voxels,
        "collate_s": collated - start,
        "forward_s": forward - built,
        "backward_s": backward - forward,
        "loss": out.terms["total"],
        "grads_finite": float(grads_finite),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["3d", "2dpass", "2ddata"])
def test_full_config_step_fits_in_memory(mode: str, record_property) -> None:
    code = (
        "import json; from tests.training.model.test_full_config import probe; "
        f"print(json.dumps(probe({mode!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    for key, value in stats.items():
        record_property(key, value)
    print(f"{mode}: {stats}")
    assert stats["grads_finite"] == 1.0 and stats["loss"] == stats["loss"]  # finite, not NaN
    assert stats["points"] >= 25_000 and stats["selected"] > 0
    assert stats["peak_rss_gib"] < RSS_LIMIT_GIB
