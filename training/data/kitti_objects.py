"""KITTI object frames: the Velodyne scan, its calibration and its ground-truth 3D boxes.

Layout (the KITTI 3D object benchmark): ``<training>/velodyne/<frame>.bin`` (4 float32: x, y, z,
remission 0–1, Velodyne frame), ``<training>/calib/<frame>.txt`` (``R0_rect`` 3×3 and
``Tr_velo_to_cam`` 3×4, row-major, among the projection matrices) and ``<training>/label_2/<frame>.txt``
(one object per line: type, truncation, occlusion, alpha, 2D box, then height, width, length in
metres, the bottom centre ``x, y, z`` in the rectified camera frame, and the yaw ``rotation_y``
about the camera's y axis, which points down). ``DontCare`` regions carry no 3D box and are skipped.

Boxes are compared in the rectified camera frame: a Velodyne point ``p`` is there at
``R0_rect · Tr_velo_to_cam · [p; 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["KittiBox", "KittiCalibration", "KittiObjectFrame", "object_frames", "points_in_box", "read_boxes"]


@dataclass(frozen=True)
class KittiCalibration:
    """The two matrices that take Velodyne points into the rectified camera frame."""

    r0_rect: npt.NDArray[np.float64]  # (3, 3)
    velo_to_cam: npt.NDArray[np.float64]  # (3, 4)

    @classmethod
    def read(cls, path: str | Path) -> KittiCalibration:
        """Parse a ``calib/<frame>.txt``.

        Raises:
            ValueError: ``R0_rect`` or ``Tr_velo_to_cam`` is missing or not 9 and 12 numbers.
        """
        path = Path(path)
        values: dict[str, list[float]] = {}
        for line in path.read_text().splitlines():
            key, sep, rest = line.partition(":")
            if sep:
                try:
                    values[key.strip()] = [float(v) for v in rest.split()]
                except ValueError as exc:
                    raise ValueError(f"{path}: {key.strip()} is not a list of numbers") from exc
        r0, tr = values.get("R0_rect"), values.get("Tr_velo_to_cam")
        if r0 is None or len(r0) != 9 or tr is None or len(tr) != 12:
            raise ValueError(
                f"{path}: not a KITTI object calibration (needs R0_rect: 9 and Tr_velo_to_cam: 12 numbers)"
            )
        return cls(np.array(r0).reshape(3, 3), np.array(tr).reshape(3, 4))

    def velo_to_rect(self, xyz: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        """``(N, 3)`` Velodyne points → ``(N, 3)`` points in the rectified camera frame."""
        xyz = np.asarray(xyz, dtype=np.float64)
        cam = xyz @ self.velo_to_cam[:, :3].T + self.velo_to_cam[:, 3]
        return np.asarray(cam @ self.r0_rect.T, dtype=np.float64)


@dataclass(frozen=True)
class KittiBox:
    """One ground-truth 3D box of ``label_2``."""

    kind: str  # Car, Van, Truck, Pedestrian, Person_sitting, Cyclist, Tram, Misc
    height: float
    width: float
    length: float
    bottom_centre: tuple[float, float, float]  # rectified camera frame, metres
    rotation_y: float  # yaw about the camera's y axis (down), radians


def read_boxes(path: str | Path) -> list[KittiBox]:
    """The 3D boxes of a ``label_2/<frame>.txt`` (``DontCare`` lines skipped).

    Raises:
        ValueError: a line with fewer than the 15 fields of the format.
    """
    path = Path(path)
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "DontCare":
            continue
        if len(fields) < 15:
            raise ValueError(f"{path}:{number}: {len(fields)} fields, a KITTI object label has 15")
        try:
            height, width, length, x, y, z, ry = (float(v) for v in fields[8:15])
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not a number among the box fields") from exc
        boxes.append(KittiBox(fields[0], height, width, length, (x, y, z), ry))
    return boxes


def points_in_box(rect_xyz: npt.NDArray[np.floating[Any]], box: KittiBox) -> npt.NDArray[np.bool_]:
    """``(N,)`` True for points (rectified camera frame) inside ``box``, faces included.

    The box's length runs along its local x, its width along local z and its height upward from
    the bottom centre (camera y points down, so from ``y - height`` to ``y``).
    """
    local = np.asarray(rect_xyz, dtype=np.float64) - np.asarray(box.bottom_centre)
    c, s = np.cos(box.rotation_y), np.sin(box.rotation_y)
    # Undo the yaw: a rotation by ``ry`` about y takes local (x, z) to (c·x + s·z, −s·x + c·z).
    x = c * local[:, 0] - s * local[:, 2]
    z = s * local[:, 0] + c * local[:, 2]
    y = local[:, 1]
    inside = (np.abs(x) <= box.length / 2) & (np.abs(z) <= box.width / 2) & (y <= 0) & (y >= -box.height)
    return np.asarray(inside, dtype=np.bool_)


@dataclass(frozen=True)
class KittiObjectFrame:
    """A frame with a scan, a calibration and boxes."""

    name: str
    scan: Path
    calibration: Path
    labels: Path


def object_frames(root: str | Path) -> list[KittiObjectFrame]:
    """The frames of a KITTI object folder (``training/`` or the folder that holds it) that have a
    scan, a calibration and a label file; frames lacking one of them are not listed.

    Raises:
        FileNotFoundError: no ``velodyne/`` folder under ``root`` or ``root/training``.
    """
    root = Path(root)
    folder = root / "training" if (root / "training" / "velodyne").is_dir() else root
    if not (folder / "velodyne").is_dir():
        raise FileNotFoundError(
            f"{root}: not a KITTI object folder "
            "(expected velodyne/, calib/ and label_2/ in it or in training/)"
        )
    frames = []
    for scan in sorted((folder / "velodyne").glob("*.bin")):
        calib, labels = folder / "calib" / f"{scan.stem}.txt", folder / "label_2" / f"{scan.stem}.txt"
        if calib.is_file() and labels.is_file():
            frames.append(KittiObjectFrame(scan.stem, scan, calib, labels))
    return frames
