"""The best trial of a search, by one rule wherever it is asked for.

The search's end (from Tune's results), its MLflow parent run (from the callback's records) and
`export` (from the trials' MLflow runs) each hold their trials differently; each gives this
module plain records, mappings with the trial's `status` (a `TrialStatus`, its text as a tag
holds it, or None) and its value under `METRIC` (its best val_acc over its epochs, or None).

The rule: only a trial whose val_acc is a real measurement counts (`TrialStatus.has_result`:
completed, stopped early, still running or interrupted; not failed or rejected, whose val_acc
is a stand-in 0), the highest value is the best, and of equal values the one with the smallest
`trial_id` (Tune numbers its trials in the order it creates them), so that the search's end,
its parent run and `export` name the same trial whatever order they hold them in.
"""

from __future__ import annotations

from typing import Iterable, Mapping, TypeVar

from gunn_search.status import METRIC, TrialStatus, parse_status

R = TypeVar("R", bound=Mapping)


def can_be_best(status: TrialStatus | str | None) -> bool:
    """Whether a trial with this status (a `TrialStatus`, a tag's text, None) has a result."""
    st = parse_status(status) if status is not None else None
    return st is not None and st.has_result


def ranked(records: Iterable[R]) -> list[R]:
    """The records that can be the best, best first (ties by trial id)."""
    return sorted((r for r in records if r.get(METRIC) is not None and can_be_best(r.get("status"))),
                  key=lambda r: (-r[METRIC], str(r.get("trial_id") or "")))


def best_trial(records: Iterable[R]) -> R | None:
    """The best of the records, or None when none has a result."""
    top = ranked(records)
    return top[0] if top else None
