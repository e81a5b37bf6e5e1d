"""TrainConfig: one training run as validated data (YAML in, YAML out).

Unknown keys and bad values are rejected; `ConfigError` carries one line naming the field.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainers.config_errors import read_yaml, validation_error
from trainers.errors import ConfigError, DataError
from trainers.model.spec import (Family, GunnMode, NetworkSpec, Stem, Transition, check_model_name,
                                 check_shape, model_spec)

__all__ = ["ConfigError", "DataError", "TrainConfig", "load_config", "parse_config", "dump_config",
           "read_yaml", "num_classes"]


DATASETS = {"cifar10": 10, "cifar100": 100, "digits": 10, "synthetic": None}  # name -> classes
DatasetName = Literal["cifar10", "cifar100", "digits", "synthetic"]
# A speed-up the trainer applies on CUDA (true), never (false) or on any device ("always").
Speedup = Literal[True, False, "always"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageConfig(_Strict):
    N: int = Field(ge=1)
    P: int = Field(ge=1)
    K: int = Field(default=2, ge=1)
    M: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _divisible(self):
        check_shape(self.N, self.P)  # here, not in ModelConfig: the error names the stage
        return self


class ModelConfig(_Strict):
    """A registered model (`name`) or an explicit architecture (`stages` ...)."""

    name: str | None = None
    family: Family = "gunn"
    stem: Stem = "cifar"
    stem_channels: int = Field(default=64, ge=1)
    head_channels: int | None = Field(default=None, ge=1)
    projection: bool = True
    residual: bool = True  # false: GUNN-NoRes / SUNN-NoRes, the paper's Table 5 ablation
    stages: list[StageConfig] | None = Field(default=None, min_length=1)
    gunn_mode: GunnMode = "recompute"
    # conv_pool | pool_conv between layers (trainers/model/spec.py); None: a registered model's own,
    # else the stem's (cifar: conv_pool, imagenet: pool_conv, as in the authors' code)
    transition: Transition | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.name is None) == (self.stages is None):
            raise ValueError("give either name (a registered model) or stages, not both/neither")
        if self.name is not None:
            check_model_name(self.name)
        return self

    def network_spec(self, num_classes: int) -> NetworkSpec:
        spec = self._spec(num_classes)
        return spec if self.transition is None else replace(spec, transition=self.transition)

    def _spec(self, num_classes: int) -> NetworkSpec:
        if self.name is not None:
            return replace(model_spec(self.name, num_classes), residual=self.residual)
        return NetworkSpec(stages=tuple((s.N, s.P, s.K, s.M) for s in self.stages),
                           family=self.family, stem=self.stem, stem_channels=self.stem_channels,
                           head_channels=self.head_channels, projection=self.projection,
                           residual=self.residual, num_classes=num_classes)

    @classmethod
    def from_spec(cls, spec: NetworkSpec, gunn_mode: str = "recompute") -> "ModelConfig":
        d = spec.to_dict()
        d.pop("num_classes"), d.pop("in_channels")
        return cls(gunn_mode=gunn_mode, **d)


class DataConfig(_Strict):
    name: DatasetName = "synthetic"
    data_dir: str = "data"
    split: Literal["search", "final"] = "search"
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    # Train on this share of the training images (after the validation hold-out), the same seeded
    # subset in every trial: a cheaper, lower-fidelity problem on which configurations still differ
    # (benchmarks/rank_correlation.py trains digits at 0.25).
    train_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    download: bool = False  # never fetch from the network unless asked
    split_seed: int = 0  # fixes the train/val split and synthetic data, the same for every trial
    synthetic_train_size: int = Field(default=2000, ge=10)
    synthetic_test_size: int = Field(default=500, ge=10)
    synthetic_num_classes: Literal[10, 100] = 10
    cyclic_shift: bool = False  # the authors' extra augmentation (docs/paper.md)
    flip: bool | None = None  # horizontal flips; default: on, except for digits (not mirror-symmetric)


class OptimConfig(_Strict):
    lr: float = Field(default=0.1, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    nesterov: bool = True  # the authors' code uses Nesterov; the paper's text does not say


class ScheduleConfig(_Strict):
    kind: Literal["step", "cosine", "constant"] = "step"
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)
    warmup_epochs: float = Field(default=0.0, ge=0.0)


class TrackingConfig(_Strict):
    """Where `gunn-train` logs to MLflow (used by the search package's CLI, not by trainers)."""

    uri: str | None = None
    experiment: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class TrainConfig(_Strict):
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=500, ge=1)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # The next three: true = on CUDA only (a CPU run stays float32, NCHW and eager), false = off,
    # always = on whatever the device, the CPU included (CPU autocast, inductor): how the tests
    # run these paths on a machine without a GPU.
    amp: Speedup = True  # bfloat16 autocast
    channels_last: Speedup = True  # channels_last memory format for the model and its inputs
    compile: Speedup = False  # torch.compile (inductor)
    num_threads: int | None = Field(default=None, ge=1)
    out_dir: str | None = "runs/train"
    tracking: TrackingConfig | None = None

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.schedule.warmup_epochs >= self.epochs:
            raise ValueError(f"schedule.warmup_epochs ({self.schedule.warmup_epochs}) must be "
                             f"less than epochs ({self.epochs})")
        return self


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a `gunn-train` YAML config."""
    return parse_config(read_yaml(path), str(path))


def parse_config(data: dict, source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, source, TrainConfig) from None


def num_classes(d: DataConfig) -> int:
    """The number of classes of a dataset config."""
    return d.synthetic_num_classes if d.name == "synthetic" else DATASETS[d.name]


def dump_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write a config as YAML (round-trips through `load_config`)."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False),
                                         sort_keys=False))
