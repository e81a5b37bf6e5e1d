"""ASHA that compares rung results and whose rungs survive a driver restart.

The rungs compare `RUNG_METRIC`: at a rung epoch, the val_acc of an annealing branch (how good
the configuration would be if its training ended there, trainers/anneal.py), at a trial's last
epoch its own val_acc. Tune gives a scheduler the search's metric (val_acc, what the searcher
and the results rank by); this one keeps the rung metric and takes only the mode.

`Tuner.restore` brings the searcher back, but ASHA's rung records are not persisted: after a
restore, configurations that had been cut at a rung would be compared against empty rungs and
run further (docs/runtime.md). Tune re-adds every restored trial, finished ones included, through
`on_trial_add`; this scheduler replays each one's reported results (Tune's own `result.json` in
the trial's storage directory) into its bracket, so the rungs are as they were.
"""

from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler

from gunn_search.trial_status import RUNG_METRIC


def rung_epochs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace, grace*rf, ... below max_t (Tune's
    `_Bracket` milestones for one bracket)."""
    out, t = [], grace_period
    while t < max_t:
        out.append(t)
        t *= reduction_factor
    return out


def trial_results(trial) -> list[dict]:
    """The results a trial reported, from its `result.json` in the search's storage."""
    try:
        storage = trial.storage
        path = f"{storage.trial_fs_path}/result.json"
        with storage.storage_filesystem.open_input_stream(path) as stream:
            text = stream.read().decode()
    except (OSError, RuntimeError, AttributeError):  # no results persisted (yet)
        return []
    results = []
    for line in text.splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return results


def branch_epochs_per_trial(search, max_epochs: int) -> float:
    """The epochs a trial trained to the end spends in annealing branches (one per rung), as
    `search.branch_epochs` asks them (the trainer rounds a branch to whole steps)."""
    if search.scheduler != "asha" or not search.branch_epochs:
        return 0.0
    return search.branch_epochs * len(rung_epochs(search.grace_period, search.reduction_factor,
                                                  max_epochs))


def describe(search, max_epochs: int) -> str:
    """How long trials train, for the search's first line: "ASHA rungs at epochs 2, 6 (1/3 goes
    on), each comparing a 2-epoch annealing branch"."""
    if search.scheduler != "asha":
        return "every trial trains to the end (fifo)"
    at = rung_epochs(search.grace_period, search.reduction_factor, max_epochs)
    if not at:
        return "ASHA has no rung below the last epoch"
    out = (f"ASHA rungs at epoch{'s' if len(at) > 1 else ''} {', '.join(map(str, at))} "
           f"(1/{search.reduction_factor} goes on)")
    if search.branch_epochs:
        out += f", each comparing a {search.branch_epochs:g}-epoch annealing branch"
    return out


class ResumableASHA(ASHAScheduler):
    """ASHAScheduler on `RUNG_METRIC` that rebuilds its rungs from persisted results when trials
    are restored."""

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return super().set_search_properties(RUNG_METRIC if metric else None, mode, **spec)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if not trial.last_result:  # a new trial: nothing to replay
            return
        bracket = self._trial_info[trial.trial_id]
        for r in trial_results(trial):
            if self._time_attr in r and self._metric in r:
                # Only the rung bookkeeping matters here; the decision was taken long ago.
                bracket.on_result(trial, r[self._time_attr], self._metric_op * r[self._metric])
