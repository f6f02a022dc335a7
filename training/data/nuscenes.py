"""nuScenes-lidarseg through nuscenes-devkit: points, labels, one (or every) camera, 2D boxes.

The pipeline of `docs/architecture.md` §1.3–§1.5 and §5.2, per keyframe sample:

1. LIDAR_TOP points (x, y, z, intensity in the model's scale, read by `seg3d.points.read_points`)
   and the lidarseg labels, mapped 32 → 16 by category *name* (ignore = 0);
2. one camera picked at random (seedable) in 2DPASS's order, or all six;
3. the crop (strict), then point dropout (training), which overwrites points by a copy of point 0;
4. the projection of the *un-augmented* points into the camera(s) (depth > 0, strictly inside the
   image); with all six cameras, the first camera that sees a point takes it;
5. the 2D boxes of the interest classes, projected from the ground-truth 3D boxes (fully visible
   by default, or clipped), and the box of each projected point (nearest centre depth);
6. the 3D augmentation of the coordinates the network sees (training);
7. the image resized to 400×240, jittered, flipped and normalised; pixels follow.

Steps 2 and 7 draw from a per-sample camera stream, steps 3 and 6 (and the optional intensity
randomisation) from a point stream of their own (`NuScenesDataset.streams`), so every camera setting,
``none`` included, sees the same point augmentation of a sample in an epoch.

The devkit is used once, to build a light index of every sample (file paths, calibration, boxes);
``__getitem__`` reads files only, so DataLoader workers do not carry the devkit's tables. Splits are
the devkit's own (``nuscenes.utils.splits``), by scene name, so the same code runs on the real
dataset and on the synthetic one (`training.data.synthetic`), which uses real scene names.
`NuScenesDataset` implements `training.data.protocol.TrainingDataset` (file points, labels and the
submission file name of each sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.utils.data import Dataset

from seg3d.classes import NUSCENES_INTEREST_CATEGORIES, NUSCENES_RAW_CLASSES, nuscenes_train_id
from seg3d.config import ModelConfig
from seg3d.points import PointFormat, read_points
from seg3d.preprocess import crop_mask
from training.data.augment import Augment3D, IntensityAugment, PointDropout
from training.data.image import ImageTransform, load_image
from training.data.nuscenes_geometry import (
    Box2D,
    assign_to_boxes,
    box_to_2d,
    lidar_to_camera,
    project_to_image,
)
from training.data.sample import CameraView, LidarSample

__all__ = [
    "CAMERAS",
    "CAMERA_STREAM_OFFSET",
    "INTEREST_CLASSES",
    "NUSCENES_TABLES",
    "NuScenesDataset",
    "NuScenesOptions",
    "check_nuscenes_layout",
    "generator_command",
    "layout_hint",
    "version_splits",
]

#: The six cameras in 2DPASS's order (a random pick draws an index into this tuple).
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")

#: The 2DDATA paper's interest classes (`seg3d.classes`): the Local Object Branch's box categories.
INTEREST_CLASSES = NUSCENES_INTEREST_CATEGORIES

#: Offset from a sample's point stream seed to its camera stream seed (`NuScenesDataset.streams`):
#: 2⁶¹ − 1, odd and far above any ``seed + epoch·len + index`` a run reaches, so no camera stream
#: ever reuses the seed of some sample's point stream.
CAMERA_STREAM_OFFSET = 2**61 - 1

#: Every table ``nuscenes.NuScenes`` loads; lidarseg adds ``lidarseg.json``.
NUSCENES_TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)

SPLITS = ("train", "val", "test", "mini_train", "mini_val")


class NuScenesOptions(BaseModel):
    """What the nuScenes loader reads and how (a section of the training config).

    Attributes:
        version: table folder under the data root (``v1.0-trainval``, ``v1.0-mini``, ``v1.0-test``).
        split: devkit split of scenes; must belong to the version (``mini_*`` for ``v1.0-mini``).
        cameras: ``random`` (one per sample, 2DPASS), ``all`` (every channel), or ``none`` (3D
            only: no image is read).
        channels: the cameras to use, a subset of `CAMERAS` kept in its order.
        interest_classes: box categories that get 2D boxes (raw nuScenes names).
        boxes: ``visible`` keeps fully visible boxes (2DDATA's code); ``clipped`` also keeps
            partly visible boxes, clipped to the image.
        image_size: ``(width, height)`` the image is resized to (multiples of 16).
        point_dropout: maximum dropout ratio at training time (0 disables it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "v1.0-trainval"
    split: Literal["train", "val", "test", "mini_train", "mini_val"] = "train"
    cameras: Literal["random", "all", "none"] = "random"
    channels: tuple[str, ...] = CAMERAS
    interest_classes: tuple[str, ...] = INTEREST_CLASSES
    boxes: Literal["visible", "clipped"] = "visible"
    image_size: tuple[int, int] = (400, 240)
    point_dropout: float = Field(0.2, ge=0, lt=1)

    @field_validator("interest_classes")
    @classmethod
    def _known_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in NUSCENES_RAW_CLASSES]
        if unknown:
            raise ValueError(f"unknown nuScenes categories {unknown}; use names such as 'vehicle.car'")
        if len(set(value)) != len(value):
            raise ValueError(f"interest_classes has duplicates: {list(value)}")
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(c not in CAMERAS for c in value):
            raise ValueError(f"channels {list(value)} must be a non-empty subset of {list(CAMERAS)}")
        return tuple(c for c in CAMERAS if c in value)

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(n <= 0 or n % 16 for n in value):
            raise ValueError(f"image_size {value} must be positive multiples of 16 (the 2D encoder's stride)")
        return value


def check_nuscenes_layout(root: str | Path, version: str, lidarseg: bool = True) -> Path:
    """The table folder ``root/version`` after checking every table the loader needs is there.

    Raises:
        FileNotFoundError: naming the missing folder or table, before the devkit fails with a bare
            assertion, and saying how to fix it (`layout_hint`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"nuScenes data root not found: {root}. Point --data-root at a nuScenes root (samples/, "
            f"lidarseg/ and the {version} table folder), or generate a synthetic one: "
            f"{generator_command(root, version)}"
        )
    tables = root / version
    if not tables.is_dir():
        raise FileNotFoundError(
            f"{root} is not a nuScenes {version} layout: table folder {tables} is missing. "
            + layout_hint(root, version)
        )
    needed = [*NUSCENES_TABLES, *(["lidarseg"] if lidarseg else [])]
    missing = [name for name in needed if not (tables / f"{name}.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a complete nuScenes {version} layout: missing table(s) "
            + ", ".join(str(tables / f"{name}.json") for name in missing)
            + f". Restore the data set, or regenerate a synthetic one: "
            f"{generator_command(root, version, overwrite=True)}"
        )
    if not (root / "samples").is_dir():
        raise FileNotFoundError(
            f"{root} is not a complete nuScenes layout: folder {root / 'samples'} is missing. Restore "
            f"the data set, or regenerate a synthetic one: {generator_command(root, version, overwrite=True)}"
        )
    return tables


def generator_command(root: str | Path, version: str, overwrite: bool = False) -> str:
    """The command that writes a synthetic ``version`` data set at ``root``."""
    return f"python -m training.data.synthetic --out {root} --version {version}" + (
        " --overwrite" if overwrite else ""
    )


def version_splits(version: str) -> tuple[str, ...]:
    """The devkit splits that belong to ``version``."""
    return tuple(s for s in SPLITS if _split_version(s) == version)


def layout_hint(root: str | Path, version: str) -> str:
    """How to fix a root without a ``version`` table folder: the version folders it has, the config
    fields that select one (with that version's splits), and the command that regenerates it."""
    root = Path(root)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
    if not found:
        return (
            f"It has no v1.0-* table folder; generate a synthetic {version} data set there with: "
            f"{generator_command(root, version, overwrite=True)}"
        )
    other = next((name for name in found if name != "v1.0-test"), found[0])
    splits = version_splits(other)
    fields = f"data.nuscenes.version: {other}" + (f", data.nuscenes.split: {splits[0]}" if splits else "")
    if len(splits) > 1:
        fields += f", data.val_split: {splits[1]}"
    return (
        f"Version folder(s) found in {root}: {', '.join(found)}. Either train with a config that "
        f"reads that version (set {fields}), or, for a synthetic root, regenerate it as {version}: "
        f"{generator_command(root, version, overwrite=True)}"
    )


def _split_version(split: str) -> str:
    return "v1.0-mini" if split.startswith("mini") else "v1.0-test" if split == "test" else "v1.0-trainval"


@dataclass(frozen=True)
class _Camera:
    channel: str
    path: Path
    ego: dict[str, Any]
    sensor: dict[str, Any]
    size: tuple[int, int]
    boxes: tuple[dict[str, Any], ...]  # interest-class boxes in the global frame


@dataclass(frozen=True)
class _Sample:
    token: str
    scene: str
    lidar_token: str  # the LIDAR_TOP sample_data token: names lidarseg and submission files
    lidar_path: Path
    lidarseg_path: Path | None
    lidar_sensor: dict[str, Any]
    lidar_ego: dict[str, Any]
    cameras: tuple[_Camera, ...]  # the options' channels, in CAMERAS order


class NuScenesDataset(Dataset[LidarSample]):
    """Keyframe samples of one devkit split, as `LidarSample` with camera views.

    Args:
        root: the nuScenes data root (holds ``samples/``, ``lidarseg/`` and the table folder).
        config: the model config (crop range, intensity scale; its classes must be nuScenes').
        options: what to read (version, split, cameras, boxes).
        training: apply point dropout, 3D augmentation and image jitter/flip; otherwise none.
        labelled: read lidarseg labels (False for the test split or inference).
        seed: seed of the per-sample streams (`streams`): sample ``i`` of epoch ``e`` draws its
            point dropout, 3D augmentation and intensity from a point stream seeded
            ``seed + e·len + i``, and its camera pick and image jitter/flip from a camera stream
            seeded `CAMERA_STREAM_OFFSET` above it.
        nusc: an already loaded ``nuscenes.NuScenes`` of this root and version, to share one.
        intensity: intensity randomisation after the 3D augmentation (training only; its draws
            come last in the sample's point stream).

    Raises:
        FileNotFoundError: the root is not a nuScenes layout (naming what is missing).
        ValueError: a config whose classes are not nuScenes', or a split with no scene here.
    """

    def __init__(
        self,
        root: str | Path,
        config: ModelConfig,
        options: NuScenesOptions | None = None,
        training: bool = False,
        labelled: bool = True,
        seed: int = 0,
        nusc: Any = None,
        intensity: IntensityAugment | None = None,
    ) -> None:
        from nuscenes.utils.splits import create_splits_scenes

        self.root = Path(root)
        self.config = config
        self.options = options = options or NuScenesOptions()
        self.training = training
        self.labelled = labelled
        self.seed = seed
        self.epoch = 0
        if len(config.class_names) != 17:
            raise ValueError(
                f"config {config.name!r} has {len(config.class_names)} classes; nuScenes-lidarseg "
                "trains 16 classes + ignore: use a nuScenes config"
            )
        if _split_version(options.split) != options.version:
            raise ValueError(
                f"split {options.split!r} does not belong to version {options.version!r} (its splits: "
                f"{', '.join(version_splits(options.version))}); set data.nuscenes.split / "
                "data.val_split (training) or --split (evaluation) to one of them"
            )
        check_nuscenes_layout(self.root, options.version, lidarseg=labelled)
        if nusc is None:
            from nuscenes.nuscenes import NuScenes

            nusc = NuScenes(version=options.version, dataroot=str(self.root), verbose=False)
        wanted = set(create_splits_scenes()[options.split])
        scenes = [s for s in nusc.scene if s["name"] in wanted]
        if not scenes:
            raise ValueError(
                f"no scene of split {options.split!r} in {self.root / options.version} "
                f"(it has {sorted(s['name'] for s in nusc.scene)[:5]}...)"
            )
        # Raw lidarseg index → training id, through the category *names* of this dataset.
        self.label_lookup = np.zeros(256, dtype=np.int64)
        if labelled:
            for index, name in nusc.lidarseg_idx2name_mapping.items():
                self.label_lookup[index] = nuscenes_train_id(name)
        self.samples = [
            self._index_sample(nusc, s, scene) for scene in scenes for s in _scene_samples(nusc, scene)
        ]
        self.augment = Augment3D() if training else None
        self.intensity = intensity if training else None
        self.dropout = PointDropout(options.point_dropout) if training else None
        self.image_transform = (
            ImageTransform(size=options.image_size)
            if training
            else ImageTransform.evaluation(options.image_size)
        )

    def _index_sample(self, nusc: Any, sample: dict[str, Any], scene: dict[str, Any]) -> _Sample:
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidarseg_path = None
        if self.labelled:
            record = nusc.get("lidarseg", lidar["token"])
            lidarseg_path = self.root / record["filename"]
        cameras = []
        for channel in self.options.channels if self.options.cameras != "none" else ():
            data = nusc.get("sample_data", sample["data"][channel])
            boxes = tuple(
                {
                    "name": box.name,
                    "translation": box.center.tolist(),
                    "size": box.wlh.tolist(),
                    "rotation": box.orientation.elements.tolist(),
                }
                for box in nusc.get_boxes(data["token"])
                if box.name in self.options.interest_classes
            )
            cameras.append(
                _Camera(
                    channel=channel,
                    path=self.root / data["filename"],
                    ego=nusc.get("ego_pose", data["ego_pose_token"]),
                    sensor=nusc.get("calibrated_sensor", data["calibrated_sensor_token"]),
                    size=(int(data["width"]), int(data["height"])),
                    boxes=boxes,
                )
            )
        return _Sample(
            token=sample["token"],
            scene=scene["name"],
            lidar_token=lidar["token"],
            lidar_path=self.root / lidar["filename"],
            lidarseg_path=lidarseg_path,
            lidar_sensor=nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"]),
            lidar_ego=nusc.get("ego_pose", lidar["ego_pose_token"]),
            cameras=tuple(cameras),
        )

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Different camera choice and augmentation per epoch, still deterministic."""
        self.epoch = epoch

    def _read_points(self, index: int) -> np.ndarray:
        return read_points(
            self.samples[index].lidar_path, PointFormat.NUSCENES, self.config.input.intensity_max
        )

    def file_points(self, index: int) -> np.ndarray:
        """xyz ``(N, 3)`` of every point of sample ``index``'s LiDAR file; errors name the file."""
        return self._read_points(index)[:, :3]

    def submission_name(self, index: int) -> str:
        """``<lidar token>_lidarseg.bin``: the sample's file in the nuScenes-lidarseg submission."""
        return f"{self.samples[index].lidar_token}_lidarseg.bin"

    def read_labels(self, index: int, num_points: int) -> torch.Tensor:
        """Training ids ``(N,)`` of sample ``index``'s file points; errors name the files."""
        record = self.samples[index]
        path = record.lidarseg_path
        if path is None:
            raise FileNotFoundError(
                f"no lidarseg labels for {record.lidar_path}: the data set was opened unlabelled "
                f"(split {self.options.split!r})"
            )
        if not path.is_file():
            raise FileNotFoundError(f"lidarseg label file not found: {path} (for {record.lidar_path})")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.shape[0] != num_points:
            raise ValueError(
                f"{path} has {raw.shape[0]} labels for {num_points} points in {record.lidar_path}"
            )
        return torch.from_numpy(self.label_lookup[raw])

    def streams(self, index: int) -> tuple[torch.Generator, torch.Generator]:
        """The point stream and the camera stream of sample ``index`` in the current epoch.

        The point stream draws everything that touches the points (dropout, 3D augmentation,
        intensity), the camera stream the camera pick and the image jitter/flip. Kept apart so the
        point-side draws of a sample and epoch are the same whatever the camera setting: mode
        ``3d`` (``cameras: none``) and the 2D modes train on identically augmented clouds, which
        makes their comparison a paired one. The point stream keeps the seed one shared stream had
        (and SemanticKITTI's stream has), so runs without cameras draw as they did before the split.
        """
        seed = self.seed + self.epoch * len(self) + index
        camera_seed = (seed + CAMERA_STREAM_OFFSET) % 2**64  # manual_seed takes unsigned 64 bits
        return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(camera_seed)

    def __getitem__(self, index: int) -> LidarSample:
        record = self.samples[index]
        point_stream, camera_stream = self.streams(index)
        points = torch.from_numpy(self._read_points(index))
        num_file_points = int(points.shape[0])
        labels = self.read_labels(index, num_file_points) if self.labelled else None

        if self.options.cameras == "random":
            pick = int(torch.randint(0, len(record.cameras), (), generator=camera_stream))
            cameras: tuple[_Camera, ...] = (record.cameras[pick],)
        else:
            cameras = record.cameras
        keep = crop_mask(points[:, :3], self.config.grid)
        indices = torch.nonzero(keep).flatten()
        if self.dropout is not None:
            indices = indices[self.dropout(indices.shape[0], point_stream)]
        points = points[indices]
        labels = labels[indices] if labels is not None else None

        views = self._views(record, cameras, points[:, :3].numpy(), camera_stream)
        if self.augment is not None:
            points = self.augment(points, point_stream)
        if self.intensity is not None:
            points = self.intensity(points, point_stream, labels)
        return LidarSample(
            name=record.token,
            points=points,
            labels=labels,
            indices=indices,
            num_file_points=num_file_points,
            views=views,
        )

    def _views(
        self,
        record: _Sample,
        cameras: tuple[_Camera, ...],
        xyz: np.ndarray,
        generator: torch.Generator,
    ) -> tuple[CameraView, ...]:
        views = []
        claimed = np.zeros(xyz.shape[0], dtype=bool)
        for camera in cameras:
            in_camera = lidar_to_camera(xyz, record.lidar_sensor, record.lidar_ego, camera.ego, camera.sensor)
            uv, depth = project_to_image(in_camera, camera.sensor["camera_intrinsic"])
            width, height = camera.size
            seen = (
                (depth > 0) & (uv[:, 0] > 0) & (uv[:, 0] < width) & (uv[:, 1] > 0) & (uv[:, 1] < height)
            ) & ~claimed
            claimed |= seen
            point_index = np.flatnonzero(seen)
            boxes, classes = [], []
            for box in camera.boxes:
                box2d = box_to_2d(
                    box, camera.ego, camera.sensor, camera.size, clip=self.options.boxes == "clipped"
                )
                if box2d is not None:
                    boxes.append(box2d)
                    classes.append(box["name"])
            owner = assign_to_boxes(uv[point_index], depth[point_index], boxes)
            image = load_image(camera.path, self.options.image_size)
            pixels = self.image_transform.scale_pixels(uv[point_index], camera.size)
            transformed = self.image_transform(image, pixels, generator)
            views.append(
                _camera_view(camera.channel, transformed, point_index, owner, boxes, classes, self.options)
            )
        return tuple(views)


def _camera_view(
    channel: str,
    transformed: Any,
    point_index: np.ndarray,
    owner: np.ndarray,
    boxes: list[Box2D],
    classes: list[str],
    options: NuScenesOptions,
) -> CameraView:
    return CameraView(
        camera=channel,
        image=transformed.image,
        point_index=torch.from_numpy(point_index.astype(np.int64)),
        pixels=transformed.pixels,
        point_box=torch.from_numpy(owner),
        boxes=torch.tensor([[b.x_min, b.x_max, b.y_min, b.y_max] for b in boxes], dtype=torch.float32).view(
            -1, 4
        ),
        box_class=torch.tensor([options.interest_classes.index(c) for c in classes], dtype=torch.int64),
        box_label=torch.tensor([nuscenes_train_id(c) for c in classes], dtype=torch.int64),
        box_depth=torch.tensor([b.depth for b in boxes], dtype=torch.float32),
    )


def _scene_samples(nusc: Any, scene: dict[str, Any]) -> list[dict[str, Any]]:
    samples, token = [], scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        samples.append(sample)
        token = sample["next"]
    return samples
