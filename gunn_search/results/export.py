"""Export a searched trial as a `gunn-train` config for full training.

The trial's exact config is an artifact of its MLflow run (`train_config.yaml`), so the export
needs nothing but the tracking store. What it writes is that config as the trial trained it, plus
a `tracking` section (where to log, and the search and trial it came from): `gunn-train` trains
it unchanged, and `gunn-search --space` runs it as a one-point search. `--epochs E` and `--final`
(train on train + val, report the test set) are the two changes a full training asks for.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainers.config import ConfigError, TrainConfig, dump_config, parse_config, read_yaml

from gunn_search.errors import ExportError
from gunn_search.results.best import best_trial, can_be_best
from gunn_search.status import METRIC
from gunn_search.track import store as tr
from gunn_search.tags import (PARENT_TAG, ROLE_TAG, SEARCH_TAG, STATUS_TAG, TRIAL_RUN_TAG,
                              TRIAL_TAG)


def export_config(cfg: TrainConfig, search_run_id: str = "", trial_run_id: str = "",
                  epochs: int | None = None, final: bool = False, experiment: str | None = None,
                  tracking_uri: str | None = None) -> TrainConfig:
    """A trial's config with a tracking section (and, when asked, more epochs or the final split)."""
    data = cfg.model_dump(mode="json")
    if epochs is not None:
        data["epochs"] = epochs
    if final:
        data["data"]["split"] = "final"
    tags = {}
    if search_run_id:
        tags[SEARCH_TAG] = search_run_id
    if trial_run_id:
        tags[TRIAL_RUN_TAG] = trial_run_id
    data["tracking"] = {"uri": tracking_uri, "experiment": experiment, "tags": tags}
    return parse_config(data, "export")


def find_best_trial_run(client: MlflowClient, experiment: str, max_params: int | None = None,
                        max_macs: int | None = None) -> tuple[str, str]:
    """(search parent run id, best trial run id) of the newest search in `experiment`: the trial
    with the best val_acc among those with a result, within the cost limits when given."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ExportError(f"experiment {experiment!r} not found in the tracking store")
    parents = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = 'search'",
                                 order_by=["attributes.start_time DESC"], max_results=50)
    limits = {"cost.params": max_params, "cost.macs": max_macs}
    limits = {k: v for k, v in limits.items() if v is not None}
    for parent in parents:
        children = client.search_runs(
            [exp.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
            max_results=10000)
        finished = [c for c in children if METRIC in c.data.metrics
                    and can_be_best(c.data.tags.get(STATUS_TAG))]
        within = [c for c in finished if all(_cost(c, k) is not None and _cost(c, k) <= v
                                             for k, v in limits.items())]
        if within:
            # A run's val_acc metric is its last epoch's: the trial's value is its best epoch's.
            best = best_trial({"run": c, "status": c.data.tags.get(STATUS_TAG),
                               "trial_id": c.data.tags.get(TRIAL_TAG), METRIC: max(
                m.value for m in client.get_metric_history(c.info.run_id, METRIC))}
                for c in within)
            return parent.info.run_id, best["run"].info.run_id
        if finished:
            cheapest = {k: min((_cost(c, k) for c in finished if _cost(c, k) is not None),
                               default=None) for k in limits}
            what = " and ".join(f"{k} <= {v:,}" for k, v in limits.items())
            least = ", ".join(f"{k} {v:,.0f}" for k, v in cheapest.items() if v is not None)
            raise ExportError(f"experiment {experiment!r}: no finished trial has {what} "
                              f"(the cheapest: {least})")
    raise ExportError(f"experiment {experiment!r} has no finished trials to export")


def _cost(run, key: str) -> float | None:
    """A trial's price: a metric of its run (older searches logged it as a param)."""
    if key in run.data.metrics:
        return run.data.metrics[key]
    try:
        return float(run.data.params[key])
    except (KeyError, ValueError):
        return None


def read_trial_config(client: MlflowClient, experiment: str, run_id: str | None = None,
                      max_params: int | None = None,
                      max_macs: int | None = None) -> tuple[str, str, TrainConfig]:
    """(search run id, trial run id, the config the trial trained): `run_id`, or the best trial
    of the experiment's newest search (within the cost limits when given)."""
    try:
        if run_id is None:
            search_id, run_id = find_best_trial_run(client, experiment, max_params, max_macs)
        else:
            try:
                run = client.get_run(run_id)
            except MlflowException:
                raise ExportError(f"run {run_id!r} not found in the tracking store") from None
            search_id = run.data.tags.get(PARENT_TAG, "")
            if TRIAL_TAG not in run.data.tags:
                raise ExportError(f"run {run_id!r} is not a gunn-search trial")
        with tempfile.TemporaryDirectory() as d:
            try:
                local = client.download_artifacts(run_id, "train_config.yaml", d)
            except (MlflowException, OSError) as e:
                raise ExportError(f"run {run_id}: no train_config.yaml artifact "
                                  f"({tr.shown_line(str(e))})") from None
            return search_id, run_id, parse_config(read_yaml(local),
                                                   f"run {run_id} train_config.yaml")
    except ConfigError as e:
        raise ExportError(str(e)) from None


def export_run(tracking_uri: str, experiment: str, out: str | Path, run_id: str | None = None,
               epochs: int | None = None, final: bool = False, max_params: int | None = None,
               max_macs: int | None = None) -> Path:
    """Write the config of `run_id` (default: the best trial) with a tracking section to `out`."""
    client = MlflowClient(tracking_uri)
    search_id, run_id, cfg = read_trial_config(client, experiment, run_id, max_params, max_macs)
    full = export_config(cfg, search_run_id=search_id, trial_run_id=run_id, epochs=epochs,
                         final=final, experiment=experiment, tracking_uri=tracking_uri)
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give a file path such as {out}/best.yaml")
    if not out.parent.exists():
        raise ExportError(f"{out}: directory {out.parent} does not exist")
    try:
        dump_config(full, out)
    except OSError as e:
        raise ExportError(f"{out}: cannot write: {e.strerror or e}") from None
    return out
