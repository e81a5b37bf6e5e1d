"""A space's cost budget: the price of a sampled config, and whether any config fits at all.

Prices come from the analytic cost model (`trainers.model.cost`), so nothing is built. The feasibility
check runs after the schema has validated the space (a space that no config of fits is an error
at load time, naming the budget key).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing

from pydantic import BaseModel, ConfigDict, Field

from trainers.config import DATASETS, TrainConfig, num_classes
from trainers.config_errors import ConfigError
from trainers.model.cost import Cost, estimate, layer_cost
from trainers.model.spec import NetworkSpec, StageSpec, divides, model_spec

from gunn_search.space import distributions as dist

if typing.TYPE_CHECKING:  # the schema imports this module to check a space's budget
    from gunn_search.space.schema import Space

# Exact budget check: largest number of whole-network candidates costed (after pruning).
MAX_BUDGET_CANDIDATES = 200_000


class Budget(BaseModel):
    """A space's `budget` section: the most params and MACs a sampled config may cost."""

    model_config = ConfigDict(extra="forbid")
    max_params: int | None = Field(default=None, ge=1)
    max_macs: int | None = Field(default=None, ge=1)


def image_size(stem: str) -> int:
    """Input resolution of the cost model: 224 for the ImageNet stem; every dataset here is 32x32."""
    return 224 if stem == "imagenet" else 32


def config_cost(cfg: TrainConfig) -> Cost:
    spec = cfg.model.network_spec(num_classes(cfg.data))
    return estimate(spec, image_size=image_size(spec.stem), gunn_mode=cfg.model.gunn_mode)


def cost_metrics(cost: Cost) -> dict[str, int]:
    """A config's price under the names MLflow and the budget use."""
    return {"cost.params": cost.params, "cost.macs": cost.macs,
            "cost.activation_bytes": cost.activation_bytes}


def within_budget(budget: Budget, cost: Cost) -> bool:
    return ((budget.max_params is None or cost.params <= budget.max_params)
            and (budget.max_macs is None or cost.macs <= budget.max_macs))


class MinCosts(typing.NamedTuple):
    params: int  # smallest parameter count of any configuration in the space
    macs: int  # smallest MAC count of any configuration in the space
    feasible: bool  # whether some configuration meets the whole budget (True without a budget)
    exact: bool  # False if the space was too large to search exhaustively


def _stage_candidates(space: Space, i: int, projection: bool) -> list[StageSpec]:
    """The stage settings that can be the cheapest part of a whole-network configuration.

    Params and MACs never decrease with N (or n), K or M, so the minima of K and M suffice and,
    for each allowed P, the smallest N it allows. The network around a layer depends on the layer
    only through N, so a candidate whose N and layer cost are both no smaller than another's can
    be dropped.
    """
    p = f"model.stages.{i}"
    K, M = min(space.values_at(f"{p}.K")), min(space.values_at(f"{p}.M"))
    Ps = dist.values(space.dims[f"{p}.P"])
    if space.stage_forms[i] == "n":
        n = min(dist.values(space.dims[f"{p}.n"]))
        pairs = [(n * P, P) for P in Ps]
    else:
        Ns = sorted(dist.values(space.dims[f"{p}.N"]))
        pairs = [(N, P) for P in Ps for N in [next((N for N in Ns if divides(P, N)), None)]
                 if N is not None]
    costed = sorted((N, c.params, c.macs, P) for N, P in pairs
                    for c in [layer_cost(N, P, K, M, projection, 1)])
    keep: list[tuple] = []
    for N, params, macs, P in costed:
        if not any(k[0] <= N and k[1] <= params and k[2] <= macs for k in keep):
            keep.append((N, params, macs, P))
    return [StageSpec(N, P, K, M) for N, _, _, P in keep]


def _min_classes(space: Space) -> int:
    """The fewest classes of any dataset the space trains on (costs never decrease with them)."""
    synthetic = min(space.values_at("data.synthetic_num_classes"))
    return min(synthetic if name == "synthetic" else DATASETS[name]
               for name in space.values_at("data.name"))


def _candidate_specs(space: Space) -> tuple[typing.Iterable[NetworkSpec], bool]:
    """(specs that hold the space's cheapest points, exact?). Costs never decrease with the
    stem and head widths or the number of classes, so their smallest values stand for all;
    no head at all (head_channels null) may be cheaper than any head, so it is a candidate too."""
    classes = _min_classes(space)
    # The transition's order moves MACs, not params; None is a model's or a stem's own.
    transitions = space.values_at("model.transition")
    if not space.stage_forms:  # a registered model by name
        named = [model_spec(n, classes) for n in space.values_at("model.name")]
        return [dataclasses.replace(m, transition=t or m.transition)
                for m in named for t in transitions], True
    fams, stems, projs = (space.values_at(f"model.{k}") for k in ("family", "stem", "projection"))
    stem_ch = min(space.values_at("model.stem_channels"))
    all_heads = space.values_at("model.head_channels")
    heads = [h for h in all_heads if h is not None]
    heads = ([None] if None in all_heads else []) + ([min(heads)] if heads else [])
    per_proj = {pr: [_stage_candidates(space, i, pr) for i in range(len(space.stage_forms))]
                for pr in projs}
    total = len(fams) * len(stems) * len(heads) * len(transitions) * sum(
        math.prod(len(c) for c in cs) for cs in per_proj.values())
    exact = total <= MAX_BUDGET_CANDIDATES

    def spec(fam, stem, pr, stages, head, tr=None):
        return NetworkSpec(stages=tuple(stages), family=fam, stem=stem, stem_channels=stem_ch,
                           head_channels=head, projection=pr, num_classes=classes, transition=tr)

    if exact:
        return (spec(f, s, pr, st, h, t) for f in fams for s in stems for pr in projs
                for h in heads for t in transitions
                for st in itertools.product(*per_proj[pr])), True
    # too many: the per-stage cheapest-by-params and -by-MACs points only (a heuristic)
    picks = [(pr, [min(c, key=lambda s: getattr(layer_cost(s.N, s.P, s.K, s.M, pr, 1), key))
                   for c in per_proj[pr]]) for pr in projs for key in ("params", "macs")]
    return [spec(f, s, pr, st, h, t) for f in fams for s in stems for pr, st in picks
            for h in heads for t in transitions], False


def min_costs(space: Space) -> MinCosts:
    """The smallest params and MACs in the space and whether any configuration meets the budget."""
    specs, exact = _candidate_specs(space)
    modes = space.values_at("model.gunn_mode")
    best_p = best_m = None
    feasible = False
    for spec in specs:
        for mode in modes:
            cost = estimate(spec, image_size=image_size(spec.stem), gunn_mode=mode)
            best_p = cost.params if best_p is None else min(best_p, cost.params)
            best_m = cost.macs if best_m is None else min(best_m, cost.macs)
            feasible = feasible or within_budget(space.budget, cost)
    if not exact:
        feasible = True  # not proven infeasible; the sampler flags points over the budget
    return MinCosts(best_p, best_m, feasible, exact)


def check_feasible(space: Space) -> None:
    """ConfigError naming the budget key when no configuration of the space fits the budget."""
    b = space.budget
    if b.max_params is None and b.max_macs is None:
        return
    lo = min_costs(space)
    if lo.feasible:
        return
    if b.max_params is not None and lo.params > b.max_params:
        raise ConfigError(f"no configuration in the space fits: the smallest has {lo.params:,} "
                          f"params > {b.max_params:,}", field="budget.max_params")
    if b.max_macs is not None and lo.macs > b.max_macs:
        raise ConfigError(f"no configuration in the space fits: the smallest has {lo.macs:,} "
                          f"MACs > {b.max_macs:,}", field="budget.max_macs")
    raise ConfigError(f"no configuration in the space has both params <= {b.max_params:,} and "
                      f"MACs <= {b.max_macs:,}", field="budget")
