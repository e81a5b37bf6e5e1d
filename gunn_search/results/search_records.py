"""A finished search's trials read back from MLflow as the records its plots and importances
are made of (`TrialRecord`): what `gunn-search importances` recomputes from, later, on any
machine that reaches the tracking store. The same records as the search itself used: the
searched values (recovered from each trial's logged training config by replaying the space's
sampler on it, so an n-form stage's `n` comes back as N/P), the val_acc and annealed val_acc of
every epoch, the status tag and the best val_acc.
"""

from __future__ import annotations

from trainers.errors import first_line

from gunn_search.results.search_axes import TrialRecord
from gunn_search.status import ANNEALED_METRIC, METRIC
from gunn_search.tags import PARENT_TAG, ROLE_TAG, STATUS_TAG, TRIAL_TAG

IMPORTANCE_METRIC = "importance."  # + a searched path: the parent run's metric of its importance


def trial_records(client, parent_run_id: str, space) -> list[TrialRecord]:
    """The trial runs under the search run `parent_run_id`, as records (runs that logged no
    config that the space can sample are left out)."""
    from gunn_search.results.warm_start import config_from_params, sampled_values
    from trainers.config_errors import ConfigError

    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'",
        max_results=50000)
    records = []
    for r in runs:
        try:
            values = sampled_values(space, config_from_params(r.data.params))
        except ConfigError:
            continue
        if values is None:
            continue
        by_epoch: dict[int, dict] = {}
        for key in (METRIC, ANNEALED_METRIC):
            for m in client.get_metric_history(r.info.run_id, key):
                by_epoch.setdefault(m.step, {"epoch": m.step})[key] = m.value
        hist = [by_epoch[e] for e in sorted(by_epoch) if METRIC in by_epoch[e]]
        vals = [h[METRIC] for h in hist]
        records.append(TrialRecord(
            trial_id=r.data.tags.get(TRIAL_TAG, r.info.run_id),
            params={p: values[p] for p in space.searched() if p in values}, history=hist,
            status=r.data.tags.get(STATUS_TAG, "completed"), value=max(vals) if vals else None))
    return records


def search_importances(records: list[TrialRecord], space) -> dict[str, float]:
    """fANOVA importances of the searched parameters (`importances.param_importances`), with
    the space's own distributions, as the finished search computes and logs them."""
    from gunn_search.results.importances import param_importances
    from gunn_search.space import distributions as dist

    dists = {p: dist.to_optuna(d) for p, d in space.searched().items()}
    return param_importances(records, maximize=space.search.mode == "max", distributions=dists)


def find_search(client, experiment: str, search: str | None = None):
    """The parent run of `search` (a search name: smoke, smoke-2, ...) in `experiment`, else of
    its newest search, and the space it searched (its space file, kept on that run)."""
    import tempfile

    import yaml

    from gunn_search.errors import SearchError
    from gunn_search.space import parse_space
    from gunn_search.tags import SPACE_TAG

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SearchError(f"experiment {experiment!r} not found in the tracking store")
    parents = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = 'search'",
                                 order_by=["attributes.start_time DESC"], max_results=1000)
    if search is not None:
        named = [p for p in parents if p.info.run_name == f"search-{search}"]
        if not named:
            names = ", ".join(p.info.run_name.removeprefix("search-") for p in parents) or "none"
            raise SearchError(f"--search {search}: experiment {experiment!r} has no such search "
                              f"(its searches: {names})")
        parents = named
    if not parents:
        raise SearchError(f"experiment {experiment!r} has no search")
    parent = parents[0]
    space_file = parent.data.tags.get(SPACE_TAG)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(parent.info.run_id, space_file, tmp)
            with open(local) as f:
                data = yaml.safe_load(f)
        except Exception as e:
            raise SearchError(f"search run {parent.info.run_id}: its space file {space_file!r} "
                              f"cannot be read ({first_line(e)})"
                              ) from None
    return parent, parse_space(data, space_file)
