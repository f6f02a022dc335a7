"""Typed training configuration, loaded from YAML (`training/configs/*.yaml`).

One file says everything a run needs besides where the data and the outputs live: the 3D model
(a bundled `seg3d` config by name, or inline), the training mode and its loss weights, the data set
and its options, the optimiser and schedule of `docs/architecture.md` §6, and the loop's settings.
Unknown fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seg3d.config import ModelConfig, load_config
from training.data.nuscenes import NuScenesOptions
from training.model.config import BranchConfig

__all__ = [
    "TRAINING_CONFIG_DIR",
    "DataConfig",
    "LoopConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "load_train_config",
]

TRAINING_CONFIG_DIR = Path(__file__).parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SemanticKittiOptions(_Strict):
    """SemanticKITTI: the label config (``semantic-kitti.yaml``, relative to the data root unless
    absolute) and the splits, or explicit sequences.

    ``class_weighted`` weights the 3D cross-entropy as 2DPASS does on SemanticKITTI:
    ``w_c = (max_k f_k / f_c)^(1/3)`` with ``f_c`` the class's share of points, from the label config's
    ``content`` table (`SemanticKittiLabelMap.class_weights`).
    """

    label_config: str = "semantic-kitti.yaml"
    train_sequences: tuple[int, ...] | None = None
    val_sequences: tuple[int, ...] | None = None
    class_weighted: bool = True


class DataConfig(_Strict):
    """Which data set, and its options. nuScenes reads ``train_split`` for training and
    ``val_split`` for validation (devkit split names)."""

    dataset: Literal["nuscenes", "semantickitti"] = "nuscenes"
    nuscenes: NuScenesOptions = NuScenesOptions()
    val_split: Literal["train", "val", "test", "mini_train", "mini_val"] = "val"
    semantickitti: SemanticKittiOptions = SemanticKittiOptions()
    num_workers: int = Field(2, ge=0)
    # Training-time augmentation (3D rotation/scale/flip/jitter, point dropout, image jitter and flip).
    # Off for overfit checks, where the network must see the very points it is scored on.
    augment: bool = True
    # Per-cloud intensity randomisation (training.data.augment.IntensityAugment), after the 3D
    # augmentation and only with ``augment``; off by default, which keeps 2DPASS's recipe and streams.
    intensity_dropout: float = Field(0.0, ge=0, le=1)
    intensity_scale: tuple[float, float] = (1.0, 1.0)
    # Each class's mean intensity set to its own log-uniform level in this range, as fractions of
    # the model's intensity_max (per cloud); None: off.
    intensity_class_level: tuple[float, float] | None = None

    @field_validator("intensity_scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"intensity_scale must be [low, high] with 0 <= low <= high, got {list(value)}")
        return value

    @field_validator("intensity_class_level")
    @classmethod
    def _class_level(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1] <= 1:
            raise ValueError(
                f"intensity_class_level must be [low, high] with 0 < low <= high <= 1, got {list(value)}"
            )
        return value


class OptimConfig(_Strict):
    """SGD as 2DPASS trains nuScenes: momentum 0.9, Nesterov, weight decay on every parameter."""

    lr: float = Field(0.24, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)


class ScheduleConfig(_Strict):
    """Cosine annealing. ``unit: epoch`` replicates 2DPASS (stepped per epoch with
    ``T_max = epochs − 4``, PyTorch's formula, which rises again after ``T_max``); ``unit: step``
    anneals per optimiser step over ``t_max`` steps, for step-budgeted runs. A step budget
    (``loop.max_steps`` or ``--max-steps``) shorter than the period shortens it to the budget (the
    full epochs of the budget for ``unit: epoch``), so a short run still anneals to ``eta_min``;
    per step, a longer budget stretches it, so a long run does not climb back
    (`training.loop.schedule_period`)."""

    unit: Literal["epoch", "step"] = "epoch"
    t_max: int | None = Field(None, ge=1)
    eta_min: float = Field(1e-5, ge=0)


class LoopConfig(_Strict):
    """Batching and bookkeeping.

    ``batch_size`` is per process; the optimiser steps once every ``accumulate`` batches, so the
    global batch is ``batch_size × accumulate × world size``. The run ends after ``epochs`` epochs or
    ``max_steps`` optimiser steps, whichever comes first (``--max-steps`` overrides ``max_steps``).
    """

    epochs: int = Field(80, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimiser steps in total; None: epochs only
    batch_size: int = Field(8, ge=1)
    accumulate: int = Field(1, ge=1)
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    val_every: int = Field(1, ge=1)  # epochs
    checkpoint_every: int = Field(100, ge=1)  # optimiser steps
    log_every: int = Field(10, ge=1)  # optimiser steps
    max_val_samples: int | None = Field(None, ge=1)
    # Exponential moving average of the weights (and BatchNorm statistics), updated after every
    # optimiser step: validation, best.pt and last.pt's weights are the average; last.pt keeps the
    # raw weights too, for --resume. None: no average (2DPASS has none).
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # Sparse-conv implementation (`training.backend`): auto = spconv on CUDA when a CUDA build
    # imports, else the table backend with present taps; --backend overrides it.
    backend: Literal["auto", "spconv", "table"] = "auto"
    # Timeout of every collective under torchrun (NCCL's watchdog defaults to 10 minutes).
    dist_timeout_minutes: float = Field(60.0, gt=0)
    # Every N optimiser steps, log the L2 norm of each weighted loss term's gradient with respect to
    # the 3D encoder (`grad3d/<term>` in train_log.jsonl): which terms drive the encoder the
    # checkpoint keeps. One extra backward per term on those steps, so None (off) by default.
    term_grad_norms_every: int | None = Field(None, ge=1)


class TrainConfig(_Strict):
    """A whole training run."""

    name: str
    model: ModelConfig
    branch: BranchConfig = BranchConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loop: LoopConfig = LoopConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _bundled_model(cls, value: object) -> object:
        # `model: nuscenes_full` names a bundled seg3d config; a mapping is an inline config.
        return load_config(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.data.dataset == "semantickitti" and self.branch.mode != "3d":
            raise ValueError("SemanticKITTI trains mode '3d' only (the loader has no camera views)")
        if (
            self.data.dataset == "nuscenes"
            and self.branch.mode != "3d"
            and self.data.nuscenes.cameras == "none"
        ):
            raise ValueError(f"mode {self.branch.mode!r} needs camera images: set data.nuscenes.cameras")
        interest = len(self.data.nuscenes.interest_classes)
        if self.branch.mode == "2ddata" and self.branch.lob_classes < interest:
            raise ValueError(
                f"branch.lob_classes ({self.branch.lob_classes}) must cover the {interest} interest classes"
            )
        return self

    @property
    def t_max(self) -> int:
        """Cosine period: the config's, else ``epochs − 4`` (2DPASS) for per-epoch schedules."""
        if self.schedule.t_max is not None:
            return self.schedule.t_max
        if self.schedule.unit == "step":
            raise ValueError("schedule.unit 'step' needs schedule.t_max (optimiser steps)")
        return max(self.loop.epochs - 4, 1)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_train_config(source: str | Path) -> TrainConfig:
    """A `TrainConfig` from a YAML path or the name of a bundled training config.

    Raises:
        FileNotFoundError: no such file or bundled name (the message lists the bundled ones).
        ValueError: invalid YAML or fields, naming the file and each bad field.
    """
    path = Path(source)
    if not path.suffix:
        path = TRAINING_CONFIG_DIR / f"{source}.yaml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in TRAINING_CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"training config {source!s} not found (bundled: {bundled})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid training config:\n{exc}") from exc
