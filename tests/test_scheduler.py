"""ResumableASHA rebuilds its rungs from the results restored trials persisted."""

import json
from types import SimpleNamespace

import pyarrow.fs as pafs
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gunn_search.scheduler import ResumableASHA


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
