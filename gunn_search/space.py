"""Search spaces: the YAML schema of one search experiment, and its define-by-run sampler.

A space file is a complete experiment (dataset, the architecture dimensions to search, the optimiser
dimensions, the training and search settings, resources and an optional cost budget); see the files
in ``search_spaces/`` and ``docs/`` for examples. `load_space` validates a file and raises
`SpaceError`, whose message is one line naming the file, the field and the problem.

Sampling is Optuna define-by-run (`sample_config`, used as ``OptunaSearch(space=define_by_run(space))``):
only the searched dimensions are suggested, and the function returns the fully resolved configuration
as flat constants, so the trainable reads everything from these keys::

    family, stage{i}.N, stage{i}.P, stage{i}.K, stage{i}.M   (i = 1, 2, ...; N = n * P)
    lr, weight_decay, batch_size
    cost.params, cost.macs, cost.activation_bytes, budget_ok

Every sampled point is a valid network (N divisible by P). An "N-form" stage samples N first and then
P among the allowed values that divide it, under a name that depends on N (``stage{i}.P_N{N}``),
because Optuna forbids a categorical parameter whose choices change between trials. Parameter names
never contain "/" (Ray unflattens config keys on "/") and use only characters MLflow accepts in a
parameter name. A sampler cannot reject a point, so points over the budget come back with
``budget_ok: False`` and the trainable records them without training.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field,
                      PrivateAttr, Tag, ValidationError, model_validator)

from trainers.cost import Cost, estimate, layer_cost
from trainers.spec import NetworkSpec, StageSpec

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "search_spaces"

DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}
IN_CHANNELS = 3  # every dataset in trainers.data yields 3-channel 32x32 images

# Architecture ranges are enumerated (validity, budget); keep them to a sane size.
MAX_RANGE_VALUES = 4096
# Exact budget check: largest number of whole-network candidates costed (after pruning).
MAX_BUDGET_CANDIDATES = 200_000


class SpaceError(Exception):
    """A bad search-space file; str() is one line: ``file: field: problem``."""

    def __init__(self, problem: str, file: str | None = None, field: str | None = None):
        self.problem = " ".join(str(problem).split("\n"))
        self.file = file
        self.field = field
        super().__init__(str(self))

    def with_file(self, file: str) -> "SpaceError":
        return SpaceError(self.problem, file=file, field=self.field)

    def __str__(self) -> str:
        return ": ".join(p for p in (self.file, self.field, self.problem) if p)


# --- parameter types --------------------------------------------------------------------------------
#
# A searchable parameter is a fixed scalar, {choice: [...]} or {low, high, ...}. The three forms are
# a tagged union; the tags start with "~" so that error locations can drop them.

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _float_from_str(v: Any) -> Any:
    # PyYAML (YAML 1.1) reads `1e-4` (no dot) as a string; accept such plain numbers as floats.
    if isinstance(v, str) and _FLOAT_RE.match(v.strip()):
        return float(v)
    return v


YamlFloat = Annotated[float, BeforeValidator(_float_from_str), Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _no_duplicates(values: list) -> None:
    seen = []
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate choice {v!r}")
        seen.append(v)


class IntChoice(_Model):
    choice: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        _no_duplicates(self.choice)
        return self


class IntRange(_Model):
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low})")
        if self.log and self.step != 1:
            raise ValueError(f"a log range cannot have a step (got step={self.step})")
        if (self.high - self.low) % self.step:
            raise ValueError(f"high - low ({self.high - self.low}) must be a multiple of step "
                             f"({self.step})")
        return self


class FloatChoice(_Model):
    choice: list[YamlFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        _no_duplicates(self.choice)
        return self


class FloatRange(_Model):
    low: YamlFloat
    high: YamlFloat
    log: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low})")
        return self


FamilyName = Literal["gunn", "sunn"]


class FamilyChoice(_Model):
    choice: list[FamilyName] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        _no_duplicates(self.choice)
        return self


def _kind(v: Any) -> str | None:
    """The form of a searchable parameter (the union's tag); None for a value of no form."""
    if isinstance(v, dict):
        return "~choice" if "choice" in v else "~range"
    if isinstance(v, (IntChoice, FloatChoice, FamilyChoice)):
        return "~choice"
    if isinstance(v, (IntRange, FloatRange)):
        return "~range"
    if v is None or isinstance(v, (list, tuple, set)):
        return None
    return "~fixed"


def _kind_no_range(v: Any) -> str | None:
    return "~choice" if isinstance(v, dict) else _kind(v)


def _param(fixed, choice, rng, what: str):
    members = [Annotated[fixed, Tag("~fixed")], Annotated[choice, Tag("~choice")]]
    if rng is not None:
        members.append(Annotated[rng, Tag("~range")])
        form = f"{what}, {{choice: [...]}} or {{low: ..., high: ...}}"
    else:
        form = f"{what} or {{choice: [...]}}"
    return Annotated[Union[tuple(members)],
                     Discriminator(_kind if rng is not None else _kind_no_range,
                                   custom_error_type="param_form",
                                   custom_error_message=f"expected {form}")]


def _bounded(minimum: float, inclusive: bool = True):
    """An after-validator: every value a parameter allows is >= (or >) minimum."""
    op = ">=" if inclusive else ">"

    def ok(x):
        return x >= minimum if inclusive else x > minimum

    def check(p):
        if isinstance(p, (IntChoice, FloatChoice)):
            bad = [v for v in p.choice if not ok(v)]
            if bad:
                raise ValueError(f"choices must be {op} {minimum:g} (got {bad[0]!r})")
        elif isinstance(p, (IntRange, FloatRange)):
            if not ok(p.low):
                raise ValueError(f"low must be {op} {minimum:g} (got {p.low!r})")
        elif not ok(p):
            raise ValueError(f"must be {op} {minimum:g} (got {p!r})")
        return p

    return AfterValidator(check)


PosIntParam = Annotated[_param(int, IntChoice, IntRange, "an integer"), _bounded(1)]
PositiveFloatParam = Annotated[_param(YamlFloat, FloatChoice, FloatRange, "a number"),
                               _bounded(0.0, inclusive=False)]
NonNegFloatParam = Annotated[_param(YamlFloat, FloatChoice, FloatRange, "a number"), _bounded(0.0)]
FamilyParam = _param(FamilyName, FamilyChoice, None, "'gunn' or 'sunn'")


# --- the schema -----------------------------------------------------------------------------------

class DatasetSpace(_Model):
    name: Literal["cifar10", "cifar100", "synthetic", "digits"]
    data_dir: str = "data"
    val_fraction: YamlFloat = Field(default=0.1, gt=0.0, lt=1.0)
    download: bool = True
    split_seed: int = 0  # fixes the train/val split (and synthetic data), the same for every trial
    synthetic_train_size: int | None = Field(default=None, ge=10)  # synthetic only (default 2000)
    synthetic_test_size: int | None = Field(default=None, ge=10)  # synthetic only (default 500)
    synthetic_num_classes: Literal[10, 100] | None = None  # synthetic only (default 10)


class StageSpace(_Model):
    """One GUNN/SUNN layer: either N (width) and P, or n (segment width, N = n * P) and P."""

    N: PosIntParam | None = None
    n: PosIntParam | None = None
    P: PosIntParam
    K: PosIntParam = 2
    M: PosIntParam = 1


class ModelSpace(_Model):
    family: FamilyParam = "gunn"
    stem: Literal["cifar", "imagenet"] = "cifar"
    stem_channels: int = Field(default=64, ge=1)
    head_channels: int | None = Field(default=None, ge=1)
    projection: bool = True
    gunn_mode: Literal["recompute", "keep", "naive"] = "recompute"
    stages: list[StageSpace] = Field(min_length=1)


class TrainSpace(_Model):
    batch_size: PosIntParam = 64
    epochs: int = Field(default=30, ge=1)  # max epochs per trial (ASHA max_t)
    schedule: Literal["step", "cosine", "constant"] = "step"
    warmup_epochs: YamlFloat = Field(default=0.0, ge=0.0)
    nesterov: bool = True
    cyclic_shift: bool = False


class SearchSettings(_Model):
    num_samples: int = Field(default=32, ge=1)
    seed: int = Field(default=0, ge=0)
    max_concurrent: int = Field(default=4, ge=1)
    grace_period: int = Field(default=2, ge=1)
    reduction_factor: int = Field(default=3, ge=2)
    metric: Literal["val_acc"] = "val_acc"
    mode: Literal["max"] = "max"


class ResourcesSpace(_Model):
    cpus_per_trial: YamlFloat = Field(default=1.0, gt=0.0)
    gpus_per_trial: YamlFloat = Field(default=0.0, ge=0.0)


class BudgetSpace(_Model):
    max_params: int | None = Field(default=None, ge=1)
    max_macs: int | None = Field(default=None, ge=1)


class SearchSpace(_Model):
    name: str | None = Field(default=None, min_length=1)  # MLflow experiment (default: file stem)
    dataset: DatasetSpace
    model: ModelSpace
    lr: PositiveFloatParam = 0.1
    weight_decay: NonNegFloatParam = 1e-4
    train: TrainSpace = Field(default_factory=TrainSpace)
    search: SearchSettings = Field(default_factory=SearchSettings)
    resources: ResourcesSpace = Field(default_factory=ResourcesSpace)
    budget: BudgetSpace | None = None

    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this space was loaded from, if any."""
        return self._source

    @model_validator(mode="after")
    def _semantics(self):
        _check_semantics(self)
        return self


# --- parameter helpers ----------------------------------------------------------------------------

def values(p) -> list:
    """Every value a parameter allows (a range's integers; a float range gives [low, high])."""
    if isinstance(p, (IntChoice, FloatChoice, FamilyChoice)):
        return list(p.choice)
    if isinstance(p, IntRange):
        return list(range(p.low, p.high + 1, p.step))
    if isinstance(p, FloatRange):
        return [p.low] if p.low == p.high else [p.low, p.high]
    return [p]


def is_searched(p) -> bool:
    """Whether a parameter has more than one allowed value."""
    if isinstance(p, IntRange):
        return p.high > p.low
    return len(values(p)) > 1


def allows(p, v) -> bool:
    """Whether value ``v`` lies in parameter ``p``."""
    if isinstance(v, bool):
        return isinstance(p, bool) and p == v
    if isinstance(p, FloatRange):
        return isinstance(v, (int, float)) and p.low <= v <= p.high
    if isinstance(p, IntRange):
        return isinstance(v, int) and p.low <= v <= p.high and (v - p.low) % p.step == 0
    return v in values(p)


def describe(p) -> str:
    if isinstance(p, (IntChoice, FloatChoice, FamilyChoice)):
        return "{" + ", ".join(_fmt(v) for v in p.choice) + "}"
    if isinstance(p, IntRange):
        s = f"[{p.low}, {p.high}]"
        if p.step != 1:
            s += f" step {p.step}"
        return s + (" log" if p.log else "")
    if isinstance(p, FloatRange):
        return f"[{_fmt(p.low)}, {_fmt(p.high)}]" + (" log-uniform" if p.log else " uniform")
    return _fmt(p)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _short_list(vs: list, limit: int = 12) -> str:
    if len(vs) <= limit:
        return "[" + ", ".join(_fmt(v) for v in vs) + "]"
    return "[" + ", ".join(_fmt(v) for v in vs[:limit]) + f", ... ({len(vs)} values)]"


def _suggest_int(trial, name: str, p) -> int:
    if isinstance(p, IntRange):
        if p.high == p.low:
            return p.low
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, IntChoice):
        return p.choice[0] if len(p.choice) == 1 else trial.suggest_categorical(name, p.choice)
    return p


def _suggest_float(trial, name: str, p) -> float:
    if isinstance(p, FloatRange):
        if p.high == p.low:
            return p.low
        return trial.suggest_float(name, p.low, p.high, log=p.log)
    if isinstance(p, FloatChoice):
        return p.choice[0] if len(p.choice) == 1 else trial.suggest_categorical(name, p.choice)
    return p


def _suggest_cat(trial, name: str, p):
    if isinstance(p, FamilyChoice):
        return p.choice[0] if len(p.choice) == 1 else trial.suggest_categorical(name, p.choice)
    return p


def _reachable_N(stage: StageSpace) -> list[int]:
    """The allowed N of an N-form stage that some allowed P divides."""
    Ps = values(stage.P)
    return [N for N in values(stage.N) if any(N % P == 0 for P in Ps)]


# --- semantic checks ------------------------------------------------------------------------------

def _check_semantics(space: SearchSpace) -> None:
    """Cross-field rules; raises SpaceError (field path, no file) on the first problem."""
    def fail(field: str, problem: str):
        raise SpaceError(problem, field=field)

    ds = space.dataset
    if ds.name != "synthetic":
        for f in ("synthetic_train_size", "synthetic_test_size", "synthetic_num_classes"):
            if getattr(ds, f) is not None:
                fail(f"dataset.{f}", f"only valid for dataset.name 'synthetic' (got {ds.name!r})")

    for i, st in enumerate(space.model.stages):
        where = f"model.stages[{i}]"
        for dim in ("N", "n", "P", "K", "M"):
            p = getattr(st, dim)
            if isinstance(p, IntRange) and len(range(p.low, p.high + 1, p.step)) > MAX_RANGE_VALUES:
                fail(f"{where}.{dim}", f"range [{p.low}, {p.high}] has more than "
                     f"{MAX_RANGE_VALUES} values; use a step or a choice list")
        if st.N is not None and st.n is not None:
            fail(where, "set exactly one of N (layer width) or n (segment width, N = n*P), not both")
        if st.N is None and st.n is None:
            fail(where, "set one of N (layer width) or n (segment width, N = n*P)")
        if st.N is None:
            continue
        Ns, Ps = values(st.N), values(st.P)
        if not _reachable_N(st):
            fail(f"{where}.P", f"no allowed P divides any allowed N (N in {_short_list(Ns)}, "
                 f"P in {_short_list(Ps)})")
        # An explicitly listed value that can never be sampled is surely a mistake.
        if isinstance(st.N, IntChoice):
            for N in st.N.choice:
                if not any(N % P == 0 for P in Ps):
                    fail(f"{where}.N", f"{N} is not divisible by any allowed P "
                         f"(P in {_short_list(Ps)})")
        if isinstance(st.P, IntChoice):
            for P in st.P.choice:
                if not any(N % P == 0 for N in Ns):
                    fail(f"{where}.P", f"{P} divides no allowed N (N in {_short_list(Ns)})")

    tr, se = space.train, space.search
    if tr.warmup_epochs >= tr.epochs:
        fail("train.warmup_epochs", f"must be < train.epochs ({tr.epochs}) (got {tr.warmup_epochs:g})")
    if se.grace_period > tr.epochs:
        fail("search.grace_period", f"must be <= train.epochs ({tr.epochs}) (got {se.grace_period})")

    b = space.budget
    if b is not None and (b.max_params is not None or b.max_macs is not None):
        lo = min_costs(space)
        if not lo.feasible:
            if b.max_params is not None and lo.params > b.max_params:
                fail("budget.max_params", f"no configuration in the space fits: the smallest has "
                     f"{lo.params:,} params > {b.max_params:,}")
            if b.max_macs is not None and lo.macs > b.max_macs:
                fail("budget.max_macs", f"no configuration in the space fits: the smallest has "
                     f"{lo.macs:,} MACs > {b.max_macs:,}")
            fail("budget", f"no configuration in the space has both params <= {b.max_params:,} "
                 f"and MACs <= {b.max_macs:,}")


# --- costs ----------------------------------------------------------------------------------------

def image_size(space: SearchSpace) -> int:
    """Input resolution for the cost model: 224 for the ImageNet stem, else 32 (all datasets are 32x32)."""
    return 224 if space.model.stem == "imagenet" else 32


def dataset_num_classes(space: SearchSpace) -> int:
    ds = space.dataset
    if ds.name == "synthetic":
        return ds.synthetic_num_classes or 10
    return DATASET_CLASSES[ds.name]


def spec_cost(space: SearchSpace, spec: NetworkSpec) -> Cost:
    return estimate(spec, image_size=image_size(space), gunn_mode=space.model.gunn_mode)


def within_budget(space: SearchSpace, cost: Cost) -> bool:
    b = space.budget
    if b is None:
        return True
    return ((b.max_params is None or cost.params <= b.max_params)
            and (b.max_macs is None or cost.macs <= b.max_macs))


class MinCosts(typing.NamedTuple):
    params: int  # smallest parameter count of any configuration in the space
    macs: int  # smallest MAC count of any configuration in the space
    feasible: bool  # whether some configuration meets the whole budget (True without a budget)
    exact: bool  # False if the space was too large to search exhaustively


def _stage_candidates(st: StageSpace, projection: bool) -> list[StageSpec]:
    """The stage settings that can be the cheapest part of a whole-network configuration.

    Params and MACs never decrease with N (or n), K or M, so the minima of K and M suffice and,
    for each allowed P, the smallest N it allows. The network around a layer depends on the layer
    only through N, so a candidate whose N and layer cost are both no smaller than another's can
    be dropped.
    """
    K, M = min(values(st.K)), min(values(st.M))
    if st.n is not None:
        n = min(values(st.n))
        pairs = [(n * P, P) for P in values(st.P)]
    else:
        Ns = sorted(values(st.N))
        pairs = []
        for P in values(st.P):
            N = next((N for N in Ns if N % P == 0), None)
            if N is not None:
                pairs.append((N, P))
    costed = sorted((N, c.params, c.macs, P) for N, P in pairs
                    for c in [layer_cost(N, P, K, M, projection, 1)])
    keep: list[tuple] = []
    for N, params, macs, P in costed:
        if not any(k[0] <= N and k[1] <= params and k[2] <= macs for k in keep):
            keep.append((N, params, macs, P))
    return [StageSpec(N, P, K, M) for N, _, _, P in keep]


def min_costs(space: SearchSpace) -> MinCosts:
    """The smallest params and MACs in the space and whether any configuration meets the budget."""
    per_stage = [_stage_candidates(st, space.model.projection) for st in space.model.stages]
    families = values(space.model.family)
    total = math.prod(len(c) for c in per_stage) * len(families)
    b = space.budget
    best_p = best_m = None
    feasible = False
    exact = total <= MAX_BUDGET_CANDIDATES
    if exact:
        combos = itertools.product(families, *per_stage)
    else:  # too many: try the per-stage cheapest-by-params and -by-MACs points only (heuristic)
        proj = space.model.projection
        picks = [[min(c, key=lambda s: getattr(layer_cost(s.N, s.P, s.K, s.M, proj, 1), key))
                  for c in per_stage] for key in ("params", "macs")]
        combos = [(f, *p) for f in families for p in picks]
    for fam, *stages in combos:
        cost = spec_cost(space, _spec(space, fam, stages))
        best_p = cost.params if best_p is None else min(best_p, cost.params)
        best_m = cost.macs if best_m is None else min(best_m, cost.macs)
        feasible = feasible or within_budget(space, cost)
    if not exact and b is not None and not feasible:
        feasible = True  # not proven infeasible; the sampler will flag points over the budget
    return MinCosts(best_p, best_m, feasible, exact)


def _spec(space: SearchSpace, family: str, stages, num_classes: int | None = None) -> NetworkSpec:
    m = space.model
    return NetworkSpec(stages=tuple(stages), family=family, stem=m.stem,
                       stem_channels=m.stem_channels, head_channels=m.head_channels,
                       projection=m.projection,
                       num_classes=dataset_num_classes(space) if num_classes is None else num_classes,
                       in_channels=IN_CHANNELS)


# --- sampling -------------------------------------------------------------------------------------

def sample_config(trial, space: SearchSpace) -> dict:
    """Optuna define-by-run: suggest the searched dimensions, return the full resolved config."""
    cfg: dict[str, Any] = {}
    cfg["family"] = _suggest_cat(trial, "family", space.model.family)
    stages = []
    for i, st in enumerate(space.model.stages, 1):
        if st.n is not None:
            n = _suggest_int(trial, f"stage{i}.n", st.n)
            P = _suggest_int(trial, f"stage{i}.P", st.P)
            N = n * P
        else:
            reachable = _reachable_N(st)
            if len(reachable) == 1:
                N = reachable[0]
            elif isinstance(st.N, IntRange) and len(reachable) == len(values(st.N)):
                N = trial.suggest_int(f"stage{i}.N", st.N.low, st.N.high, step=st.N.step,
                                      log=st.N.log)
            else:
                N = trial.suggest_categorical(f"stage{i}.N", reachable)
            divisors = [P for P in values(st.P) if N % P == 0]
            if len(divisors) == 1:
                P = divisors[0]
            elif len(reachable) == 1:
                P = trial.suggest_categorical(f"stage{i}.P", divisors)
            else:  # the choices depend on N, so the parameter's name does too
                P = trial.suggest_categorical(f"stage{i}.P_N{N}", divisors)
        K = _suggest_int(trial, f"stage{i}.K", st.K)
        M = _suggest_int(trial, f"stage{i}.M", st.M)
        cfg.update({f"stage{i}.N": N, f"stage{i}.P": P, f"stage{i}.K": K, f"stage{i}.M": M})
        stages.append(StageSpec(N, P, K, M))
    cfg["lr"] = _suggest_float(trial, "lr", space.lr)
    cfg["weight_decay"] = _suggest_float(trial, "weight_decay", space.weight_decay)
    cfg["batch_size"] = _suggest_int(trial, "batch_size", space.train.batch_size)
    cost = spec_cost(space, _spec(space, cfg["family"], stages))
    cfg["cost.params"] = cost.params
    cfg["cost.macs"] = cost.macs
    cfg["cost.activation_bytes"] = cost.activation_bytes
    cfg["budget_ok"] = within_budget(space, cost)
    return cfg


def define_by_run(space: SearchSpace) -> Callable:
    """The picklable define-by-run function for ``OptunaSearch(space=...)``."""
    return functools.partial(sample_config, space=space)


def network_spec(space: SearchSpace, config: dict, num_classes: int | None = None) -> NetworkSpec:
    """The NetworkSpec of a resolved config (the flat keys `sample_config` returns)."""
    stages = []
    for i in range(1, len(space.model.stages) + 1):
        try:
            stages.append(StageSpec(*(int(config[f"stage{i}.{d}"]) for d in "NPKM")))
        except KeyError as e:
            raise KeyError(f"config lacks {e.args[0]!r}") from None
    family = config.get("family", values(space.model.family)[0])
    return _spec(space, family, stages, num_classes)


def contains(space: SearchSpace, config: dict) -> bool:
    """Whether a resolved config (flat keys) lies in the space.

    Every stage's N and P must be given; K, M, family, lr, weight_decay and batch_size are checked
    when present (an absent K or M counts as the StageSpec default, 2 and 1).
    """
    if any(k.startswith(f"stage{len(space.model.stages) + 1}.") for k in config):
        return False
    if "family" in config and not allows(space.model.family, config["family"]):
        return False
    for i, st in enumerate(space.model.stages, 1):
        try:
            N, P = config[f"stage{i}.N"], config[f"stage{i}.P"]
        except KeyError:
            return False
        K, M = config.get(f"stage{i}.K", 2), config.get(f"stage{i}.M", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (N, P, K, M)):
            return False
        if N % P or not allows(st.P, P) or not allows(st.K, K) or not allows(st.M, M):
            return False
        if st.n is not None and not allows(st.n, N // P):
            return False
        if st.N is not None and not allows(st.N, N):
            return False
    for key, p in (("lr", space.lr), ("weight_decay", space.weight_decay),
                   ("batch_size", space.train.batch_size)):
        if key in config and not allows(p, config[key]):
            return False
    return True


def example_configs(space: SearchSpace, n: int = 5, seed: int = 0) -> list[dict]:
    """``n`` configs drawn through `sample_config` with a random sampler (for --dry-run)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        return [sample_config(study.ask(), space) for _ in range(n)]
    finally:
        optuna.logging.set_verbosity(level)


# --- loading --------------------------------------------------------------------------------------

def bundled_spaces() -> list[str]:
    """Names of the bundled space files."""
    return sorted(p.name for p in BUNDLED_DIR.glob("*.yaml")) if BUNDLED_DIR.is_dir() else []


def resolve_space_path(path_or_name: str | Path) -> Path:
    """An existing file, or a bundled space by name ("cifar_gunn15" or "cifar_gunn15.yaml")."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    if p.exists():
        raise SpaceError("not a file", file=str(p))
    name = str(path_or_name)
    if p.name == name and name:  # a bare name: look in the bundled directory
        for cand in (name, f"{name}.yaml", f"{name}.yml"):
            if (BUNDLED_DIR / cand).is_file():
                return BUNDLED_DIR / cand
        raise SpaceError(f"no such file, and no bundled space of that name "
                         f"(bundled: {', '.join(bundled_spaces()) or 'none'})", file=name)
    raise SpaceError("no such file", file=name)


def load_space(path_or_name: str | Path) -> SearchSpace:
    """Read, validate and return a search space; SpaceError (one line) on any problem."""
    path = resolve_space_path(path_or_name)
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"cannot read: {e.__class__.__name__}: {e}", file=src) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(_yaml_problem(e), file=src) from None
    if data is None:
        raise SpaceError("empty file (expected a mapping of settings)", file=src)
    if not isinstance(data, dict):
        raise SpaceError(f"expected a mapping of settings at the top level (got {type(data).__name__})",
                         file=src)
    space = parse_space(data, src)
    if space.name is None:
        space = space.model_copy(update={"name": path.stem})
    space._source = src
    return space


def parse_space(data: dict, source: str = "space") -> SearchSpace:
    """Validate a mapping (a parsed space file); SpaceError naming ``source`` on any problem."""
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        field, problem = _format_error(_first_error(e.errors()))
        raise SpaceError(problem, file=source, field=field) from None
    except SpaceError as e:
        raise e.with_file(source) from None


FINGERPRINT_EXCLUDE = {"name": True, "dataset": {"data_dir": True, "download": True}}


def space_fingerprint(space: SearchSpace) -> str:
    """sha256 of the canonical JSON of the validated space, to tell a resumed search's space apart.

    Defaults are filled in, so writing a default value out does not change it. Left out: the
    experiment's label (`name`) and where the data lives and whether it may be downloaded
    (`dataset.data_dir`, `dataset.download`), which do not change what the trials mean.
    """
    canon = json.dumps(space.model_dump(mode="json", exclude=FINGERPRINT_EXCLUDE), sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _first_error(errors: list[dict]) -> dict:
    """The error to report: the first, but a misspelt key rather than the key it leaves missing."""
    first = errors[0]
    if first["type"] == "missing":
        parent = first["loc"][:-1]
        for e in errors:
            if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent:
                return e
    return first


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["unknown error"])[0]
    if isinstance(e, yaml.constructor.ConstructorError):
        return f"{where}unsupported YAML tag (plain YAML only): {problem}"
    return f"{where}malformed YAML: {problem}"


def _loc_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("~"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _format_error(err: dict) -> tuple[str, str]:
    """(field path, problem) of one pydantic error."""
    loc, typ, ctx = err["loc"], err["type"], err.get("ctx") or {}
    got = f" (got {_show(err['input'])})" if "input" in err else ""
    if typ == "extra_forbidden":
        key = loc[-1]
        problem = f"unknown key {str(key)!r}"
        allowed = _allowed_keys(loc[:-1])
        if allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            problem += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
        return _loc_path(loc[:-1]), problem
    field = _loc_path(loc)
    if typ == "missing":
        return field, "required key is missing"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return field, f"must be an integer{got}"
    if typ in ("float_type", "float_parsing"):
        return field, f"must be a number{got}"
    if typ == "finite_number":
        return field, f"must be a finite number{got}"
    if typ in ("bool_type", "bool_parsing"):
        return field, f"must be true or false{got}"
    if typ in ("string_type",):
        return field, f"must be a string{got}"
    if typ in ("list_type",):
        return field, f"must be a list{got}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return field, f"must be a mapping of settings{got}"
    if typ == "literal_error":
        return field, f"unknown value {_show(err.get('input'))} (expected {ctx.get('expected')})"
    if typ == "too_short" and ctx.get("min_length") == 1:
        return field, "must not be empty"
    if typ == "string_too_short":
        return field, "must not be empty"
    for t, op, k in (("greater_than_equal", ">=", "ge"), ("greater_than", ">", "gt"),
                     ("less_than_equal", "<=", "le"), ("less_than", "<", "lt")):
        if typ == t:
            return field, f"must be {op} {ctx.get(k)}{got}"
    if typ == "value_error":
        return field, str(err["msg"]).removeprefix("Value error, ")
    return field, f"{err['msg']}{got}"


def _allowed_keys(loc) -> list[str] | None:
    """The field names of the model at ``loc`` (best effort, for unknown-key messages)."""
    t: Any = SearchSpace
    try:
        for part in loc:
            t = _core(t, part)
            if isinstance(part, int):
                t = typing.get_args(t)[0] if typing.get_origin(t) is list else None
            elif not part.startswith("~"):
                t = t.model_fields[part].annotation
        t = _core(t, None)
        return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else None
    except Exception:  # noqa: BLE001 - only a hint
        return None


def _core(t: Any, tag) -> Any:
    """Strip Annotated and Optional; pick a union member by its tag, or its only model member."""
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if isinstance(tag, str) and tag.startswith("~"):
                args = [a for a in args if typing.get_origin(a) is Annotated and any(
                    isinstance(m, Tag) and m.tag == tag for m in typing.get_args(a)[1:])] or args
            else:
                models = [a for a in args if isinstance(_core(a, None), type)
                          and issubclass(_core(a, None), BaseModel)]
                args = models if len(models) == 1 else args
            if len(args) != 1:
                return None
            t = args[0]
        else:
            return t


# --- summary --------------------------------------------------------------------------------------

def searched_dimensions(space: SearchSpace) -> dict[str, Any]:
    """The searched parameters by config name (N-form stages: N and P as resolved keys)."""
    out: dict[str, Any] = {}
    if is_searched(space.model.family):
        out["family"] = space.model.family
    for i, st in enumerate(space.model.stages, 1):
        for dim in ("n", "N", "P", "K", "M"):
            p = getattr(st, dim)
            if p is not None and is_searched(p):
                out[f"stage{i}.{dim}"] = p
    for key, p in (("lr", space.lr), ("weight_decay", space.weight_decay),
                   ("batch_size", space.train.batch_size)):
        if is_searched(p):
            out[key] = p
    return out


def summarize(space: SearchSpace) -> str:
    """A multi-line human summary of the space."""
    m, ds, tr, se, rs = space.model, space.dataset, space.train, space.search, space.resources
    searched = searched_dimensions(space)
    lines = [f"search space {space.name!r}" + (f" ({space.source})" if space.source else ""),
             f"  fingerprint {space_fingerprint(space)[:16]}"]
    extra = ""
    if ds.name == "synthetic":
        extra = (f", synthetic {ds.synthetic_train_size or 2000} train / "
                 f"{ds.synthetic_test_size or 500} test")
    lines.append(f"dataset: {ds.name} ({dataset_num_classes(space)} classes), data_dir={ds.data_dir}, "
                 f"val_fraction={ds.val_fraction:g}, download={ds.download}, "
                 f"split_seed={ds.split_seed}{extra}")
    lines.append(f"model: family {describe(m.family)}, stem {m.stem} ({m.stem_channels} channels), "
                 f"head {m.head_channels or 'none'}, projection {m.projection}, "
                 f"gunn_mode {m.gunn_mode}, image size {image_size(space)}")
    for i, st in enumerate(m.stages, 1):
        parts = []
        for dim in ("n", "N", "P", "K", "M"):
            p = getattr(st, dim)
            if p is not None:
                parts.append(f"{dim} {describe(p)}")
        if st.n is not None:
            Ns = sorted({a * b for a in values(st.n) for b in values(st.P)})
            note = f"N = n*P in [{Ns[0]}, {Ns[-1]}]"
        else:
            reach = _reachable_N(st)
            note = f"N reachable: {_short_list(reach, 8)}; P limited to the divisors of N"
        lines.append(f"  stage{i}: " + ", ".join(parts) + f"  ({note})")
    lines.append(f"lr: {describe(space.lr)}")
    lines.append(f"weight_decay: {describe(space.weight_decay)}")
    lines.append(f"train: batch_size {describe(tr.batch_size)}, epochs {tr.epochs}, schedule "
                 f"{tr.schedule}, warmup_epochs {tr.warmup_epochs:g}, nesterov {tr.nesterov}, "
                 f"cyclic_shift {tr.cyclic_shift}")
    lines.append(f"search: Optuna TPE, {se.num_samples} samples, seed {se.seed}, max_concurrent "
                 f"{se.max_concurrent}; ASHA grace_period {se.grace_period}, reduction_factor "
                 f"{se.reduction_factor}, max_t {tr.epochs}; metric {se.metric} ({se.mode})")
    lines.append(f"resources per trial: {rs.cpus_per_trial:g} CPU, {rs.gpus_per_trial:g} GPU")
    lo = min_costs(space)
    b = space.budget
    limits = []
    if b is not None and b.max_params is not None:
        limits.append(f"params <= {b.max_params:,}")
    if b is not None and b.max_macs is not None:
        limits.append(f"MACs <= {b.max_macs:,}")
    lines.append(f"budget: {' and '.join(limits) or 'none'}; smallest configuration: "
                 f"{lo.params:,} params, {lo.macs:,} MACs" + ("" if lo.exact else " (heuristic)"))
    lines.append(f"searched dimensions ({len(searched)}): " + (", ".join(searched) or "none"))
    return "\n".join(lines)
