"""seg3d: the 2DPASS 3D encoder and its one shared preprocessing.

`training`, `export` and `serve` all import this package; it never imports them, and it holds
nothing of the 2D image encoder or the fusion branches (those live in `training`).

- `seg3d.config`      typed model configuration (pydantic, loaded from YAML)
- `seg3d.classes`     the class tables (names, order, ignore index, colours), one per data set
- `seg3d.points`      point formats and the one reader of point files and request bodies
- `seg3d.preprocess`  crop, multi-scale voxelization, point features, neighbour and pooling tables
- `seg3d.model`       the encoder with its two sparse-conv backends (`spconv`, `table`) and BN folding
- `seg3d.postprocess` one label per input point from the in-crop predictions
- `seg3d.checkpoint`  the training checkpoint format and `load_encoder`
- `seg3d.manifest`    the typed export manifest, with artifact verification
- `seg3d.scans`       sample clouds: the real scans beside the repository, synthetic sweeps
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "seg3d needs PyTorch. Install with the CPU extra (pip install -e '.[cpu]', which pins the "
        "torch==2.13.0 CPU build) or on a host that already has a CUDA build of torch."
    ) from exc

__version__ = "0.1.0"
