"""fANOVA importances of a search's parameters (the parent run's `param_importances.png`).

Computed by Optuna (`optuna.importance.get_param_importances` with `FanovaImportanceEvaluator`)
on an in-memory study rebuilt from the trial records, on at most `IMPORTANCE_TRIALS` trials (a
seeded random sample of a larger search). Plain numbers out; the drawing is
`gunn_search.results.plots`.
"""

from __future__ import annotations

import logging
import math

from gunn_search.private_names import distribution_contains
from gunn_search.results.search_axes import TrialRecord, finite, searched_axes, valued_records

logger = logging.getLogger(__name__)

# fANOVA's time grows faster than the trials it fits (Optuna's marginal variances walk every
# split value of every tree, and a forest's trees have a leaf per trial): 1.7 s for 96 trials,
# 5.4 s for 384 and 37 s for 1536 on the loaded 2-core VM (2026-11-30, search_growth.py).
# A larger search's importances are computed on a seeded random sample of this many of its
# trials with a value, which keeps the plot to seconds whatever the search's size.
IMPORTANCE_TRIALS = 200


def param_importances(records: list[TrialRecord], maximize: bool = True,
                      distributions: dict | None = None) -> dict[str, float]:
    """Optuna fANOVA importances of the searched params; {} when they cannot be computed.

    Builds an in-memory Optuna study from the trials with a finite value (at most
    IMPORTANCE_TRIALS of them, see `importance_sample`), with the parameters'
    own distributions when given (numbers stay numbers, log ranges stay log), else: numeric
    params get a `FloatDistribution` (`IntDistribution` if all ints) over the observed
    [min, max], others a `CategoricalDistribution` of the observed values (as strings); constant
    and derived `cost.*` params are left out. Optuna assesses the params that every such trial
    has (its intersection search space).
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    valued = importance_sample(valued_records(records))
    if len(valued) < 2:
        return {}
    axes = searched_axes([r for r, _ in valued], distributions)
    if not axes:
        return {}
    if distributions:
        return _importances(valued, {a.name: distributions[a.name] for a in axes}, maximize)
    dists = {}
    for a in axes:
        if a.kind == "categorical":
            dists[a.name] = CategoricalDistribution(a.choices)
        elif a.kind == "int":
            dists[a.name] = IntDistribution(int(a.low), int(a.high))
        else:
            dists[a.name] = FloatDistribution(a.low, a.high)

    records_params = []
    for r, value in valued:
        params = {}
        for a in axes:
            v = (r.params or {}).get(a.name)
            if a.kind == "categorical":
                if v is None:
                    continue
                v = str(v)
            else:
                v = finite(v)
                if v is None:
                    continue
                v = int(v) if a.kind == "int" else v
            params[a.name] = v
        records_params.append((params, value))
    return _fanova(records_params, dists, maximize)


def importance_sample(valued: list, k: int | None = None) -> list:
    """At most `k` (IMPORTANCE_TRIALS) of `valued`, a random sample with a fixed seed, in their
    order; all of them when there are no more."""
    import random

    k = IMPORTANCE_TRIALS if k is None else k
    if len(valued) <= k:
        return valued
    keep = sorted(random.Random(0).sample(range(len(valued)), k))
    return [valued[i] for i in keep]


def _importances(valued, dists: dict, maximize: bool) -> dict[str, float]:
    """fANOVA over the searched values as sampled (each must lie in its distribution)."""
    rows = []
    for r, value in valued:
        params = {k: r.params[k] for k in dists if _inside(dists[k], (r.params or {}).get(k))}
        rows.append((params, value))
    return _fanova(rows, dists, maximize)


def _inside(d, v) -> bool:
    if v is None:
        return False
    try:
        return distribution_contains(d, v)
    except (ValueError, TypeError):
        return False


def _fanova(rows: list[tuple[dict, float]], dists: dict, maximize: bool) -> dict[str, float]:
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        for params, value in rows:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=value))
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (RuntimeError, ValueError) as e:  # e.g. zero variance in every tree
            logger.info("parameter importances not computable: %s", e)
            return {}
    finally:
        optuna.logging.set_verbosity(verbosity)
    imp = {k: float(v) for k, v in imp.items()}
    if not imp or not all(math.isfinite(v) for v in imp.values()) or sum(imp.values()) <= 0:
        return {}
    return imp
