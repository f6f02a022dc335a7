"""Sample clouds for checks that need one: the real scans beside the repository, or a synthetic sweep.

Export's parity check, the service's warm-up, ``python -m seg3d smoke``, the benchmarks and the tests
all take their clouds from here. Real scans are read with the one point reader (`seg3d.points`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from seg3d.points import PointFormat, read_points

__all__ = ["RealDataError", "RealScan", "real_data_dir", "real_scans", "synthetic_sweep"]

_REPO = Path(__file__).resolve().parent.parent


class RealDataError(FileNotFoundError):
    """``$SEG3D_REAL_DATA`` is set but does not name a real-scan folder."""


def real_data_dir() -> Path | None:
    """The shared real-scan folder: ``$SEG3D_REAL_DATA``, else ``../shared/data/real`` beside the repo.

    Returns None when the variable is unset (or empty) and the default folder is absent.

    Raises:
        RealDataError: ``$SEG3D_REAL_DATA`` is set but has no ``nuscenes/`` folder; a mistyped path is
            reported instead of silently falling back to the default folder.
    """
    env = os.environ.get("SEG3D_REAL_DATA")
    if env:
        chosen = Path(env)
        if not (chosen / "nuscenes").is_dir():
            what = "does not exist" if not chosen.exists() else "has no nuscenes/ folder"
            raise RealDataError(
                f"SEG3D_REAL_DATA={env} is not a real-scan folder: it {what} (expected the layout of "
                "../shared/data/real: nuscenes/, kitti/, semantickitti/); fix it or unset it"
            )
        return chosen
    default = _REPO.parent / "shared" / "data" / "real"
    return default if (default / "nuscenes").is_dir() else None


@dataclass(frozen=True)
class RealScan:
    """One real scan as ``[x, y, z, intensity]``, intensity in the scale `real_scans` was asked for."""

    name: str
    kind: str  # "nuscenes", "kitti", "semantickitti"; export parity: a point format or "synthetic"
    path: Path
    points: torch.Tensor


def real_scans(
    kinds: tuple[str, ...] = ("nuscenes", "kitti", "semantickitti"), intensity_max: float = 255.0
) -> list[RealScan]:
    """Every real ``.bin`` scan of the requested kinds (empty when the folder is absent).

    Raises `RealDataError` when ``$SEG3D_REAL_DATA`` names no real-scan folder (see `real_data_dir`).

    Intensities are converted to the scale whose maximum is ``intensity_max`` (default the nuScenes
    0–255 scale, so that all scans share one scale).
    """
    root = real_data_dir()
    if root is None:
        return []
    found: list[RealScan] = []
    patterns = {  # kind -> (files, point format)
        "nuscenes": ("nuscenes/samples/LIDAR_TOP/*.pcd.bin", PointFormat.NUSCENES),
        "kitti": ("kitti/object/training/velodyne*/*.bin", PointFormat.KITTI),
        "semantickitti": ("semantickitti/sequences/*/velodyne/*.bin", PointFormat.KITTI),
    }
    for kind in kinds:
        pattern, fmt = patterns[kind]
        for path in sorted(root.glob(pattern)):
            data = torch.from_numpy(read_points(path, fmt, intensity_max))
            found.append(RealScan(f"{kind}/{path.name}", kind, path, data))
    return found


def synthetic_sweep(num_points: int = 30_000, seed: int = 0, intensity_max: float = 255.0) -> torch.Tensor:
    """A ring-shaped stand-in sweep ``(N, 4)`` (x, y, z, intensity up to ``intensity_max``) for when no
    real scan is at hand."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(num_points, generator=g) * 2 * torch.pi
    radius = 3 + torch.rand(num_points, generator=g) * 40
    z = torch.rand(num_points, generator=g) * 3 - 2
    intensity = torch.rand(num_points, generator=g) * intensity_max
    return torch.stack([radius * angle.cos(), radius * angle.sin(), z, intensity], dim=1)
