"""fANOVA importances of a search's parameters (the parent run's `param_importances.png`).

Computed by Optuna (`optuna.importance.get_param_importances` with `FanovaImportanceEvaluator`)
on an in-memory study rebuilt from the trial records, on at most `IMPORTANCE_TRIALS` trials (a
seeded random sample of a larger search). Plain numbers out; the drawing is
`gunn_search.results.plots`.
"""

from __future__ import annotations

import logging
import math

from dataclasses import dataclass

from gunn_search.private_names import distribution_contains
from gunn_search.results.search_axes import TrialRecord, finite, searched_axes
from gunn_search.status import ANNEALED_METRIC, METRIC, Kind, parse_status

logger = logging.getLogger(__name__)

# fANOVA's time grows faster than the trials it fits (Optuna's marginal variances walk every
# split value of every tree, and a forest's trees have a leaf per trial): 1.7 s for 96 trials,
# 5.4 s for 384 and 37 s for 1536 on the loaded 2-core VM (2026-11-30, search_growth.py).
# A larger search's importances are computed on a seeded random sample of this many of its
# trials with a value, which keeps the plot to seconds whatever the search's size.
IMPORTANCE_TRIALS = 200
# The fewest trials of one fidelity that importances are drawn from: a forest over fewer says
# nothing (smoke.yaml's 6 trials at its first rung are the least a bundled space gives).
MIN_TRIALS = 5


@dataclass(frozen=True)
class Fidelity:
    """The trials importances are computed from, all measured alike: (record, value) pairs,
    the epoch (None: trained to the end) and how the figure and summary say it."""

    valued: list
    epoch: int | None
    label: str


def importance_trials(records: list[TrialRecord], min_trials: int = MIN_TRIALS
                      ) -> Fidelity | None:
    """Trials trained to the end, with their value, when at least `min_trials` are; else the
    highest epoch at which that many trials have a result (what a rung compared there: the
    annealed val_acc where a branch ran, else the val_acc); None when no fidelity has enough.
    A trial stopped mid-schedule reports an accuracy that can rank configurations backwards
    (benchmarks/RESULTS.md, "Rank correlation"): it is never mixed with final ones."""
    def kind(r):
        st = parse_status(str(r.status))
        return st.kind if st is not None else None

    finished = [(r, finite(r.value)) for r in records if kind(r) is Kind.COMPLETED]
    finished = [(r, v) for r, v in finished if v is not None]
    if len(finished) >= min_trials:
        return Fidelity(finished, None, f"from {len(finished)} trials trained to the end")
    at: dict[int, list] = {}
    for r in records:
        if kind(r) not in (Kind.COMPLETED, Kind.STOPPED, Kind.RUNNING, Kind.INTERRUPTED) or (
                finite(r.value) is None):  # no measurement at all
            continue
        for m in r.history:
            v = finite(m.get(ANNEALED_METRIC, m.get(METRIC)))
            if v is not None and m.get("epoch") is not None:
                at.setdefault(int(m["epoch"]), []).append((r, v))
    for epoch in sorted(at, reverse=True):
        if len(at[epoch]) >= min_trials:
            return Fidelity(at[epoch], epoch, f"at epoch {epoch}, from {len(at[epoch])} trials")
    return None


def too_few() -> str:
    """The summary's line when no fidelity has enough trials."""
    return (f"importances: not drawn, fewer than {MIN_TRIALS} trials trained to the end or at "
            f"any one epoch")


def param_importances(records: list[TrialRecord], maximize: bool = True,
                      distributions: dict | None = None) -> dict[str, float]:
    """Optuna fANOVA importances of the searched params; {} when they cannot be computed.

    Builds an in-memory Optuna study from the trials of one fidelity (`importance_trials`: the
    finished ones, or those at the highest epoch with enough; at most
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

    fid = importance_trials(records)
    if fid is None:
        return {}
    # In trial-id order: fANOVA's forest depends on the order of its rows, and the same search
    # read back from MLflow (`search_records`) must give the same importances.
    valued = importance_sample(sorted(fid.valued, key=lambda rv: rv[0].trial_id))
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
