"""gunn_search.results.best: one rule for the best trial, over plain records."""

from gunn_search.results.best import best_trial, can_be_best, ranked
from gunn_search.status import METRIC, TrialStatus


def rec(name, status, value):
    return {"trial": name, "status": status, METRIC: value}


def test_only_trials_with_a_measured_result_count():
    records = [rec("failed", TrialStatus.ERRORED, 0.99), rec("rejected", TrialStatus.REJECTED, 0.0),
               rec("nan", TrialStatus.NONFINITE, 0.98), rec("oom", "oom", 0.97),
               rec("stopped", TrialStatus.STOPPED, 0.6), rec("done", TrialStatus.COMPLETED, 0.5),
               rec("running", TrialStatus.RUNNING, 0.4), rec("cut", TrialStatus.INTERRUPTED, 0.3),
               rec("no value", TrialStatus.COMPLETED, None), rec("no status", None, 0.9),
               rec("old tag", "finished", 0.95)]
    assert [r["trial"] for r in ranked(records)] == ["stopped", "done", "running", "cut"]
    assert best_trial(records)["trial"] == "stopped"


def test_a_status_may_be_a_tags_text():
    records = [rec("a", "completed", 0.5), rec("b", "stopped by ASHA", 0.7), rec("c", "errored", 0.9)]
    assert best_trial(records)["trial"] == "b"
    assert can_be_best("completed") and can_be_best(TrialStatus.RUNNING)
    assert not can_be_best("errored") and not can_be_best(None) and not can_be_best("no status")


def test_ties_go_to_the_smallest_trial_id_whatever_the_order_given():
    # The search's end (Tune's order) and export (MLflow's order) must name the same trial.
    records = [{"trial_id": "t_00002", "status": "completed", METRIC: 0.7},
               {"trial_id": "t_00001", "status": "completed", METRIC: 0.7}]
    assert best_trial(records)["trial_id"] == best_trial(records[::-1])["trial_id"] == "t_00001"


def test_ties_without_trial_ids_go_to_the_first_given_and_nothing_counts_gives_none():
    records = [rec("a", TrialStatus.COMPLETED, 0.5), rec("b", TrialStatus.COMPLETED, 0.7),
               rec("c", TrialStatus.STOPPED, 0.7)]
    assert [r["trial"] for r in ranked(records)] == ["b", "c", "a"]
    assert best_trial(records)["trial"] == "b"
    assert best_trial([]) is None
    assert best_trial([rec("x", TrialStatus.ERRORED, 1.0)]) is None
    # any mapping with the two keys: the caller's own fields travel with it
    assert best_trial(iter([{"run": "r1", "status": "completed", METRIC: 0.1}]))["run"] == "r1"
