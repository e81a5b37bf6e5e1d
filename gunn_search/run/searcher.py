"""OptunaSearch that tells Optuna which trials ASHA stopped early.

Ray's OptunaSearch reports every epoch to Optuna (`trial.report(val_acc, iteration)`) but, when a
trial ends, tells its *last* val_acc as a COMPLETE trial's value, whether it trained all its
epochs or was cut by ASHA after one. TPE then ranks a configuration seen for one epoch against
fully trained ones as if both were final. Optuna already has the right treatment for such
trials: a PRUNED trial ranks below every complete one, deeper-trained first, then by its last
reported value (optuna's TPE `_split_pruned_trials`). Tune has no switch for this, hence the
subclass: a trial whose last result is still `running` (it had epochs left) is told PRUNED.

Its intermediate values are the rung metric (`RUNG_METRIC`: the annealed val_acc at a rung,
val_acc elsewhere): a pruned trial's value is then what ASHA compared.
"""

from __future__ import annotations

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from gunn_search.results.status import RUNG_METRIC, STATUS_KEY, TrialStatus, status_of


class StoppedAsPrunedOptunaSearch(OptunaSearch):
    """`OptunaSearch` telling trials stopped before their last epoch as PRUNED."""

    def on_trial_result(self, trial_id: str, result: dict):
        if RUNG_METRIC in result and not isinstance(self.metric, list):
            result = {**result, self.metric: result[RUNG_METRIC]}
        return super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        # A result without a status is none of the trainable's: Tune's own rule applies to it.
        stopped_early = (result is not None and STATUS_KEY in result
                         and status_of(result, error, ended=True) is TrialStatus.STOPPED)
        if not stopped_early or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        # Optuna takes the last reported intermediate value as the pruned trial's value.
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
