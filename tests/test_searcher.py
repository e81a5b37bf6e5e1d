"""gunn_search.run.searcher: trials ASHA stopped reach Optuna as PRUNED, finished ones as COMPLETE."""

import optuna
from optuna.trial import TrialState

from gunn_search.run.searcher import StoppedAsPrunedOptunaSearch
from gunn_search.space import define_by_run, load_space


def report(searcher, tid, accs, status_last):
    for epoch, acc in enumerate(accs, 1):
        status = status_last if epoch == len(accs) else "running"
        result = {"val_acc": acc, "epoch": epoch, "training_iteration": epoch,
                  "trial_status": status}
        searcher.on_trial_result(tid, result)
    searcher.on_trial_complete(tid, result)


def test_stopped_trials_are_pruned_with_their_last_value_and_finished_ones_complete():
    space = load_space("smoke.yaml")
    searcher = StoppedAsPrunedOptunaSearch(space=define_by_run(space), metric="val_acc",
                                           mode="max", sampler=optuna.samplers.RandomSampler(0))
    for tid in ("a", "b", "c", "d"):
        assert searcher.suggest(tid) is not None
    report(searcher, "a", [0.3, 0.5, 0.6, 0.7], "completed")  # all 4 epochs
    report(searcher, "b", [0.2], "running")  # cut by ASHA after epoch 1
    report(searcher, "c", [0.1, 0.0], "non-finite loss")  # a bad result, still final
    searcher.on_trial_complete("d", None, error=True)

    trials = {t.number: t for t in searcher._ot_study.get_trials(deepcopy=False)}
    a, b, c, d = (trials[searcher._ot_trials[t].number] for t in "abcd")
    assert a.state == TrialState.COMPLETE and a.value == 0.7
    assert b.state == TrialState.PRUNED and b.value == 0.2 and b.intermediate_values == {1: 0.2}
    assert c.state == TrialState.COMPLETE and c.value == 0.0
    assert d.state == TrialState.FAIL
    searcher.on_trial_complete("b", {"val_acc": 0.9, "trial_status": "running"})  # told once
    assert trials[searcher._ot_trials["b"].number].state == TrialState.PRUNED


def test_a_pruned_trials_value_is_the_rung_result_asha_compared():
    from gunn_search.status import RUNG_METRIC

    space = load_space("smoke.yaml")
    searcher = StoppedAsPrunedOptunaSearch(space=define_by_run(space), metric="val_acc",
                                           mode="max", sampler=optuna.samplers.RandomSampler(0))
    assert searcher.suggest("a") is not None
    common = {"trial_status": "running"}
    searcher.on_trial_result("a", {"val_acc": 0.1, "epoch": 1, "training_iteration": 1, **common})
    last = {"val_acc": 0.2, RUNG_METRIC: 0.6, "epoch": 2, "training_iteration": 2, **common}
    searcher.on_trial_result("a", last)
    searcher.on_trial_complete("a", last)  # ASHA stopped it at the rung of epoch 2
    t = searcher._ot_study.get_trials(deepcopy=False)[0]
    assert t.state == TrialState.PRUNED and t.intermediate_values == {1: 0.1, 2: 0.6}
    assert t.value == 0.6


def test_several_objectives_are_told_as_values_without_intermediate_ones():
    """Optuna keeps no intermediate values for a multi-objective study: each trial's end is
    told as its list of objective values, and nothing reports per epoch."""
    searcher = StoppedAsPrunedOptunaSearch(
        space=define_by_run(load_space("smoke.yaml")), metric=["val_acc", "cost.params"],
        mode=["max", "min"], sampler=optuna.samplers.RandomSampler(0))
    searcher.suggest("a")
    last = {"val_acc": 0.6, "cost.params": 1200, "epoch": 2, "training_iteration": 2,
            "trial_status": "completed"}
    searcher.on_trial_result("a", {**last, "epoch": 1, "training_iteration": 1,
                                   "trial_status": "running"})
    searcher.on_trial_complete("a", last)
    (trial,) = searcher._ot_study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE and trial.values == [0.6, 1200]
    assert trial.intermediate_values == {}
