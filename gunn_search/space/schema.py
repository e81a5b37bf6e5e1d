"""The schema of a space file: a `gunn-train` config whose values may be distributions.

    model: {family: {choice: [gunn, sunn]}, stages: [{n: {choice: [8, 12]}, P: {low: 10, high: 30}}]}
    optim: {lr: {low: 0.02, high: 0.3, log: true}, momentum: {low: 0.8, high: 0.95}}
    epochs: 30
    search: {num_samples: 32}          # the search-only sections: name, search, resources, budget

`parse_space` splits the file into the training config with every distribution replaced by one of
its values (validated by `TrainConfig` itself, so defaults and checks live in one place) and the
distributions by dotted path. A distribution's values are checked by the key's own validator.
Stages may give the segment width `n` instead of `N` (N = n * P): then every sample is a valid layer.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from trainers.config import StageConfig, TrainConfig, parse_config
from trainers.config_errors import (ConfigError, core_type, describe_error, unknown_key,
                                    validation_error)
from trainers.model.spec import divides

from gunn_search.space import distributions as dist
from gunn_search.space.distributions import Choice, Distribution, Range

# Architecture ranges are enumerated (validity, budget); keep them to a sane size.
MAX_RANGE_VALUES = 4096
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
    # ASHA: at each rung a copy of the trial trains this many more epochs at the lower rates its
    # schedule has left, and the rung compares that copy's val_acc (trainers/anneal.py); 0: the
    # trial's own val_acc. Unset: `default_branch_epochs` (a sixth of the epochs).
    branch_epochs: float | None = Field(default=None, ge=0.0)
    metric: Literal["val_acc"] = "val_acc"
    mode: Literal["max"] = "max"
    # More than one: a multi-objective search (Pareto front); ASHA stops on the first, which
    # must be the trained metric (costs do not change with epochs).
    objectives: list[ObjectiveSetting] | None = None
    # Optuna's sampler: TPE handles one objective and several (MOTPE); nsga2 is the usual
    # evolutionary choice for many trials and objectives; random is the baseline.
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"

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


class Budget(_Strict):
    max_params: int | None = Field(default=None, ge=1)
    max_macs: int | None = Field(default=None, ge=1)


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
    dims: dict[str, Distribution] = {}
    forms: list[str] = []
    try:
        _extract(data, TrainConfig, "", dims, forms)
    except ConfigError as e:
        raise e.with_file(source) from None
    base = parse_config(data, source)
    if not any(dist.is_searched(d) for d in dims.values()) and "num_samples" not in (
            sections_data.get("search") or {}):
        # One point (a gunn-train config, an exported trial): train it once, not 32 times.
        sections.search.num_samples = 1
    space = Space(sections.name, base, dims, tuple(forms), sections.search, sections.resources,
                  sections.budget, {**data_with_dims(data, dims), **_sections_data(sections)},
                  source)
    # Resolved here, not written back into `space.data`: a changed `epochs` (--max-epochs)
    # re-parses the data and moves the rung and the branch with it.
    if space.search.branch_epochs is None:
        space.search.branch_epochs = default_branch_epochs(space)
    if space.search.grace_period is None:
        space.search.grace_period = default_grace_period(space)
    try:
        _check_cross_fields(space)
    except ConfigError as e:
        raise e.with_file(source) from None
    return space


# Measured on the digits problem of benchmarks/rank_correlation.py (12 epochs, step schedule):
# a branch of 2 epochs (a sixth) at the schedule's lower rates after epoch 2 (a sixth) ranked
# configurations as their final val_acc does (Spearman 0.94; the trial's own val_acc there:
# -0.27), and in the replay of ASHA it was the cheapest first rung that kept the best
# configurations (benchmarks/RESULTS.md, "Rung results that predict the end").
BRANCH_SHARE = 1 / 6


def default_branch_epochs(space: Space) -> float:
    """The annealing branch's length when the space sets none: a sixth of the epochs; none in a
    multi-objective search. There a rung compares points whose costs are exact from the start,
    and a branch's epochs are trials not trained to the end: in the replay of the digits
    problem, Pareto rungs at the lr drop on the trial's own val_acc left a larger front
    (hypervolume 0.607 at 72 epochs, 0.680 at 144) than at a sixth with 2-epoch branches
    (0.580, 0.643). RESULTS.md, "Multi-objective rungs"."""
    if len(space.search.objective_list) > 1:
        return 0.0
    return round(space.max_epochs * BRANCH_SHARE, 2)


def default_grace_period(space: Space) -> int:
    """ASHA's first rung when the space sets none.

    With annealing branches at the rungs (`search.branch_epochs` > 0): a sixth of the epochs,
    where a branch's result already ranks configurations (see BRANCH_SHARE). Without them, the
    trial's own val_acc is what a rung compares, and under a step schedule: the first epoch trained at the lower lr (epoch e of E is when
    e >= milestones[0] * E; the latest over the space's samples). Before it, val_acc ranked
    configurations backwards in benchmarks/rank_correlation.py (Spearman -0.44 at epoch 2 of
    12, 0.88 at the drop, epoch 6). Under any other schedule: half of the epochs. Under
    cosine, val_acc ranked by chance until epoch 5 of 12 (Spearman 0.51 at 6, 0.86 at 9), and
    in the replay of ASHA on those curves a rung at half the epochs lost least to no early
    stopping (mean best 0.902 against 0.893 at epoch 2 and FIFO's 0.908); a constant lr was not
    measured. RESULTS.md, "Rank correlation".
    """
    if space.search.scheduler == "asha" and space.search.branch_epochs:
        return max(1, math.ceil(space.max_epochs * BRANCH_SHARE - 1e-9))
    half = max(1, math.ceil(space.max_epochs / 2))
    if "step" not in space.values_at("schedule.kind"):
        return half
    firsts = [m[0] for m in space.values_at("schedule.milestones") if m]
    if not firsts:
        return half
    return min(max(1, math.ceil(max(firsts) * space.max_epochs - 1e-9)), space.max_epochs)


def _sections_data(sections: SearchSections) -> dict:
    return sections.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def data_with_dims(data: dict, dims: dict[str, Distribution]) -> dict:
    """The space as a YAML mapping again (distributions written back in place)."""
    out = copy.deepcopy(data)
    for path, d in dims.items():
        stage_dim = path.rsplit(".", 1)[-1] if path.startswith("model.stages.") else None
        if stage_dim == "n":
            stage = get_path(out, path.rsplit(".", 1)[0])
            stage.pop("N", None)
        if isinstance(d, Choice) and len(d.values) == 1 and stage_dim in ("n", "N", "P"):
            set_path(out, path, d.values[0])
        else:
            set_path(out, path, to_yaml(d))
    return out


def to_yaml(d: Distribution) -> dict:
    if isinstance(d, Choice):
        return {"choice": list(d.values)}
    out = {"low": d.low, "high": d.high}
    if d.log:
        out["log"] = True
    if d.step is not None:
        out["step"] = d.step
    return out


# --- distributions inside the config ---------------------------------------------------------------

def _extract(data: dict, model: type[BaseModel], prefix: str, dims: dict, forms: list) -> None:
    """Move every distribution in ``data`` (a section validated by ``model``) into ``dims``,
    leaving one of its values in its place."""
    for key, value in list(data.items()):
        info = model.model_fields.get(key)
        if info is None or (model is TrainConfig and key == "tracking"):
            continue  # an unknown key is reported by the schema; tracking is never searched
        path = f"{prefix}{key}"
        t = core_type(info.annotation)
        if _is_model(t):
            if dist.looks_like_distribution(value):
                raise ConfigError("a section of settings cannot be a distribution; put "
                                  "distributions on the values inside it", field=path)
            if isinstance(value, dict):
                _extract(value, t, f"{path}.", dims, forms)
        elif model.__name__ == "ModelConfig" and key == "stages" and isinstance(value, list):
            for i, stage in enumerate(value):
                if isinstance(stage, dict):
                    _extract_stage(stage, f"{path}.{i}", dims)
                    forms.append("n" if "n" in stage else "N")
                    stage.pop("n", None)
        elif dist.looks_like_distribution(value):
            kind = scalar_kind(t)
            if kind is None:
                raise ConfigError("cannot be searched: it takes a list or a mapping, not one "
                                  "value", field=path)
            d = _parse(value, kind, coercer(model, key), path)
            dims[path] = d
            data[key] = dist.first(d)


def _extract_stage(stage: dict, path: str, dims: dict) -> None:
    """A stage's n/N, P, K, M: N-form stages sample only N that an allowed P divides."""
    if "n" in stage and "N" in stage:
        raise ConfigError("set exactly one of N (layer width) or n (segment width, N = n*P), "
                          "not both", field=path)
    if "n" not in stage and "N" not in stage:
        raise ConfigError("set one of N (layer width) or n (segment width, N = n*P)", field=path)
    if "P" not in stage:
        raise ConfigError("required key is missing", field=f"{path}.P")
    width = "n" if "n" in stage else "N"
    ds: dict[str, Distribution] = {}
    for dim in (width, "P", "K", "M"):
        if dim not in stage:
            continue
        v, where = stage[dim], f"{path}.{dim}"
        coerce = coercer(StageConfig, "N" if dim == "n" else dim)
        if dist.looks_like_distribution(v):
            d = _parse(v, "int", coerce, where)
            if isinstance(d, Range) and dist.size(d) > MAX_RANGE_VALUES:
                raise ConfigError(f"range [{d.low}, {d.high}] has more than {MAX_RANGE_VALUES} "
                                  "values; use a step or a choice list", field=where)
        elif dim in ("K", "M"):
            continue  # a plain value: the training config checks it
        else:
            try:
                d = Choice((coerce(v),))
            except ValueError as e:
                raise ConfigError(str(e), field=where) from None
        ds[dim] = d
    Ps = dist.values(ds["P"])
    if width == "N":
        Ns = dist.values(ds["N"])
        reach = reachable_N(ds["N"], ds["P"])
        if not reach:
            raise ConfigError(f"no allowed P divides any allowed N (N in {short_list(Ns)}, "
                              f"P in {short_list(Ps)})", field=f"{path}.P")
        # A value written in a choice that can never be sampled is surely a mistake.
        if isinstance(ds["N"], Choice):
            for N in Ns:
                if not any(divides(P, N) for P in Ps):
                    raise ConfigError(f"{N} is not divisible by any allowed P (P in "
                                      f"{short_list(Ps)})", field=f"{path}.N")
        if isinstance(ds["P"], Choice):
            for P in Ps:
                if not any(divides(P, N) for N in Ns):
                    raise ConfigError(f"{P} divides no allowed N (N in {short_list(Ns)})",
                                      field=f"{path}.P")
        N0 = reach[0]
        P0 = next(P for P in Ps if divides(P, N0))
    else:
        P0 = Ps[0]
        N0 = dist.first(ds["n"]) * P0
    stage.update({"N": N0, "P": P0})
    for dim, d in ds.items():
        dims[f"{path}.{dim}"] = d
        if dim in ("K", "M"):
            stage[dim] = dist.first(d)


def reachable_N(N: Distribution, P: Distribution) -> list[int]:
    """The allowed N of an N-form stage that some allowed P divides."""
    Ps = dist.values(P)
    return [n for n in dist.values(N) if any(divides(p, n) for p in Ps)]


def short_list(vs: list, limit: int = 12) -> str:
    if len(vs) <= limit:
        return "[" + ", ".join(dist.fmt(v) for v in vs) + "]"
    return "[" + ", ".join(dist.fmt(v) for v in vs[:limit]) + f", ... ({len(vs)} values)]"


def _parse(value: dict, kind: str, coerce, path: str) -> Distribution:
    try:
        return dist.parse(value, kind, coerce)
    except ValueError as e:
        raise ConfigError(str(e), field=path) from None


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def scalar_kind(t) -> str | None:
    """"int", "float" or "other" for a key holding one value; None for a list or mapping."""
    if t is bool or t is str or typing.get_origin(t) is Literal:
        return "other"
    if t is int:
        return "int"
    if t is float:
        return "float"
    return None


@functools.lru_cache(maxsize=None)
def coercer(model: type[BaseModel], key: str):
    """Validate one value as ``model``'s field ``key`` would; ValueError with the problem."""
    info = model.model_fields[key]
    t = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    adapter = TypeAdapter(t)

    def coerce(x):
        try:
            return adapter.validate_python(x)
        except ValidationError as e:
            raise ValueError(describe_error(e.errors()[0])[1]) from None

    return coerce


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
    if space.values_at("data.split") != ["search"]:
        raise ConfigError("a search selects on a validation split; use split: search (final "
                          "trains on train + val and reports the test set)", field="data.split")
    _check_each_choice(space)
    from gunn_search.space.budget import check_feasible
    check_feasible(space)


def _check_each_choice(space: Space) -> None:
    """Every value of a choice outside the stages makes a valid config with the rest at the base:
    rules across keys (model.name: a registered model, and not with stages) hold for each."""
    base = space.base.model_dump(mode="json")
    for path, d in space.dims.items():
        if path.startswith("model.stages.") or not isinstance(d, Choice):
            continue
        for v in d.values[1:]:
            data = copy.deepcopy(base)
            set_path(data, path, v)
            try:
                TrainConfig.model_validate(data)
            except ValidationError as e:
                raise ConfigError(f"choice {v!r}: {describe_error(e.errors()[0])[1]}",
                                  field=path) from None


# --- dotted paths --------------------------------------------------------------------------------

def _keys(path: str) -> list:
    return [int(k) if k.isdigit() else k for k in path.split(".")]


def get_path(data, path: str):
    for k in _keys(path):
        data = data[k]
    return data


def set_path(data, path: str, value) -> None:
    *head, last = _keys(path)
    for k in head:
        data = data[k]
    data[last] = value


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
