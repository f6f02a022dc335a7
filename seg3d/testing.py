"""Helpers for tests and benchmarks: where the real scans are, and deterministic random weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seg3d.io import read_points

__all__ = ["RealScan", "randomize_batchnorm", "real_data_dir", "real_scans", "synthetic_sweep"]

_REPO = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path | None:
    """The shared real-scan folder: ``$SEG3D_REAL_DATA``, else ``../shared/data/real`` beside the repo."""
    env = os.environ.get("SEG3D_REAL_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data" / "real")
    for candidate in candidates:
        if (candidate / "nuscenes").is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class RealScan:
    """One real scan converted to ``[x, y, z, intensity]`` in the nuScenes intensity scale (0–255)."""

    name: str
    kind: str  # "nuscenes", "kitti" or "semantickitti"
    path: Path
    points: torch.Tensor


def real_scans(
    kinds: tuple[str, ...] = ("nuscenes", "kitti", "semantickitti"), intensity_max: float = 255.0
) -> list[RealScan]:
    """Every real ``.bin`` scan of the requested kinds (empty when the folder is absent).

    Intensities are converted to the scale whose maximum is ``intensity_max`` (default the nuScenes
    0–255 scale, so that all scans share one scale).
    """
    root = real_data_dir()
    if root is None:
        return []
    found: list[RealScan] = []
    patterns = {  # kind -> (files, point format)
        "nuscenes": ("nuscenes/samples/LIDAR_TOP/*.pcd.bin", "nuscenes"),
        "kitti": ("kitti/object/training/velodyne*/*.bin", "kitti"),
        "semantickitti": ("semantickitti/sequences/*/velodyne/*.bin", "kitti"),
    }
    for kind in kinds:
        pattern, fmt = patterns[kind]
        for path in sorted(root.glob(pattern)):
            data = torch.from_numpy(read_points(path, fmt, intensity_max))
            found.append(RealScan(f"{kind}/{path.name}", kind, path, data))
    return found


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so folding is really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.8, 1.2, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)


def synthetic_sweep(num_points: int = 30_000, seed: int = 0, intensity_max: float = 255.0) -> torch.Tensor:
    """A ring-shaped stand-in sweep ``(N, 4)`` (x, y, z, intensity up to ``intensity_max``) for when no
    real scan is at hand."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(num_points, generator=g) * 2 * torch.pi
    radius = 3 + torch.rand(num_points, generator=g) * 40
    z = torch.rand(num_points, generator=g) * 3 - 2
    intensity = torch.rand(num_points, generator=g) * intensity_max
    return torch.stack([radius * angle.cos(), radius * angle.sin(), z, intensity], dim=1)
