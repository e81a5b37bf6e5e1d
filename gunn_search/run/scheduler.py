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

With several `search.objectives`, a rung compares trials by all of them (`ParetoBracket`): by
non-dominated rank and crowding distance (`pareto.pareto_order`), the rung metric standing in
for the first objective. Ranking by val_acc alone would leave which cheap configurations survive
the first rung to chance, and with them the cheap end of the front.

Where the rungs fall and their defaults are plain arithmetic, in `gunn_search.space.rungs`.

Tune's bracket class and the attributes of ASHA's and the bracket's used here are private
names of Ray Tune, declared in `gunn_search.private_names`.
"""

from __future__ import annotations

import json

import numpy as np
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gunn_search.private_names import bracket_class
from gunn_search.results.pareto import Objective, pareto_keys
from gunn_search.space.rungs import bracket_of
from gunn_search.status import RUNG_METRIC


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


def promoted(recorded: list, new, rf: float, objectives: list[Objective]) -> bool:
    """ASHA's rule on points of several objectives: does the trial with rung point ``new`` go on,
    given the points the rung ``recorded`` before it? Each point of the rung, ``new`` included,
    is scored by minus the number of points ahead of it in `pareto_order` (equal points tie);
    as Tune's `_Bracket` does with one metric, the trial stops when its score is below the
    (1 - 1/rf) percentile of the recorded ones."""
    if not recorded:
        return True
    keys = pareto_keys([*recorded, new], objectives)
    score = [-sum(k < mine for k in keys) for mine in keys]
    return score[-1] >= np.percentile(score[:-1], (1 - 1 / rf) * 100)


class ParetoBracket(bracket_class()):
    """Tune's ASHA bracket whose rewards are points (one value per objective), cut by
    `promoted`. Tune's rungs, milestones and bookkeeping as they are; only the cut differs."""

    objectives: list[Objective]

    @classmethod
    def of(cls, bracket, objectives: list[Objective]) -> "ParetoBracket":
        """The Pareto version of a bracket Tune's ASHA built (its rungs, empty)."""
        out = cls.__new__(cls)
        out.__dict__.update(bracket.__dict__)
        out.objectives = objectives
        return out

    def cutoff(self, recorded):  # a point has no percentile; `promoted` decides instead
        return None

    def on_result(self, trial, cur_iter: int, cur_rew) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            if cur_rew is not None:
                if not promoted(list(recorded.values()), cur_rew, self.rf, self.objectives):
                    action = TrialScheduler.STOP
                recorded[trial.trial_id] = cur_rew
            break
        return action


class ResumableASHA(ASHAScheduler):
    """ASHAScheduler on `RUNG_METRIC` that rebuilds its rungs from persisted results when trials
    are restored; with ``objectives`` (more than one), its rungs compare points of all of them
    (`ParetoBracket`)."""

    def __init__(self, *, objectives: list[Objective] | None = None, search=None, **kwargs):
        """`search`: the search's settings, by which a trial's bracket is chosen
        (`rungs.bracket_of`, as the trainable chooses it); without, Tune's own random choice."""
        super().__init__(**kwargs)
        self.search = search
        self.objectives = objectives if objectives and len(objectives) > 1 else None
        if self.objectives:  # Tune's brackets as built, made Pareto ones
            self._brackets = [ParetoBracket.of(b, self.objectives) for b in self._brackets]

    def reward(self, result: dict):
        """What a rung records for a result: the rung metric (signed by the mode) or, with
        several objectives, the point (rung metric, then each other objective's value), None
        where the result lacks one."""
        if not self.objectives:
            return self._metric_op * result[self._metric]
        point = [result[self._metric], *(result.get(o.metric) for o in self.objectives[1:])]
        return point if all(isinstance(v, (int, float)) for v in point) else None

    # Tune's two methods below pass `metric_op * result[metric]` to the bracket; the same steps
    # here with `reward`, so that a bracket can receive a point.
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not self.objectives:
            return super().on_trial_result(tune_controller, trial, result)
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            action = self._trial_info[trial.trial_id].on_result(
                trial, result[self._time_attr], self.reward(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if not self.objectives:
            return super().on_trial_complete(tune_controller, trial, result)
        if self._time_attr not in result or self._metric not in result:
            return
        self._trial_info[trial.trial_id].on_result(trial, result[self._time_attr],
                                                   self.reward(result))
        del self._trial_info[trial.trial_id]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return super().set_search_properties(RUNG_METRIC if metric else None, mode, **spec)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if self.search is not None and len(self._brackets) > 1:
            self._trial_info[trial.trial_id] = self._brackets[
                bracket_of(trial.trial_id, self.search, self._max_t)]
        if not trial.last_result:  # a new trial: nothing to replay
            return
        bracket = self._trial_info[trial.trial_id]
        for r in trial_results(trial):
            if self._time_attr in r and self._metric in r:
                # Only the rung bookkeeping matters here; the decision was taken long ago.
                bracket.on_result(trial, r[self._time_attr], self.reward(r))
