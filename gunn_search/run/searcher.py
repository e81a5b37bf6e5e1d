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

With a storage (`gunn_search.run.study`) its trials also carry their Tune trial id and MLflow
run id, and a restored search fails the trials Tune will not run again.

The attributes of Ray's OptunaSearch used here (`_ot_study`, `_ot_trials`, `_completed_trials`,
`_storage`) are private names of Ray Tune, declared in `gunn_search.private_names`.
"""

from __future__ import annotations

import warnings

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from gunn_search.status import RUNG_METRIC, STATUS_KEY, Kind, status_of
from gunn_search.run import study


class StoppedAsPrunedOptunaSearch(OptunaSearch):
    """`OptunaSearch` telling trials stopped before their last epoch as PRUNED."""

    # With a compute budget: the experiment folder whose ledger says when it is spent
    # (gunn_search.run.compute_budget); a spent budget starts no more trials.
    budget_folder: str | None = None
    budget_limits = None

    def suggest(self, trial_id: str):
        if self.budget_folder is not None:
            from gunn_search.run.compute_budget import ledger

            if ledger(self.budget_folder).exhausted(self.budget_limits):
                return self.FINISHED
        config = super().suggest(trial_id)
        self._link(trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict):
        if RUNG_METRIC in result and not isinstance(self.metric, list):
            result = {**result, self.metric: result[RUNG_METRIC]}
        self._link(trial_id)
        return super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self._link(trial_id)
        if not error and result is not None and trial_id not in self._completed_trials:
            self._report_last(trial_id, result)
        # A result without a status is none of the trainable's: Tune's own rule applies to it.
        stopped_early = (result is not None and STATUS_KEY in result
                         and status_of(result, error, ended=True).kind is Kind.STOPPED)
        if not stopped_early or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        # Optuna takes the last reported intermediate value as the pruned trial's value.
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def _report_last(self, trial_id: str, result: dict) -> None:
        """Report the final epoch as an intermediate value too: Tune hands a trial's last
        result to `on_trial_complete` alone, so Ray's OptunaSearch never reports it and the
        study's curves (optuna-dashboard's intermediate values) would stop an epoch short."""
        if isinstance(self.metric, list):
            return  # Optuna keeps no intermediate values for several objectives
        step = result.get("training_iteration")
        value = result.get(RUNG_METRIC, result.get(self.metric))
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or step is None or value is None:
            return
        with warnings.catch_warnings():  # a step already reported (ASHA's stop) is ignored
            warnings.simplefilter("ignore")
            ot_trial.report(float(value), int(step))

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        if self._storage is None:
            return
        # Trials asked after Tune's last state save are RUNNING in a storage and unknown to the
        # restored search, which will never tell them: fail them (the others Tune runs again).
        open_ = {tid: t for tid, t in self._ot_trials.items() if tid not in self._completed_trials}
        study.fail_running(self._ot_study, keep={t.number for t in open_.values()})
        # A trial the restored search still holds open may have ended after Tune's last state
        # save (an error, a full disk): the storage has it finished, and Optuna updates no
        # finished trial. Tune runs it again, so it gets a new Optuna trial with its parameters.
        stored = {t.number: t for t in self._ot_study.get_trials(deepcopy=False)}
        linked = self.__dict__.setdefault("_linked", set())
        for tid, t in open_.items():
            old = stored.get(t.number)
            if old is not None and old.state.is_finished():
                self._ot_trials[tid] = study.rerun(self._ot_study, old)
                linked.discard(tid)

    def _link(self, trial_id: str) -> None:
        """Put the Tune trial id and, once known, the MLflow run id on the Optuna trial."""
        linked = self.__dict__.setdefault("_linked", set())
        ot_trial = self._ot_trials.get(trial_id)
        if self._storage is None or ot_trial is None or trial_id in linked:
            return
        if study.TRIAL_ID_ATTR not in ot_trial.user_attrs:
            ot_trial.set_user_attr(study.TRIAL_ID_ATTR, trial_id)
        run_id = study.run_id_of(trial_id)
        if run_id is not None:
            ot_trial.set_user_attr(study.RUN_ID_ATTR, run_id)
            linked.add(trial_id)
