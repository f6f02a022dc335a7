"""seg3d: the 2DPASS 3D encoder and its one shared preprocessing.

`training`, `export` and `serve` all import this package; it never imports them, and it holds
nothing of the 2D image encoder or the fusion branches (those live in `training`).

- `seg3d.config`      typed model configuration (pydantic, loaded from YAML)
- `seg3d.pointcloud`  validation of raw point arrays
- `seg3d.preprocess`  crop, multi-scale voxelization, point features, neighbour and pooling tables
- `seg3d.model`       the encoder with its two sparse-conv backends (`spconv`, `table`) and BN folding
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "seg3d needs PyTorch. Install with the CPU extra (pip install -e '.[cpu]', which pins the "
        "torch==2.13.0 CPU build) or on a host that already has a CUDA build of torch."
    ) from exc

__version__ = "0.1.0"
