"""gunn_search.status: a trial's status from its last result, its error and its end."""

import pytest

from gunn_search.status import STATUS_KEY, Kind, TrialStatus, status_of


def result(status, epoch=1):
    return {"epoch": epoch, "val_acc": 0.5, STATUS_KEY: status}


def test_a_result_says_the_status_so_far():
    assert status_of(result("running")) is TrialStatus.RUNNING
    assert status_of(result(TrialStatus.NONFINITE)) is TrialStatus.NONFINITE
    assert status_of(result("rejected by budget")) is TrialStatus.REJECTED
    # no result yet, or one without a status: running
    for last in (None, {}, {"epoch": 1}):
        assert status_of(last) is TrialStatus.RUNNING


def test_a_trial_that_ended_still_running_was_stopped_early():
    assert status_of(result("running", 2), ended=True) is TrialStatus.STOPPED
    assert status_of({}, ended=True) is TrialStatus.STOPPED  # ended before its first result
    for final in (TrialStatus.COMPLETED, TrialStatus.NONFINITE, TrialStatus.REJECTED,
                  TrialStatus.OOM):  # how it ended, whether it ended or not
        assert status_of(result(final), ended=True) is final
        assert status_of(result(final)) is final


@pytest.mark.parametrize("error", [RuntimeError("boom"), True])
def test_an_error_is_errored_whatever_the_last_result_said(error):
    for last in (None, result("running"), result("completed")):
        assert status_of(last, error) is TrialStatus.ERRORED
        assert status_of(last, error, ended=True) is TrialStatus.ERRORED
    # no error: None or False
    assert status_of(result("completed"), None) is status_of(result("completed"), False) \
        is TrialStatus.COMPLETED


def test_every_status_a_trial_ends_with_has_a_kind_other_than_running():
    ended = {status_of(result(s), ended=True) for s in TrialStatus}
    assert all(s.kind is not Kind.RUNNING for s in ended)


def test_text_that_is_no_status_is_an_error():
    with pytest.raises(ValueError):
        status_of(result("finished"))
