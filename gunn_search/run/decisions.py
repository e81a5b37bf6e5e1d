"""What a search decides with: the searcher (Optuna's sampler in Ray's OptunaSearch, in a
ConcurrencyLimiter) and the scheduler (ASHA on rung results, or FIFO), built from a space. The
Tuner (`run/search.py`) and the simulator of benchmarks/simulate.py build them here, so both
decide alike.
"""

from __future__ import annotations

import math

from gunn_search.results import pareto
from gunn_search.status import METRIC
from gunn_search.run.scheduler import ResumableASHA
from gunn_search.space import Space, define_by_run


def search_parts(space: Space, storage=None, study_name: str | None = None, on_searcher=None,
                 budget_folder: str | None = None):
    """The searcher (Optuna's, in a ConcurrencyLimiter) and the scheduler (ASHA or FIFO) a
    search of `space` makes its decisions with; the simulator of benchmarks/simulate.py drives
    these same objects. `on_searcher` sees the Optuna searcher before it is wrapped. With a
    compute budget, the searcher reads the ledger in `budget_folder` before each trial."""
    import optuna
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from gunn_search.run.searcher import StoppedAsPrunedOptunaSearch

    s = space.search
    # Optuna's INFO notes ("A new study created in memory") are noise beside the progress lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = s.objective_list
    if len(objectives) > 1:  # Optuna's multi-objective study: one value per objective
        metric, mode = [o.metric for o in objectives], [o.mode for o in objectives]
    else:
        metric, mode = METRIC, s.mode
    optuna_search = StoppedAsPrunedOptunaSearch(
        space=define_by_run(space), metric=metric, mode=mode, sampler=make_sampler(s, space.max_epochs),
        storage=storage, study_name=study_name)
    if s.has_budget and budget_folder is not None:
        from gunn_search.run.compute_budget import Limits

        optuna_search.budget_folder, optuna_search.budget_limits = budget_folder, Limits.of(s)
    if on_searcher is not None:
        on_searcher(optuna_search)
    searcher = ConcurrencyLimiter(optuna_search, max_concurrent=s.max_concurrent)
    if s.scheduler == "asha":
        scheduler = ResumableASHA(time_attr="epoch", max_t=space.max_epochs,
                                  grace_period=s.grace_period, reduction_factor=s.reduction_factor,
                                  brackets=s.brackets, search=s,
                                  objectives=pareto.objectives_of(s))
    else:
        scheduler = FIFOScheduler()
    return searcher, scheduler


def make_sampler(s, max_epochs: int | None = None):
    """The Optuna sampler `search.sampler` names, seeded with the searcher's seed."""
    import optuna

    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    # TPE (multi-objective too): the first trials are random (tpe_startup_trials).
    # multivariate: one joint density over all dimensions, so lr and weight decay (whose good
    # values go together) are modelled together; constant_liar: a trial still running counts
    # as a bad result, so parallel trials do not all draw the same point. Optuna 5 has both on
    # for one objective; said here so that a new Optuna's defaults do not change our searches.
    return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=tpe_startup_trials(expected_trials(s, max_epochs)))


def expected_trials(s, max_epochs: int | None = None) -> int:
    """The trials a search is expected to run: num_samples, or fewer where an epoch budget
    buys fewer (`rungs.expected_trial_epochs` each); a search bounded by time or GPU-hours only
    and no num_samples: 32, the schema's default."""
    from gunn_search.run.compute_budget import UNBOUNDED
    from gunn_search.space.rungs import expected_trial_epochs

    n = s.num_samples
    if s.budget_epochs is not None and max_epochs:
        n = min(n, math.ceil(s.budget_epochs / expected_trial_epochs(s, max_epochs) - 1e-9))
    return 32 if n >= UNBOUNDED else max(1, n)


def tpe_startup_trials(num_samples: int) -> int:
    """TPE's random start-up trials: a quarter of the search, 3 to 10 (measured against other
    shares in 8 real searches: benchmarks/HISTORY.md, "Search efficiency")."""
    return min(10, max(3, num_samples // 4))
