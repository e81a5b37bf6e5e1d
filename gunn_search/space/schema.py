"""The schema of a space file: a `gunn-train` config whose values may be distributions.

    model: {family: {choice: [gunn, sunn]}, stages: [{n: {choice: [8, 12]}, P: {low: 10, high: 30}}]}
    optim: {lr: {low: 0.02, high: 0.3, log: true}, momentum: {low: 0.8, high: 0.95}}
    epochs: 30
    search: {num_samples: 32}          # the search-only sections: name, search, resources, budget

`parse_space` splits the file into the training config with every distribution replaced by one of
its values (validated by `TrainConfig` itself, so defaults and checks live in one place) and the
distributions by dotted path (`gunn_search.space.extract`). A distribution's values are checked by
the key's own validator.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainers.config import TrainConfig, parse_config
from trainers.config_errors import ConfigError, describe_error, unknown_key, validation_error

from gunn_search.space import distributions as dist
from gunn_search.space.budget import Budget, check_feasible
from gunn_search.space.distributions import Choice, Distribution
from gunn_search.space.extract import data_with_dims, extract, to_yaml
from gunn_search.space.paths import get_path
from gunn_search.space.rungs import default_branch_epochs, default_grace_period

# Keys that say where a trial runs, not what it trains: the search sets them for each trial.
PLACEMENT_KEYS = ("device", "out_dir", "num_threads")
# Keys of the space format before it was one with the training config, and where they went.
OLD_KEYS = {
    "dataset": "the section is now `data`, as in a gunn-train config",
    "train": "its keys are now top-level (epochs, batch_size), in `schedule` (kind, "
             "warmup_epochs), `optim` (nesterov) and `data` (cyclic_shift)",
    "lr": "now `optim.lr`", "weight_decay": "now `optim.weight_decay`",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectiveSetting(_Strict):
    metric: Literal["val_acc", "cost.params", "cost.macs", "cost.activation_bytes",
                    "epoch_seconds"]  # gunn_search.results.pareto.OBJECTIVE_METRICS
    mode: Literal["max", "min"]


class SearchSettings(_Strict):
    num_samples: int = Field(default=32, ge=1)
    seed: int = Field(default=0, ge=0)  # the searcher's; trials train with the config's `seed`
    max_concurrent: int = Field(default=4, ge=1)
    # asha stops the trials that rank low at a rung; fifo trains every trial to the end.
    scheduler: Literal["asha", "fifo"] = "asha"
    # ASHA: epochs every trial gets; unset, `default_grace_period` (a sixth of the epochs with
    # branches; without, the lr drop or half)
    grace_period: int | None = Field(default=None, ge=1)
    reduction_factor: int = Field(default=3, ge=2)  # ASHA: 1/rf of a rung goes on
    # ASHA: Hyperband brackets; bracket b's first rung is grace_period * rf**b, and new trials
    # go to the brackets in Tune's shares (most to the first: `rungs.bracket_shares`).
    brackets: int = Field(default=1, ge=1)
    # ASHA: at each rung a copy of the trial trains this many more epochs at the lower rates its
    # schedule has left, and the rung compares that copy's val_acc (trainers/anneal.py); 0: the
    # trial's own val_acc. Unset: `default_branch_epochs` (a sixth of the epochs).
    branch_epochs: float | None = Field(default=None, ge=0.0)
    # ASHA: which rungs branch: all, or the first only (later rungs compare the trial's own
    # val_acc, which ranks well once the schedule's rate has dropped).
    branch_rungs: Literal["all", "first"] = "all"
    metric: Literal["val_acc"] = "val_acc"
    mode: Literal["max"] = "max"
    # More than one: a multi-objective search (Pareto front); ASHA stops on the first, which
    # must be the trained metric (costs do not change with epochs).
    objectives: list[ObjectiveSetting] | None = None
    # Optuna's sampler: TPE handles one objective and several (MOTPE); nsga2 is the usual
    # evolutionary choice for many trials and objectives; random is the baseline.
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    # A compute budget (gunn_search.run.compute_budget): trials start while it lasts, and the
    # ones still training when it is spent stop (`stopped by budget`). Epochs of all trials
    # together, annealing-branch epochs included; the search's wall time (90m, 2h, 1.5d); the
    # GPU-hours its trials hold. With any of them, num_samples is an upper bound and may be
    # left out (then none).
    budget_epochs: float | None = Field(default=None, gt=0.0)
    time_budget: str | None = None
    budget_gpu_hours: float | None = Field(default=None, gt=0.0)

    @field_validator("time_budget", mode="before")
    @classmethod
    def _a_duration(cls, v):
        if v is None:
            return v
        from gunn_search.space.compute_limits import parse_duration

        seconds = parse_duration(v)  # ValueError: pydantic's one line, naming the field
        return v if isinstance(v, str) else f"{seconds:g}s"

    @model_validator(mode="after")
    def _unbounded_under_a_budget(self):
        # Set without pydantic's field tracking: left out, num_samples is resolved again
        # whenever the search section is (a budget from a flag lifts the default's 32 too).
        if "num_samples" not in self.model_fields_set and self.has_budget:
            from gunn_search.space.compute_limits import UNBOUNDED

            object.__setattr__(self, "num_samples", UNBOUNDED)
        return self

    @property
    def has_budget(self) -> bool:
        return any(v is not None for v in (self.budget_epochs, self.time_budget,
                                           self.budget_gpu_hours))

    @model_validator(mode="after")
    def _first_objective_is_the_metric(self):
        if self.objectives:
            first = self.objectives[0]
            if (first.metric, first.mode) != (self.metric, self.mode):
                raise ValueError(f"the first objective must be {{metric: {self.metric}, mode: "
                                 f"{self.mode}}}: ASHA stops trials on it (got {first.metric}, "
                                 f"{first.mode})")
            names = [o.metric for o in self.objectives]
            if len(set(names)) != len(names):
                raise ValueError(f"an objective is named twice ({', '.join(names)})")
        return self

    @property
    def objective_list(self) -> list[ObjectiveSetting]:
        return self.objectives or [ObjectiveSetting(metric=self.metric, mode=self.mode)]


class Resources(_Strict):
    cpus_per_trial: float = Field(default=1.0, gt=0.0)
    # auto: the GPUs the cluster has, shared by max_concurrent trials (gunn_search.run.resources)
    gpus_per_trial: Literal["auto"] | float = "auto"

    @field_validator("gpus_per_trial", mode="before")
    @classmethod
    def _auto_or_number(cls, v):
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"must be auto or a number >= 0 (got {v!r})")
        return float(v)


class SearchSections(_Strict):
    name: str | None = Field(default=None, min_length=1)  # MLflow experiment (default: file stem)
    search: SearchSettings = Field(default_factory=SearchSettings)
    resources: Resources = Field(default_factory=Resources)
    budget: Budget = Field(default_factory=Budget)


@dataclass(frozen=True, eq=False)
class Space:
    """A validated space. Picklable: Tune ships it to every trial."""

    name: str | None
    base: TrainConfig  # every distribution at one of its values
    dims: dict[str, Distribution]  # by dotted path; each stage's width (n or N) and P always
    stage_forms: tuple[str, ...]  # per stage: "n" (N = n * P) or "N"
    search: SearchSettings
    resources: Resources
    budget: Budget
    data: dict  # the mapping it was parsed from
    source: str | None = None

    def searched(self) -> dict[str, Distribution]:
        """The dimensions with more than one value, by dotted path."""
        return {p: d for p, d in self.dims.items() if dist.is_searched(d)}

    def values_at(self, path: str) -> list:
        """Every value the key at ``path`` takes in the space (a float range: its end points)."""
        if path in self.dims:
            return dist.values(self.dims[path])
        return [get_path(self.base.model_dump(mode="python"), path)]

    @property
    def max_epochs(self) -> int:
        return max(self.values_at("epochs"))

    @property
    def config_paths(self) -> list[str]:
        """The dotted paths a sample sets in the training config."""
        paths = [p for p in self.dims if not p.endswith(".n")]
        for i in range(len(self.stage_forms)):
            paths += [f"model.stages.{i}.N"] if f"model.stages.{i}.N" not in paths else []
        return paths


def parse_space(data: dict, source: str = "space") -> Space:
    """Validate a parsed space file; ConfigError (``source: field: problem``) on any problem."""
    data = copy.deepcopy(data)
    allowed = list(TrainConfig.model_fields) + list(SearchSections.model_fields)
    for key in data:
        if key not in allowed:
            raise ConfigError(unknown_key(str(key), allowed, OLD_KEYS), file=source)
    sections_data = {k: data.pop(k) for k in list(data) if k in SearchSections.model_fields}
    try:
        sections = SearchSections.model_validate(sections_data)
    except ValidationError as e:
        raise validation_error(e, source, SearchSections) from None
    try:
        dims, forms = extract(data)
    except ConfigError as e:
        raise e.with_file(source) from None
    base = parse_config(data, source)
    if not any(dist.is_searched(d) for d in dims.values()) and "num_samples" not in (
            sections_data.get("search") or {}):
        # One point (a gunn-train config, an exported trial): train it once, not 32 times.
        sections.search.num_samples = 1
    space = Space(sections.name, base, dims, forms, sections.search, sections.resources,
                  sections.budget, {**data_with_dims(data, dims), **_sections_data(sections)},
                  source)
    return settle(space, source)


def settle(space: Space, source: str) -> Space:
    """Resolve what the file left to ASHA's defaults (`gunn_search.space.rungs`) and check the rules
    across keys; returns ``space``. Resolved here, not written back into `space.data`: a changed
    `epochs` (--max-epochs) settles the space again and moves the rung and the branch with it."""
    if space.search.branch_epochs is None:
        space.search.branch_epochs = default_branch_epochs(space)
    if space.search.grace_period is None:
        space.search.grace_period = default_grace_period(space)
    try:
        _check_cross_fields(space)
    except ConfigError as e:
        raise e.with_file(source) from None
    return space


def _sections_data(sections: SearchSections) -> dict:
    out = sections.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    if "num_samples" not in sections.search.model_fields_set:  # resolved again when re-read
        out["search"].pop("num_samples", None)
    return out


# --- cross-field rules -------------------------------------------------------------------------------

def _check_cross_fields(space: Space) -> None:
    if "epochs" in space.dims or "schedule.warmup_epochs" in space.dims:
        warm, epochs = max(space.values_at("schedule.warmup_epochs")), min(space.values_at("epochs"))
        if warm >= epochs:
            raise ConfigError(f"must be < epochs in every sample (largest warm-up {warm:g}, "
                              f"fewest epochs {epochs})", field="schedule.warmup_epochs")
    if space.search.scheduler == "asha" and space.search.grace_period > space.max_epochs:
        raise ConfigError(f"must be <= epochs ({space.max_epochs}) (got "
                          f"{space.search.grace_period})", field="search.grace_period")
    s = space.search
    if s.budget_epochs is not None:
        first = (s.grace_period + (s.branch_epochs or 0.0) if s.scheduler == "asha"
                 and s.grace_period < space.max_epochs else float(space.max_epochs))
        if s.budget_epochs < first:
            raise ConfigError(f"must be at least one trial's first rung ({first:g} epochs; got "
                              f"{s.budget_epochs:g})", field="search.budget_epochs")
    if space.values_at("data.split") != ["search"]:
        raise ConfigError("a search selects on a validation split; use split: search (final "
                          "trains on train + val and reports the test set)", field="data.split")
    _check_each_choice(space)
    check_feasible(space)


def _check_each_choice(space: Space) -> None:
    """Every value of a choice outside the stages makes a valid config with the rest at the base:
    rules across keys (model.name: a registered model, and not with stages) hold for each.

    Such rules are a section's model validators, so a choice is checked in its section only,
    and only where the section has one; the section's other settings go in as the validated
    objects they are (pydantic does not validate a model instance again). Each value itself was
    checked by its key's validator when the choice was read (`extract`)."""
    for path, d in space.dims.items():
        if path.startswith("model.stages.") or not isinstance(d, Choice):
            continue
        *head, key = path.split(".")
        section = space.base
        for k in head:
            section = getattr(section, k)
        model = type(section)
        if not model.__pydantic_decorators__.model_validators:
            continue
        for v in d.values[1:]:
            try:
                model.model_validate({**dict(section), key: v})
            except ValidationError as e:
                raise ConfigError(f"choice {v!r}: {describe_error(e.errors()[0])[1]}",
                                  field=path) from None


def fingerprint(space: Space) -> str:
    """sha256 of the space's canonical JSON, to tell a resumed search's space apart.

    Defaults are filled in, so writing a default out does not change it. Left out: the
    experiment's label, where the data lives and whether it may be downloaded, where trials run
    and where a config logs to: none changes what the trials mean.
    """
    base = space.base.model_dump(mode="json", exclude={"tracking", *PLACEMENT_KEYS})
    base["data"].pop("data_dir"), base["data"].pop("download")
    canon = {"base": base, "dims": {p: [type(d).__name__, to_yaml(d)] for p, d in space.dims.items()},
             "stage_forms": space.stage_forms, "search": space.search.model_dump(mode="json"),
             "resources": space.resources.model_dump(mode="json"),
             "budget": space.budget.model_dump(mode="json")}
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
