"""Sampling a space (Optuna define-by-run) and the exact config a sample trains.

`sample(trial, space)` suggests the searched dimensions under their dotted paths and returns the
resolved values, which Tune keeps as the trial's config::

    {"model.stages.0.n": 12, "model.stages.0.N": 240, "model.stages.0.P": 20, "optim.lr": 0.1, ...,
     "cost.params": 1585746, "cost.macs": ..., "cost.activation_bytes": ..., "budget_ok": True}

`trial_config(space, values)` puts them into the space's base config: the `TrainConfig` a trial
trains, logs and exports. An N-form stage samples N, then P among the allowed values that divide
it, under a name that depends on N (``model.stages.0.P_N240``) because Optuna forbids a
categorical parameter whose choices change between trials. A sampler cannot reject a point, so
points over the budget come back with ``budget_ok: False`` and the trainable records them without
training.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from trainers.config import TrainConfig
from trainers.model.spec import divides

from gunn_search.space import distributions as dist
from gunn_search.space.budget import config_cost, cost_metrics, within_budget
from gunn_search.space.distributions import Range
from gunn_search.space.extract import reachable_N
from gunn_search.space.paths import with_values
from gunn_search.space.schema import PLACEMENT_KEYS, Space


def sample(trial, space: Space) -> dict[str, Any]:
    """Optuna define-by-run: suggest the searched dimensions, return the resolved values."""
    values: dict[str, Any] = {}
    for i, form in enumerate(space.stage_forms):
        p = f"model.stages.{i}"
        P_d = space.dims[f"{p}.P"]
        if form == "n":
            n = dist.suggest(trial, f"{p}.n", space.dims[f"{p}.n"])
            P = dist.suggest(trial, f"{p}.P", P_d)
            values[f"{p}.n"], N = n, n * P
        else:
            N_d = space.dims[f"{p}.N"]
            reach = reachable_N(N_d, P_d)
            if len(reach) == 1:
                N = reach[0]
            elif isinstance(N_d, Range) and len(reach) == dist.size(N_d):
                N = dist.suggest(trial, f"{p}.N", N_d)
            else:
                N = trial.suggest_categorical(f"{p}.N", reach)
            divisors = [P for P in dist.values(P_d) if divides(P, N)]
            if len(divisors) == 1:
                P = divisors[0]
            elif len(reach) == 1:
                P = trial.suggest_categorical(f"{p}.P", divisors)
            else:  # the choices depend on N, so the parameter's name does too
                P = trial.suggest_categorical(f"{p}.P_N{N}", divisors)
        values[f"{p}.N"], values[f"{p}.P"] = N, P
    for path, d in space.dims.items():
        if path not in values and not path.endswith(".n"):
            values[path] = dist.suggest(trial, path, d)
    cost = config_cost(trial_config(space, values))
    values.update(cost_metrics(cost))
    values["budget_ok"] = within_budget(space.budget, cost)
    return values


def define_by_run(space: Space) -> Callable:
    """The picklable define-by-run function for ``OptunaSearch(space=...)``."""
    return functools.partial(sample, space=space)


def trial_config(space: Space, values: dict) -> TrainConfig:
    """The base config with the sampled values put in: what the trial trains, logs and exports.

    ``values`` may hold more than config paths (Tune's config also has Optuna's raw names and
    the costs); only the space's config paths are read. Nothing is validated again: the base
    was, and each sampled value is one of its distribution's, whose values that key's own
    validator checked when the space was read, as the space's checks did the rules across keys
    (`schema.settle`) and the shape of every stage a sampler can draw.
    """
    cfg = space.base.model_copy(update={"tracking": None})
    return with_values(cfg, {p: values[p] for p in space.config_paths if p in values})


def runtime_config(cfg: TrainConfig, device: str, out_dir: str, num_threads: int) -> TrainConfig:
    """The trial's config with where it runs filled in (PLACEMENT_KEYS): nothing it trains changes."""
    return cfg.model_copy(update=dict(zip(PLACEMENT_KEYS, (device, out_dir, num_threads))))


def example_configs(space: Space, n: int = 5, seed: int = 0) -> list[dict]:
    """``n`` samples drawn with a random sampler (for --dry-run)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        return [sample(study.ask(), space) for _ in range(n)]
    finally:
        optuna.logging.set_verbosity(level)
