"""ResumableASHA rebuilds its rungs from the results restored trials persisted."""

import json

import pytest
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
    first = s.model_copy(update={"branch_rungs": "first"})
    assert branch_epochs_per_trial(first, 12) == 0.5  # rung 2 only


def test_branching_at_the_first_rung_only_costs_one_branch_per_trial():
    from gunn_search.space.rungs import (branching_rungs, expected_epochs,
                                       expected_trial_epochs)
    from gunn_search.space.schema import SearchSettings

    s = SearchSettings(grace_period=2, reduction_factor=3, branch_epochs=2.0)
    assert branching_rungs(s, 12) == [2, 6]
    first = s.model_copy(update={"branch_rungs": "first"})
    assert branching_rungs(first, 12) == [2]
    assert branching_rungs(first.model_copy(update={"branch_epochs": 0.0}), 12) == []
    # all reach 2 (+2 branch), 1/3 go on to 6 (+2 more with every rung branching), 1/9 to 12
    assert expected_epochs(2, 3, 12, 2.0) == pytest.approx(2 + 2 + 4 / 3 + 2 / 3 + 6 / 9)
    assert expected_trial_epochs(first, 12) == pytest.approx(2 + 2 + 4 / 3 + 6 / 9)
    assert expected_epochs(2, 3, 12, 2.0, branches=0) == expected_epochs(2, 3, 12)


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
    assert describe(s.model_copy(update={"branch_rungs": "first"}), 12) == (
        "ASHA rungs at epochs 2, 6 (1/3 goes on), the first comparing a 2-epoch annealing "
        "branch, the others the trial's own val_acc")
    assert describe(s.model_copy(update={"brackets": 3, "branch_epochs": 0.0}), 12) == (
        "ASHA rungs at epochs 2, 6 (1/3 goes on) in 3 Hyperband brackets, 67% from rung 2, "
        "24% from rung 6, 9% trained to the end")



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


def test_hyperband_brackets_get_tunes_shares_and_each_trial_keeps_its_bracket(tmp_path):
    """With `search.brackets`, a trial's bracket is `rungs.bracket_of` its id: the same when a
    restore re-adds it (its results replayed into that bracket's rungs), and the same one the
    trainable places its branches by."""
    import collections
    import math

    from gunn_search.space.rungs import bracket_of, bracket_rungs, bracket_shares
    from gunn_search.space.schema import SearchSettings

    s = SearchSettings(grace_period=1, reduction_factor=2, branch_epochs=0.0, brackets=3)
    assert [bracket_rungs(1, 2, 8, b) for b in range(3)] == [[1, 2, 4], [2, 4], [4]]
    e = [math.exp(n - 3) for n in (3, 2, 1)]  # Tune's weighting: e ** (rungs - most rungs)
    assert bracket_shares(s, 8) == pytest.approx([x / sum(e) for x in e])
    drawn = collections.Counter(bracket_of(f"trial_{i:05d}", s, 8) for i in range(3000))
    assert [drawn[b] / 3000 for b in range(3)] == pytest.approx(bracket_shares(s, 8), abs=0.03)
    assert bracket_of("x", s.model_copy(update={"brackets": 1}), 8) == 0

    def sched():
        out = ResumableASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=8,
                            grace_period=1, reduction_factor=2, brackets=3, search=s)
        # Tune's milestones (its last at max_t, where a trial ends anyway)
        assert [[m for m, _ in b._rungs] for b in out._brackets] == [[8, 4, 2, 1], [8, 4, 2],
                                                                     [8, 4]]
        return out

    ids = [f"trial_{i:05d}" for i in range(12)]
    results = {t: [{"epoch": e, "val_acc": 0.5 + 0.01 * i} for e in (1, 2)]
               for i, t in enumerate(ids)}
    first = sched()
    trials = [fake_trial(tmp_path, t, results[t]) for t in ids]
    for t in trials:
        first.on_trial_add(None, SimpleNamespace(trial_id=t.trial_id, last_result={}))
        assert first._trial_info[t.trial_id] is first._brackets[bracket_of(t.trial_id, s, 8)]
        for r in results[t.trial_id]:
            first.on_trial_result(None, t, r)
    again = sched()  # a restore: every trial re-added with its persisted results
    for t in trials:
        again.on_trial_add(None, t)
    for b1, b2 in zip(first._brackets, again._brackets):
        assert [dict(r) for _, r in b1._rungs] == [dict(r) for _, r in b2._rungs]
    assert sum(len(r) for b in again._brackets for _, r in b._rungs) > 0
