"""Predicted labels drawn over a nuScenes camera image by nuscenes-devkit.

`render_camera_overlay` writes the picture nuscenes-devkit draws from a predictions file: the
sample's LIDAR_TOP points projected into one camera's image, each coloured by its predicted class
(the devkit's ``render_pointcloud_in_image`` with ``show_lidarseg`` and ``lidarseg_preds_bin_path``).
The devkit reads a predictions file as *raw* lidarseg category indices, so the model's labels are
written as their classes' main categories (`seg3d.labelfiles.nuscenes_raw_labels`), whose devkit
colours are the classes' colours in `seg3d.classes.NUSCENES_LIDARSEG`. The picture has the camera
image's own size (the devkit's renderer draws on axes that fill a figure of that size) and is
written without opening a window.

A nuScenes folder without the lidarseg tables (``lidarseg.json``) is fine: predictions need no
ground truth, so the devkit object is given the official lidarseg category numbering
(`seg3d.classes.NUSCENES_RAW_CLASSES`) and its colours, which its own loader would have read from
the lidarseg tables.

nuscenes-devkit (the ``train`` extra) is imported only here, when an overlay is asked for;
`DevkitMissingError` says how to install it.
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from seg3d.classes import NUSCENES_LIDARSEG, NUSCENES_RAW_CLASSES, ClassTable
from seg3d.io import write_atomic
from seg3d.labelfiles import nuscenes_raw_labels

__all__ = [
    "DevkitMissingError",
    "NuScenesSample",
    "OverlayError",
    "find_version",
    "load_nuscenes",
    "render_camera_overlay",
    "resolve_sample",
]


class DevkitMissingError(ImportError):
    """nuscenes-devkit is not installed; the message says how to install it."""


class OverlayError(ValueError):
    """A nuScenes folder, sample or camera that cannot give an overlay; the message says why."""


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DevkitMissingError(
            "the camera overlay needs nuscenes-devkit (and its matplotlib and Pillow): "
            "pip install -e '.[train]' (or pip install nuscenes-devkit)"
        ) from exc


def find_version(root: Path) -> str:
    """The table folder of a nuScenes root (``v1.0-trainval``, ``v1.0-mini`` …): the one folder of
    ``root`` holding ``sample.json``.

    Raises:
        OverlayError: no such folder, or several (then name one with ``version``).
    """
    if not root.is_dir():
        raise OverlayError(f"nuScenes root {root} is not a folder")
    found = sorted(p.name for p in root.iterdir() if (p / "sample.json").is_file())
    if len(found) != 1:
        what = "no table folder (one with sample.json)" if not found else f"several table folders {found}"
        raise OverlayError(f"nuScenes root {root} has {what}: name one with --nuscenes-version")
    return found[0]


def load_nuscenes(root: str | Path, version: str | None = None) -> Any:
    """nuscenes-devkit's ``NuScenes`` of ``root`` (``version``: its table folder, found when None).

    Raises:
        DevkitMissingError: nuscenes-devkit is not installed.
        OverlayError: the folder or its tables cannot be loaded (the devkit's reason included).
    """
    module = _import("nuscenes.nuscenes")
    root = Path(root)
    version = version or find_version(root)
    try:
        return module.NuScenes(version=version, dataroot=str(root), verbose=False)
    except (AssertionError, OSError, KeyError, ValueError) as exc:
        raise OverlayError(
            f"nuscenes-devkit cannot load {root / version}: {exc or type(exc).__name__}"
        ) from exc


@dataclass(frozen=True)
class NuScenesSample:
    """A sample of a loaded data set: its token, LIDAR_TOP file and camera image files by channel."""

    token: str
    lidar: Path
    cameras: dict[str, Path]


def resolve_sample(nusc: Any, token: str, cameras: tuple[str, ...] = ("CAM_FRONT",)) -> NuScenesSample:
    """The files of sample ``token``; every one must exist and the sweep be a key frame.

    Raises:
        OverlayError: an unknown token, a channel the sample lacks, a missing file.
    """
    try:
        sample = nusc.get("sample", token)
    except KeyError:
        raise OverlayError(f"no sample {token!r} in the nuScenes tables of {nusc.dataroot}") from None
    root = Path(nusc.dataroot)
    files: dict[str, Path] = {}
    for channel in ("LIDAR_TOP", *cameras):
        if channel not in sample["data"]:
            raise OverlayError(f"sample {token} has no {channel}; it has {sorted(sample['data'])}")
        record = nusc.get("sample_data", sample["data"][channel])
        path = root / record["filename"]
        if not path.is_file():
            raise OverlayError(f"sample {token}: its {channel} file {path} is missing")
        files[channel] = path
    return NuScenesSample(token, files.pop("LIDAR_TOP"), files)


def _give_lidarseg_index(nusc: Any) -> None:
    """Give a devkit object loaded without lidarseg tables the official category numbering and
    colours, which its renderers look predictions up in (they need no ground truth)."""
    if hasattr(nusc, "lidarseg"):
        return
    colormap = _import("nuscenes.utils.color_map").get_colormap()
    nusc.lidarseg = []  # no ground truth: the renderers read the predictions file instead
    nusc.lidarseg_name2idx_mapping = {name: i for i, name in enumerate(NUSCENES_RAW_CLASSES)}
    nusc.lidarseg_idx2name_mapping = dict(enumerate(NUSCENES_RAW_CLASSES))
    nusc.colormap = {name: colormap[name] for name in NUSCENES_RAW_CLASSES}  # in index order


def render_camera_overlay(
    nusc: Any,
    sample: NuScenesSample,
    labels: npt.ArrayLike,
    classes: ClassTable,
    out: str | Path,
    camera: str = "CAM_FRONT",
    dot_size: float = 5.0,
) -> tuple[int, int]:
    """Write the devkit's picture of ``labels`` over ``camera``'s image of ``sample`` to ``out`` (PNG,
    atomically); returns its ``(width, height)``, the camera image's.

    Args:
        nusc: the loaded data set (`load_nuscenes`).
        sample: `resolve_sample` of the token, with ``camera`` among its cameras.
        labels: one label per point of ``sample.lidar``, in file order (`NUSCENES_LIDARSEG` indices).
        classes: the model's class table; only nuScenes-lidarseg classes can be drawn by the devkit.
        dot_size: the devkit's scatter dot size (points²).

    Raises:
        OverlayError: other classes, a label count that is not the sweep's point count, or a devkit
            failure (its message included).
    """
    if classes != NUSCENES_LIDARSEG:
        raise OverlayError(
            f"the nuScenes overlay draws nuScenes-lidarseg classes; this model has {classes.name}"
        )
    label = np.asarray(labels)
    points = sample.lidar.stat().st_size // (5 * 4)  # the devkit reads 5 float32 per point
    if label.shape != (points,):
        raise OverlayError(f"{sample.lidar} has {points} points but {label.shape} labels were given")
    _give_lidarseg_index(nusc)
    raw = nuscenes_raw_labels(label, nusc.lidarseg_name2idx_mapping)
    image = _import("PIL.Image")
    figure_module = _import("matplotlib.figure")
    agg = _import("matplotlib.backends.backend_agg")
    with image.open(sample.cameras[camera]) as picture:
        width, height = picture.size
    out = Path(out)
    fd, preds = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix="_lidarseg.bin")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw.tobytes())
        # A figure of the image's size in pixels (100 dpi), with axes filling it: no margins, no
        # resampling of the image; an Agg canvas of its own, so no window and no pyplot state.
        figure = figure_module.Figure(figsize=(width / 100, height / 100), dpi=100)
        agg.FigureCanvasAgg(figure)
        axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
        try:
            nusc.explorer.render_pointcloud_in_image(
                sample.token,
                dot_size=dot_size,
                camera_channel=camera,
                show_lidarseg=True,
                ax=axes,
                verbose=False,
                lidarseg_preds_bin_path=preds,
            )
        except (AssertionError, KeyError, ValueError, IndexError) as exc:
            raise OverlayError(f"nuscenes-devkit could not draw sample {sample.token}: {exc}") from exc
        axes.set_title("")
        axes.set_axis_off()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    finally:
        Path(preds).unlink(missing_ok=True)
    write_atomic(out, buffer.getvalue())
    return width, height
