"""The metric a search optimises and the status of a trial, as data.

A trial's status is one `TrialStatus`; its `kind` (completed, stopped early, failed, rejected,
running, interrupted) is what the plots, the progress line, the export and the searcher decide on. A
Tune result carries it under `STATUS_KEY`, and `status_of` is the one rule that turns a trial's
last result (or its error) into its status; the best trial is `gunn_search.results.best`'s.
MLflow holds the status in the tag `gunn_search.status`; the details go in their own tags
(`gunn_search.stopped_at_epoch`, `gunn_search.error`; all named in gunn_search.tags).
Kept apart from `gunn_search.run.trainable` so the driver can name them without importing torch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Mapping

from trainers.metric_names import annealed_key

METRIC = "val_acc"
# The key of every Tune result the trainable reports that holds the trial's status so far
# (gunn_search.run.trainable): `running` until its last epoch, then how it ended.
STATUS_KEY = "trial_status"
# What ASHA compares at a rung: the val_acc of an annealing branch there (trainers/anneal.py,
# logged as `annealed_val_acc`); at other epochs (and without branches) the trial's own val_acc.
RUNG_METRIC = "rung_val_acc"
ANNEALED_METRIC = annealed_key("val")  # annealed_val_acc


class Kind(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped early"
    FAILED = "failed"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"  # cut by Ctrl-C/SIGTERM; `--resume` continues it


class TrialStatus(StrEnum):
    RUNNING = "running"
    RETRYING = "retrying after error"
    COMPLETED = "completed"
    STOPPED = "stopped by ASHA"
    BUDGET = "stopped by budget"  # still training when the compute budget ran out
    ERRORED = "errored"
    NONFINITE = "non-finite loss"  # == trainers.loop.STATUS_NONFINITE (tests/test_trainable.py)
    OOM = "oom"
    REJECTED = "rejected by budget"
    ABANDONED = "abandoned"  # started just before a killed driver stopped, never saved by Tune
    INTERRUPTED = "interrupted"  # cut by Ctrl-C or SIGTERM (gunn_search.run.interrupts); resumable

    @property
    def kind(self) -> Kind:
        return _KIND[self]

    @property
    def has_result(self) -> bool:
        """Whether the trial's val_acc is a real measurement (a candidate for the best)."""
        return self.kind in (Kind.COMPLETED, Kind.STOPPED, Kind.RUNNING, Kind.INTERRUPTED)


_KIND = {
    TrialStatus.RUNNING: Kind.RUNNING, TrialStatus.RETRYING: Kind.RUNNING,
    TrialStatus.COMPLETED: Kind.COMPLETED, TrialStatus.STOPPED: Kind.STOPPED,
    TrialStatus.BUDGET: Kind.STOPPED,
    TrialStatus.ERRORED: Kind.FAILED, TrialStatus.NONFINITE: Kind.FAILED,
    TrialStatus.OOM: Kind.FAILED, TrialStatus.ABANDONED: Kind.FAILED,
    TrialStatus.REJECTED: Kind.REJECTED, TrialStatus.INTERRUPTED: Kind.INTERRUPTED,
}


def parse_status(text: str | None) -> TrialStatus | None:
    """The status of a tag or result value; None for text that is no status."""
    try:
        return TrialStatus(text)
    except ValueError:
        return None


def status_of(last_result: Mapping | None, error: object = None, ended: bool = False
              ) -> TrialStatus:
    """A trial's status from its last Tune result and Tune's error, if it has one.

    `error` (an exception, or True) means Tune saw the trial fail: `errored`, whatever its last
    result said. `ended`: the trial is over. The trainable says `running` until its last epoch,
    so a trial that ended still running had epochs left, and something (ASHA) stopped it early:
    `stopped by ASHA`. A result without a status (none reported yet) counts as running.
    """
    if error is not None and error is not False:
        return TrialStatus.ERRORED
    status = TrialStatus((last_result or {}).get(STATUS_KEY, TrialStatus.RUNNING))
    if ended and status.kind is Kind.RUNNING:
        return TrialStatus.STOPPED
    return status
