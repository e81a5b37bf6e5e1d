"""gunn-search as Python functions, for notebooks and scripts: `search`, `export`, `ablate`,
`train`. The commands are thin layers over these (`gunn_search.cli`).

    import gunn_search
    result = gunn_search.search("smoke.yaml", num_samples=4, max_epochs=2, experiment="try-1")
    result.best_value, result.best_config.optim.lr, result.trials   # a pandas DataFrame
    gunn_search.export("try-1", "best.yaml")

Each returns a typed result and raises the commands' one-line errors as exceptions
(`gunn_search.errors.SearchError`, `UsageError`, `trainers.errors.ConfigError`, ... all under
`gunn_search.errors.USER_ERRORS`); none exits the process. A function can be called again in
the same process (a notebook re-running a cell): Ray is shut down after a search that started
it, a Ray session the caller opened (`ray.init(...)` before) is used and left open, and a second
search of the same experiment is refused before anything is written (`experiment=` a new name,
or `resume=True`). Ctrl-C stops a search as the command's does (state saved; `resume=True`
continues it); the caller's signal handlers are put back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from gunn_search.ablation.variants import DEFAULT_VARIANTS
from gunn_search.errors import UsageError

DEFAULT_ARTIFACTS = "mlartifacts"
DEFAULT_STORAGE = "gunn-search-runs"


@dataclass
class SearchResult:
    """What a search left: the best trial, every trial, where it is tracked."""
    experiment: str
    experiment_id: str | None
    parent_run_id: str
    tracking_uri: str
    best_trial_id: str | None
    best_run_id: str | None
    best_value: float | None  # the best trial's val_acc
    best_config: Any | None  # the best trial's TrainConfig, as it trained
    front: list[dict] | None = None  # several objectives: the Pareto front
    interrupted: str | None = None  # the signal that stopped it (resume=True continues it)
    optuna_storage: str | None = None  # the study's storage (password masked)
    budget: str | None = None  # with a compute budget: what it spent, on how many trials
    search: str | None = None  # which search of the experiment: `smoke`, `smoke-2`, ...

    @cached_property
    def trials(self):
        """One row per trial (trial_id, run_id, status, val_acc, the params): a pandas
        DataFrame when pandas is there, else a list of dicts. Read from MLflow when first
        asked for, not when the search ends: the CLI never asks, and a search whose tracking
        server went away still ends well."""
        return trials_table(self.tracking_uri, self.experiment_id, self.parent_run_id)


@dataclass
class SearchPlan:
    """A validated space and the options its search runs with (`plan_search`)."""
    space: Any
    options: Any


def load_searched_space(space: str | Path, *, num_samples: int | None = None,
                        max_epochs: int | None = None, data_dir: str | None = None,
                        seed: int | None = None, gpus_per_trial: float | str | None = None,
                        cpus_per_trial: float | None = None,
                        budget_epochs: float | None = None, time_budget: str | None = None,
                        budget_gpu_hours: float | None = None):
    """The space file (a path or a bundled name) with these settings, validated once:
    (space, its resolved path, the fingerprint of the file as written)."""
    from gunn_search.space import fingerprint, load_space, with_settings

    loaded = load_space(str(space))
    path, fp = str(Path(loaded.source).resolve()), fingerprint(loaded)
    # Relative data dirs are taken from where the caller runs, not a worker's cwd.
    data = data_dir if data_dir is not None else loaded.base.data.data_dir
    return with_settings(loaded, epochs=max_epochs, num_samples=num_samples, seed=seed,
                         gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
                         data_dir=data, budget_epochs=budget_epochs, time_budget=time_budget,
                         budget_gpu_hours=budget_gpu_hours), path, fp


def plan_search(space: str | Path, *, experiment: str | None = None,
                tracking_uri: str | None = None, storage: str = DEFAULT_STORAGE,
                optuna_storage: str | None = None, address: str | None = None,
                max_failures: int = 1, warm_start: str | None = None, warm_start_top: int = 3,
                resume: bool = False, **settings) -> SearchPlan:
    """Everything a search checks before Ray starts (`settings`: those of
    `load_searched_space`); raises the one-line errors."""
    from gunn_search.run.resources import check_gpus_here
    from gunn_search.track.uri import tracking_uri as checked_uri

    searched, path, fp = load_searched_space(space, **settings)
    if max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if warm_start_top < 0:
        raise UsageError("--warm-start-top must be >= 0")
    if warm_start and resume:
        raise UsageError("--warm-start starts a new search; a resumed one keeps what its "
                         "sampler already knows")
    check_gpus_here(searched.resources.gpus_per_trial, address)
    experiment = experiment or searched.name
    storage = storage if "://" in storage else str(Path(storage).resolve())
    uri = tracking_uri
    if uri is not None or not resume:  # a bad URI or login: one line before Ray or MLflow
        uri = checked_uri(uri)
    # Ray and MLflow are imported once the space and these flags are known to be good; the
    # private names of theirs the search uses are all there (one line and exit 2 if not).
    from gunn_search import private_names

    private_names.check(private_names.SEARCH)
    from gunn_search.run.ray_session import check_cluster
    from gunn_search.run.search import SearchOptions, experiment_path
    from gunn_search.run.state_file import read_state
    from gunn_search.track.store import is_local_uri

    from gunn_search.run import search_names
    # Running the same command again is a new search of the experiment; --resume continues the
    # latest that did not finish, or the one it names.
    name = (search_names.resumed_name(storage, experiment, resume) if resume
            else search_names.new_name(storage, experiment)[0])
    if uri is None:  # resumed: continue logging where the search started
        state = read_state(experiment_path(SearchOptions("", experiment, "", storage,
                                                         search=name)))
        uri = checked_uri(state["tracking_uri"] if state else None)
    if address:
        check_cluster(address, uri)
    from trainers.loop import check_data_present
    check_data_present(searched.base.data)
    return SearchPlan(searched, SearchOptions(
        space_path=path, experiment=experiment, tracking_uri=uri, storage=storage,
        address=address, resume=bool(resume), max_failures=max_failures, search=name,
        artifact_root=str(Path(DEFAULT_ARTIFACTS).resolve()) if is_local_uri(uri) else None,
        fingerprint=fp, warm_start=warm_start, warm_start_top=warm_start_top,
        optuna_storage=optuna_storage))


def run_plan(plan: SearchPlan, on_outcome: Callable | None = None) -> SearchResult:
    """Run a planned search (`plan_search`) to its end or an interrupt."""
    from gunn_search.run.search import run_search

    out = run_search(plan.space, plan.options, on_outcome=on_outcome)
    return search_result(out, plan)


def search(space: str | Path, **kwargs) -> SearchResult:
    """Run a search: `gunn-search --space SPACE` with the flags as keywords (num_samples,
    budget_epochs, time_budget, budget_gpu_hours,
    max_epochs, data_dir, seed, gpus_per_trial, cpus_per_trial, experiment, tracking_uri,
    storage, optuna_storage, address, max_failures, warm_start, warm_start_top, resume)."""
    from gunn_search.run import interrupts

    plan = plan_search(space, **kwargs)
    with interrupts.installed("gunn-search"):
        return run_plan(plan)


def search_result(out, plan: SearchPlan) -> SearchResult:
    from gunn_search.space import trial_config

    # The outcome holds the best trial's sampled values; its config is the space's with them in.
    best = None if out.best_config is None else trial_config(plan.space, dict(out.best_config))
    return SearchResult(
        experiment=out.experiment, experiment_id=out.experiment_id,
        parent_run_id=out.parent_run_id, tracking_uri=plan.options.tracking_uri,
        best_trial_id=out.best_trial_id, best_run_id=out.best_run_id,
        best_value=out.best_val_acc, best_config=best,
        front=out.front, interrupted=out.interrupted.name if out.interrupted else None,
        optuna_storage=out.optuna_storage, budget=out.budget, search=out.search)


def trials_table(tracking_uri: str, experiment_id: str | None, parent_run_id: str):
    """One row per trial of a search, from its MLflow runs: trial_id, run_id, status, val_acc
    (the last epoch's), then the params; a DataFrame when pandas is installed."""
    from mlflow.tracking import MlflowClient

    from gunn_search.tags import PARENT_TAG, STATUS_TAG, TRIAL_TAG

    rows = []
    if experiment_id is not None:
        client = MlflowClient(tracking_uri)
        runs = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=50_000)
        for r in sorted(runs, key=lambda r: r.info.start_time or 0):
            rows.append({"trial_id": r.data.tags.get(TRIAL_TAG), "run_id": r.info.run_id,
                         "status": r.data.tags.get(STATUS_TAG),
                         "val_acc": r.data.metrics.get("val_acc"), **r.data.params})
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


@dataclass
class ExportResult:
    path: Path
    config: Any  # the TrainConfig written (the trial's, with its tracking section)


def export(experiment: str, out: str | Path, *, run_id: str | None = None,
           tracking_uri: str | None = None, epochs: int | None = None, final: bool = False,
           max_params: int | None = None, max_macs: int | None = None) -> ExportResult:
    """`gunn-search export`: write a searched trial's config (default: the best) to `out`."""
    from gunn_search.track.uri import check_store_exists, tracking_uri as checked_uri

    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {epochs})")
    uri = checked_uri(tracking_uri)
    check_store_exists(uri)
    for flag, v in (("--max-params", max_params), ("--max-macs", max_macs)):
        if v is not None and v < 1:
            raise UsageError(f"{flag} must be >= 1 (got {v})")
        if v is not None and run_id:
            raise UsageError(f"{flag} chooses a trial; it cannot be given with --run-id")
    from gunn_search.results.export import export_run
    from trainers.config import load_config

    path = export_run(uri, experiment, out, run_id=run_id, epochs=epochs, final=final,
                      max_params=max_params, max_macs=max_macs)
    return ExportResult(Path(path).resolve(), load_config(path))


@dataclass
class Importances:
    search: str  # which search of the experiment
    values: dict[str, float]  # searched path -> fANOVA importance, most important first
    label: str | None  # which trials they come from ("at epoch 1, from 6 trials"); None: none
    why_not: str  # when `values` is empty: why


def importances(experiment: str, *, search: str | None = None,
                tracking_uri: str | None = None) -> Importances:
    """`gunn-search importances`: the parameter importances of a search (default: the newest
    of `experiment`), recomputed from its trials in MLflow: the numbers the finished search
    drew and logged on its parent run (`importance.*`)."""
    from gunn_search.track.uri import check_store_exists, tracking_uri as checked_uri

    uri = checked_uri(tracking_uri)
    check_store_exists(uri)
    from mlflow.tracking import MlflowClient

    from gunn_search.results.importances import importance_trials, too_few
    from gunn_search.results.search_records import (find_search, search_importances,
                                                    trial_records)

    client = MlflowClient(uri)
    parent, space = find_search(client, experiment, search)
    records = trial_records(client, parent.info.run_id, space)
    values = search_importances(records, space)
    fid = importance_trials(records)
    return Importances(parent.info.run_name.removeprefix("search-"),
                       dict(sorted(values.items(), key=lambda kv: -kv[1])),
                       fid.label if fid and values else None,
                       "" if values else too_few().removeprefix("importances: "))


def ablate(experiment: str, *, variants: str | list[str] = DEFAULT_VARIANTS,
           seeds: int = 3, run_id: str | None = None, epochs: int | None = None,
           final: bool = False, data_dir: str | None = None,
           gpus_per_trial: float | str = "auto", cpus_per_trial: float = 1.0,
           max_failures: int = 1, tracking_uri: str | None = None,
           storage: str = DEFAULT_STORAGE, address: str | None = None, resume: bool = False):
    """`gunn-search ablate`: the trial's config as GUNN, SUNN, ... paired by seed; returns the
    `AblationResult` (its `to_markdown`/`to_json` in `gunn_search.ablation.report`)."""
    from gunn_search.ablation.run import run_ablation
    from gunn_search.run import interrupts

    opts = plan_ablation(experiment, variants=variants, seeds=seeds, run_id=run_id,
                         epochs=epochs, final=final, data_dir=data_dir,
                         gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
                         max_failures=max_failures, tracking_uri=tracking_uri, storage=storage,
                         address=address, resume=resume)
    with interrupts.installed("gunn-search ablate"):
        return run_ablation(opts)


def plan_ablation(experiment: str, *, variants, seeds, run_id, epochs, final, data_dir,
                  gpus_per_trial, cpus_per_trial, max_failures, tracking_uri, storage, address,
                  resume):
    """The checks `ablate` makes before Ray starts; its `AblationOptions`."""
    from gunn_search.ablation.run import AblationOptions
    from gunn_search.ablation.variants import parse_variants
    from gunn_search.run.resources import check_gpus_here, gpus_request
    from gunn_search.track.uri import check_store_exists, tracking_uri as checked_uri

    names = parse_variants(variants if isinstance(variants, str) else ",".join(variants))
    if seeds < 2:
        raise UsageError(f"--seeds must be >= 2 for a confidence interval (got {seeds})")
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {epochs})")
    if max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be > 0 (got {cpus_per_trial:g})")
    gpus = gpus_request(str(gpus_per_trial))  # the search's rule for the flag
    check_gpus_here(gpus, address)
    from gunn_search import private_names

    private_names.check(private_names.ABLATE)  # Ray's and MLflow's private names it uses
    uri = checked_uri(tracking_uri)
    check_store_exists(uri)
    if address:
        from gunn_search.run.ray_session import check_cluster
        check_cluster(address, uri)
    return AblationOptions(experiment, uri, names, seeds, run_id, epochs, final, data_dir, gpus,
                           cpus_per_trial, max_failures, storage, address, resume)


def train(config, *, resume: str | Path | None = None):
    """Train one config (a `TrainConfig`, a dict or a YAML path) with the pure-PyTorch trainer,
    no tracking (`gunn-train --config` logs to MLflow); returns its `TrainResult`."""
    from trainers.config import TrainConfig, load_config, parse_config
    from trainers.loop import train as run_training

    if isinstance(config, (str, Path)):
        cfg = load_config(config)
    elif isinstance(config, TrainConfig):
        cfg = config
    else:
        cfg = parse_config(dict(config), "config")
    return run_training(cfg, resume=resume)
