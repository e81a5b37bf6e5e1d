"""ResumableASHA rebuilds its rungs from the results restored trials persisted."""

import json
from types import SimpleNamespace

import pyarrow.fs as pafs
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gunn_search.run.scheduler import ResumableASHA


def fake_trial(tmp_path, trial_id, results):
    d = tmp_path / trial_id
    d.mkdir()
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results)
                                   + '{"epoch": 3, "val_ac')  # a line cut short by a kill
    storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(d))
    return SimpleNamespace(trial_id=trial_id, last_result=results[-1] if results else {},
                           storage=storage)


def make(cls):
    return cls(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
               reduction_factor=2)


def test_restored_trials_refill_the_rungs(tmp_path):
    good = [{"epoch": 1, "val_acc": 0.9}, {"epoch": 2, "val_acc": 0.95}]
    restored = [fake_trial(tmp_path, f"t{i}", good) for i in range(3)]
    newcomer = fake_trial(tmp_path, "new", [])
    for cls, expected in ((ResumableASHA, TrialScheduler.STOP), (ASHAScheduler, TrialScheduler.CONTINUE)):
        sched = make(cls)
        for t in restored + [newcomer]:
            sched.on_trial_add(None, t)
        # A poor first epoch: ASHA that remembers the restored trials cuts it at the first rung;
        # one with empty rungs (plain ASHA after a restore) lets it run on.
        action = sched.on_trial_result(None, newcomer, {"epoch": 1, "val_acc": 0.1})
        assert action == expected, cls.__name__


def test_missing_results_file_is_harmless(tmp_path):
    t = fake_trial(tmp_path, "t", [{"epoch": 1, "val_acc": 0.5}])
    (tmp_path / "t" / "result.json").unlink()
    sched = make(ResumableASHA)
    sched.on_trial_add(None, t)  # no exception; nothing to replay
    assert sched.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.5}) == TrialScheduler.CONTINUE


def test_the_search_scheduler_compares_rung_results_not_the_trials_own_val_acc(tmp_path):
    from gunn_search.status import RUNG_METRIC

    sched = ResumableASHA(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    assert sched.set_search_properties("val_acc", "max")  # what Tune passes: takes the mode only
    a, b, c, d = (fake_trial(tmp_path, t, []) for t in "abcd")
    for t in (a, b, c, d):
        sched.on_trial_add(None, t)
    # Mid-schedule val_acc and the rung result disagree; the rung result decides.
    assert sched.on_trial_result(None, a, {"epoch": 1, "val_acc": 0.9, RUNG_METRIC: 0.2}) == \
        TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, {"epoch": 1, "val_acc": 0.1, RUNG_METRIC: 0.8}) == \
        TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, c, {"epoch": 1, "val_acc": 0.99, RUNG_METRIC: 0.1}) == \
        TrialScheduler.STOP
    # A result without a rung result (an epoch between rungs) is not compared.
    assert sched.on_trial_result(None, d, {"epoch": 1, "val_acc": 0.0}) == TrialScheduler.CONTINUE


def test_rung_epochs_and_a_trials_branch_cost_follow_asha():
    from gunn_search.space.rungs import branch_epochs_per_trial, rung_epochs
    from gunn_search.space.schema import SearchSettings

    assert rung_epochs(1, 3, 12) == [1, 3, 9]
    assert rung_epochs(6, 3, 12) == [6] and rung_epochs(12, 3, 12) == []
    s = SearchSettings(grace_period=2, reduction_factor=2, branch_epochs=0.5)
    assert branch_epochs_per_trial(s, 12) == 1.5  # rungs 2, 4, 8
    assert branch_epochs_per_trial(s.model_copy(update={"scheduler": "fifo"}), 12) == 0.0
    assert branch_epochs_per_trial(s.model_copy(update={"branch_epochs": 0.0}), 12) == 0.0


def test_the_search_says_where_its_rungs_are_and_what_they_compare():
    from gunn_search.space.rungs import describe
    from gunn_search.space.schema import SearchSettings

    s = SearchSettings(grace_period=2, reduction_factor=3, branch_epochs=2.0)
    assert describe(s, 12) == ("ASHA rungs at epochs 2, 6 (1/3 goes on), each comparing a "
                               "2-epoch annealing branch")
    assert describe(s.model_copy(update={"branch_epochs": 0.0}), 12) == \
        "ASHA rungs at epochs 2, 6 (1/3 goes on)"
    assert describe(s.model_copy(update={"scheduler": "fifo"}), 12) == \
        "every trial trains to the end (fifo)"



def mo_scheduler():
    from gunn_search.results.pareto import Objective

    sched = ResumableASHA(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2,
                          objectives=[Objective("val_acc", "max"), Objective("cost.params", "min")])
    sched.set_search_properties("val_acc", "max")
    return sched


def test_with_two_objectives_a_cheap_trial_survives_a_rung_that_accuracy_alone_would_cut(tmp_path):
    from gunn_search.status import RUNG_METRIC

    big, cheap = {"cost.params": 900}, {"cost.params": 100}
    first = {"epoch": 1, "val_acc": 0.0, RUNG_METRIC: 0.9, **big}
    later = {"epoch": 1, "val_acc": 0.99, RUNG_METRIC: 0.6, **cheap}  # rung metric decides
    plain = ResumableASHA(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    plain.set_search_properties("val_acc", "max")
    for name, sched, expected in (("mo", mo_scheduler(), TrialScheduler.CONTINUE),
                                  ("acc", plain, TrialScheduler.STOP)):
        (tmp_path / name).mkdir()
        a, b = (fake_trial(tmp_path / name, t, []) for t in "ab")
        for t in (a, b):
            sched.on_trial_add(None, t)
        assert sched.on_trial_result(None, a, first) == TrialScheduler.CONTINUE
        assert sched.on_trial_result(None, b, later) == expected, name


def test_with_two_objectives_a_dominated_trial_is_cut_and_restores_refill_points(tmp_path):
    from gunn_search.status import RUNG_METRIC

    def res(acc, params):
        return {"epoch": 1, "val_acc": acc, RUNG_METRIC: acc, "cost.params": params}

    front = [res(0.9, 500), res(0.7, 100)]
    restored = [fake_trial(tmp_path, f"t{i}", [r]) for i, r in enumerate(front)]
    newcomer = fake_trial(tmp_path, "new", [])
    sched = mo_scheduler()
    for t in restored + [newcomer]:
        sched.on_trial_add(None, t)  # the rung is refilled with the two points of the front
    # dominated by both: cut (empty rungs after a restore would let it run on)
    assert sched.on_trial_result(None, newcomer, res(0.6, 600)) == TrialScheduler.STOP
    other = fake_trial(tmp_path, "other", [])
    sched.on_trial_add(None, other)
    # a new extreme of the front (cheapest of all) goes on although its accuracy is the lowest
    assert sched.on_trial_result(None, other, res(0.5, 50)) == TrialScheduler.CONTINUE
    # a result without a cost is not compared; the last epoch stops as in Tune's ASHA
    late = fake_trial(tmp_path, "late", [])
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, {"epoch": 1, "val_acc": 0.1, RUNG_METRIC: 0.1}) \
        == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, late, {**res(0.1, 9), "epoch": 4}) == TrialScheduler.STOP
    sched.on_trial_complete(None, late, {**res(0.1, 9), "epoch": 4})
    assert "late" not in sched._trial_info


def test_promoted_keeps_the_top_share_of_a_rung_by_pareto_order():
    from gunn_search.results.pareto import Objective
    from gunn_search.run.scheduler import promoted

    objs = [Objective("val_acc", "max"), Objective("cost.params", "min")]
    assert promoted([], [0.1, 10**9], 3, objs)  # the first at a rung always goes on
    rung = [[0.9, 500], [0.8, 400], [0.5, 450], [0.4, 480], [0.3, 490]]
    assert not promoted(rung, [0.45, 470], 3, objs)  # dominated by [0.8, 400]
    assert promoted(rung, [0.95, 600], 3, objs)  # the most accurate: an extreme of the front
