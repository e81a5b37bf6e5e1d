"""ASHA whose rungs survive a driver restart.

`Tuner.restore` brings the searcher back, but ASHA's rung records are not persisted: after a
restore, configurations that had been cut at a rung would be compared against empty rungs and
run further (docs/runtime.md). Tune re-adds every restored trial, finished ones included, through
`on_trial_add`; this scheduler replays each one's reported results (Tune's own `result.json` in
the trial's storage directory) into its bracket, so the rungs are as they were.
"""

from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler


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


class ResumableASHA(ASHAScheduler):
    """ASHAScheduler that rebuilds its rungs from persisted results when trials are restored."""

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if not trial.last_result:  # a new trial: nothing to replay
            return
        bracket = self._trial_info[trial.trial_id]
        for r in trial_results(trial):
            if self._time_attr in r and self._metric in r:
                # Only the rung bookkeeping matters here; the decision was taken long ago.
                bracket.on_result(trial, r[self._time_attr], self._metric_op * r[self._metric])
