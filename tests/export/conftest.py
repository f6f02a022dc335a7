"""Checkpoints for the export tests: a tiny encoder trained for a few steps, and a 2ddata-shaped one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seg3d.checkpoint import ENCODER_PREFIX, Checkpoint, save_checkpoint
from seg3d.config import ModelConfig
from seg3d.model import Encoder3D
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import RealScan


def corner_cloud(path: Path) -> Path:
    """Three points in a corner of the crop, written as a nuScenes ``.bin`` at ``path``: a
    calibration whose ranges are far too small for a real sweep (the int8 gate must refuse it)."""
    np.array(
        [[1.0, 1.0, -1.0, 10.0, 0.0], [1.1, 1.0, -1.0, 10.0, 0.0], [1.0, 1.1, -1.0, 10.0, 0.0]],
        dtype=np.float32,
    ).tofile(path)
    return path


def pseudo_labels(points: torch.Tensor) -> torch.Tensor:
    """Height/range classes of a real sweep: enough signal for a few SGD steps to move the weights."""
    z, r = points[:, 2], points[:, :2].norm(dim=1)
    labels = torch.full((points.shape[0],), 15)  # manmade
    labels[z < -1.4] = 11  # driveable_surface
    labels[(z >= -1.4) & (r > 25)] = 16  # vegetation
    return labels


def train_tiny(config: ModelConfig, scan: RealScan, steps: int = 6) -> Encoder3D:
    torch.manual_seed(1)
    model = Encoder3D(config, "table").train()
    points = scan.points[crop_mask(scan.points[:, :3], config.grid)][:12_000]
    inputs = prepare_inputs(points, config)
    labels = pseudo_labels(points)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, tiny_config, nuscenes_scans) -> Path:
    model = train_tiny(tiny_config, nuscenes_scans[0])
    path = tmp_path_factory.mktemp("ckpt") / "tiny_trained.pt"
    state = {ENCODER_PREFIX + k: v for k, v in model.state_dict().items()}
    save_checkpoint(
        path, Checkpoint(mode="3d", model_config=tiny_config, state_dict=state, training={"step": 6})
    )
    return path


@pytest.fixture(scope="session")
def ddata_checkpoint(tmp_path_factory, trained_checkpoint, tiny_config) -> Path:
    """The trained encoder plus 2D-encoder, LOB and auxiliary-head tensors, as a 2ddata run saves them."""
    base = torch.load(trained_checkpoint, weights_only=True)["state_dict"]
    g = torch.Generator().manual_seed(0)
    extra = {
        "image_encoder.stem.weight": torch.randn((64, 3, 7, 7), generator=g),
        "image_encoder.layer1.0.conv1.weight": torch.randn((64, 64, 3, 3), generator=g),
        "lob.fusion.0.weight": torch.randn((32, 64), generator=g),
        "lob.class_embedding.0.weight": torch.randn((6, 128), generator=g),
        "aux_heads.0.0.weight": torch.randn((128, 32), generator=g),
    }
    path = tmp_path_factory.mktemp("ckpt") / "tiny_2ddata.pt"
    save_checkpoint(path, Checkpoint(mode="2ddata", model_config=tiny_config, state_dict={**base, **extra}))
    return path
