"""Typed configuration of the 3D encoder and of its input contract.

One `ModelConfig` describes everything preprocessing and the encoder need: the crop range and grid,
the scales, the width, the classes and the intensity scale. It is loaded from YAML
(`seg3d/configs/*.yaml`) and is stored verbatim inside checkpoints and export manifests, so the model
and its preprocessing cannot drift apart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seg3d.classes import ClassTable, DatasetName, class_table

CONFIG_DIR = Path(__file__).parent / "configs"

#: Offsets of the 3×3×3 kernel taps in spconv's flattened kernel order. spconv 2.x stores a
#: submanifold kernel as ``[C_out, k0, k1, k2, C_in]`` where (k0, k1, k2) follow the index columns
#: (z, y, x); tap ``t = k0*9 + k1*3 + k2`` reads the neighbour at ``p + (k - 1)``.
KERNEL_TAPS = 27


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GridConfig(_Frozen):
    """Crop range and scale-1 voxel grid.

    ``point_range`` is ``((x_min, x_max), (y_min, y_max), (z_min, z_max))`` in metres, sensor frame.
    ``spatial_shape`` is the number of scale-1 cells along x, y, z. A coarser scale ``s`` has
    ``ceil(spatial_shape / s)`` cells spanning the same range (so coarse grids need not nest).
    """

    point_range: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    spatial_shape: tuple[int, int, int]

    @field_validator("point_range")
    @classmethod
    def _range_increasing(cls, value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for axis, (lo, hi) in zip("xyz", value, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"point_range for {axis} must be finite with min < max, got ({lo}, {hi})")
        return value

    @field_validator("spatial_shape")
    @classmethod
    def _shape_positive(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 1 for n in value):
            raise ValueError(f"spatial_shape must be positive, got {value}")
        return value

    def cells(self, scale: int) -> tuple[int, int, int]:
        """Cells per axis (x, y, z) at ``scale``: ``ceil(spatial_shape / scale)``."""
        return tuple(math.ceil(n / scale) for n in self.spatial_shape)  # type: ignore[return-value]

    def voxel_size(self, scale: int = 1) -> tuple[float, float, float]:
        """Cell size in metres along x, y, z at ``scale``."""
        return tuple((hi - lo) / n for (lo, hi), n in zip(self.point_range, self.cells(scale), strict=True))  # type: ignore[return-value]


class InputConfig(_Frozen):
    """What one point looks like when it reaches the encoder.

    The encoder reads ``[x, y, z, intensity]``; ``intensity`` is in the model's own scale, whose
    maximum is ``intensity_max`` (255 for nuScenes, which 2DPASS feeds raw; 1.0 for SemanticKITTI
    remission). Readers of other formats convert to this scale with
    `seg3d.points.to_model_intensity`.
    """

    columns: tuple[str, ...] = ("x", "y", "z", "intensity")
    intensity_max: float = Field(255.0, gt=0)


class EncoderConfig(_Frozen):
    """Width and depth of the 2DPASS 3D encoder.

    Block ``i`` convolves at resolution ``scale_list[i-1]`` (1 for the first block) and writes its
    output at ``scale_list[i]``.
    """

    hidden: int = Field(256, ge=2)
    scale_list: tuple[int, ...] = (2, 4, 8, 16, 16, 16)
    head_hidden: int = Field(128, ge=1)
    leaky_slope: float = 0.1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    @field_validator("scale_list")
    @classmethod
    def _scales_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("scale_list must not be empty")
        previous = 1
        for s in value:
            if s < 1 or (s & (s - 1)) != 0:
                raise ValueError(f"scales must be powers of two, got {value}")
            if s < previous:
                raise ValueError(f"scales must not decrease, got {value}")
            previous = s
        return value

    @field_validator("hidden")
    @classmethod
    def _hidden_even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("hidden must be even (the point branch uses hidden / 2)")
        return value

    @property
    def conv_scales(self) -> tuple[int, ...]:
        """Resolution at which each block's sparse convolutions run (``r_prev``)."""
        return (1, *self.scale_list[:-1])

    @property
    def all_scales(self) -> tuple[int, ...]:
        """Every distinct scale that preprocessing must voxelize, ascending."""
        return tuple(sorted({1, *self.scale_list}))


class TableConfig(_Frozen):
    """Widths of the fixed-width pooling tables (see `seg3d.preprocess.tables`).

    Any width is exact: a target with more sources than the width is completed by a small
    overflow table. The widths only trade padding against overflow rows.
    """

    point_pool_width: int = Field(8, ge=1)
    voxel_pool_width: int = Field(8, ge=1)


class ModelConfig(_Frozen):
    """Everything that defines the exported 3D model and its input contract.

    The classes are the data set's table (`seg3d.classes`): ``class_names``, ``ignore_index`` and
    ``num_classes`` derive from ``dataset`` and are never written in a config.
    """

    name: str
    dataset: DatasetName
    grid: GridConfig
    input: InputConfig = InputConfig()
    encoder: EncoderConfig = EncoderConfig()
    tables: TableConfig = TableConfig()

    @model_validator(mode="before")
    @classmethod
    def _stored_class_list(cls, data: Any) -> Any:
        """Accept configs stored before the class tables (with ``class_names``/``ignore_index``)
        only when their list is exactly the data set's table."""
        if not isinstance(data, dict) or ("class_names" not in data and "ignore_index" not in data):
            return data
        data = dict(data)
        names, ignore = data.pop("class_names", None), data.pop("ignore_index", None)
        table = class_table(str(data.get("dataset")))
        if names is not None and tuple(names) != table.names:
            raise ValueError(
                f"class_names {list(names)} differ from the {table.name} class table {list(table.names)} "
                "(a reordered or edited list would mislabel every point); remove class_names: the "
                "data set fixes the classes"
            )
        if ignore is not None and not 0 <= ignore < len(table):
            raise ValueError(f"ignore_index {ignore} is not a class index of the {table.name} table")
        if ignore is not None and ignore != table.ignore_index:
            raise ValueError(
                f"ignore_index {ignore} differs from the {table.name} table's {table.ignore_index}"
            )
        return data

    @property
    def classes(self) -> ClassTable:
        return class_table(self.dataset)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    @property
    def ignore_index(self) -> int:
        return self.classes.ignore_index

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_config(source: str | Path) -> ModelConfig:
    """Load a `ModelConfig` from a YAML path or the name of a bundled config (``"nuscenes_full"``)."""
    path = Path(source)
    if not path.suffix:
        path = CONFIG_DIR / f"{source}.yaml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"config {source!s} not found (bundled configs: {bundled})")
    with path.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return ModelConfig.model_validate(data)


def bundled_configs() -> list[str]:
    """Names of the configs shipped in `seg3d/configs`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
