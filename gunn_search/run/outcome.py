"""What a search found, as its end reports it (`SearchOutcome`): the best trials from Tune's
results, the best trial's MLflow run, the Pareto front of a multi-objective search, and what the
search's own end adds (interrupt, budget, which search)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gunn_search.results import pareto
from gunn_search.results.best import ranked as ranked_trials
from gunn_search.run import interrupts
from gunn_search.space import Space
from gunn_search.status import METRIC, TrialStatus, status_of
from gunn_search.track import store as tr


@dataclass
class SearchOutcome:
    experiment: str
    parent_run_id: str
    best_trial_id: str | None
    best_run_id: str | None
    best_val_acc: float | None
    best_config: dict | None
    num_trials: int
    experiment_path: str
    top: list[dict] = field(default_factory=list)  # the best trials, best first (see `outcome`)
    front: list[dict] | None = None  # multi-objective: the Pareto front of the finished trials
    objectives: list | None = None
    experiment_id: str | None = None  # MLflow's id of `experiment`
    optuna_storage: str | None = None  # where the study is, password masked
    # Set when Ctrl-C or SIGTERM stopped the search: Tune saved its state, `--resume` continues
    # it; no best trial is named (nothing was decided), `num_trials` is the trials started.
    interrupted: interrupts.Interrupt | None = None
    budget: str | None = None  # with a compute budget: "spent 121/120 epochs on 17 trials"
    search: str | None = None  # which search of the experiment (search_names)
    importances: str | None = None  # "importances: from 9 trials trained to the end", or why none



def outcome(results, experiment: str, path: str, parent_id: str, client,
            space: Space | None = None, top_n: int = 5) -> SearchOutcome:
    """The best trials of the search of `experiment` in `path`, from Tune's results (so they are
    known even if MLflow is unreachable)."""
    rows = []
    for r in results:
        df = r.metrics_dataframe
        last = r.metrics or {}
        status = status_of(last, r.error, ended=True)
        epochs = int(last.get("epoch", 0) or 0)
        value = float(df[METRIC].max()) if df is not None and METRIC in df else None
        rows.append({"trial_id": last.get("trial_id", "?"), "trial": last.get("trial_id", "?"),
                     "status": status, "val_acc": value, "epochs": epochs, "config": dict(r.config),
                     "epoch_seconds": last.get("epoch_seconds"),
                     **{k: v for k, v in r.config.items() if k.startswith("cost.")}})
    ranked = ranked_trials(rows)
    best = ranked[0] if ranked else None
    best_run = None
    if best is not None:
        try:
            runs = tr.child_runs(client, client.get_run(parent_id).info.experiment_id, parent_id,
                                 trial_id=best["trial_id"])
            best_run = runs.get(best["trial_id"])
        except Exception:  # tracking unreachable: the run id is the only thing we can't say
            best_run = "unknown (MLflow unreachable)"
    importances = None
    try:  # what the MLflow callback drew the importances from (its tag on the parent run)
        from gunn_search.tags import IMPORTANCES_TAG
        importances = client.get_run(parent_id).data.tags.get(IMPORTANCES_TAG)
    except Exception:  # tracking unreachable: the summary goes without it
        pass
    front = objectives = None
    if space is not None and len(space.search.objective_list) > 1:
        objectives = pareto.objectives_of(space.search)
        front = pareto.front_rows([x for x in rows if x["status"] is TrialStatus.COMPLETED],
                                  objectives)
    return SearchOutcome(experiment, parent_id, best and best["trial_id"], best_run,
                         best and best["val_acc"], best and best["config"], len(results),
                         path, top=ranked[:top_n], front=front,
                         objectives=objectives, importances=importances)
