"""Tune's side of the compute budget (`compute_budget`): a `Stopper` that counts every result
into the search's ledger and, once the budget is spent, stops each trial still training at its
next result as `stopped by budget`.

Tune asks a stopper about every result before the scheduler sees it; a stopper has no way to say
why it stopped a trial, so this one writes the status into the result, which Tune then hands on
to the searcher's `on_trial_complete` (told PRUNED, never left RUNNING in the study), the
callbacks (MLflow's run gets the status) and the trial's last result (the summary).
"""

from __future__ import annotations

from ray import tune

from gunn_search.status import STATUS_KEY, TrialStatus
from gunn_search.run.compute_budget import Limits, ledger


class BudgetStopper(tune.Stopper):
    def __init__(self, folder: str, limits: Limits, gpus_per_trial: float):
        self.folder, self.limits, self.gpus = folder, limits, gpus_per_trial

    def __call__(self, trial_id: str, result: dict) -> bool:
        book = ledger(self.folder)
        book.add(trial_id, result, self.gpus)
        if not book.exhausted(self.limits):
            return False
        if result.get(STATUS_KEY) != TrialStatus.RUNNING:
            return False  # its last epoch, or a failure: it ends as it is
        result[STATUS_KEY] = TrialStatus.BUDGET
        return True

    def stop_all(self) -> bool:
        return False  # the trials end one by one; the searcher starts no more
