"""What keeps a search's cost per trial flat as it grows (benchmarks/search_growth.py): Tune's
state saves stretched when they get slow, the importances on a bounded sample, and the driver's
own timing line."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from gunn_search.run import state_saves
from gunn_search.run import timing
from gunn_search.results.importances import importance_sample, param_importances
from gunn_search.results.search_axes import TrialRecord


class FakeManager:
    """Tune's _ExperimentCheckpointManager as far as the period goes: saves when the period has
    passed since the last save (or when forced)."""

    def __init__(self, checkpoint_period):
        self._auto_checkpoint_enabled = checkpoint_period == "auto"
        self._checkpoint_period = (10.0 if self._auto_checkpoint_enabled
                                   else float(checkpoint_period))
        self._last_save_time = float("-inf")

    def sync_up_experiment_state(self, save_fn, force=False, wait=False):
        if time.monotonic() - self._last_save_time < self._checkpoint_period and not force:
            return
        save_fn()
        self._last_save_time = time.monotonic()


@pytest.fixture
def fake_tune(monkeypatch):
    from ray.tune.execution import experiment_state

    monkeypatch.setattr(experiment_state, "_ExperimentCheckpointManager", FakeManager)
    assert state_saves.adapt_state_saves()
    return FakeManager


def test_installed_tune_gets_the_adaptive_period(monkeypatch):
    """The wrapped private method exists in the Ray this project pins (a Ray upgrade that
    renames it makes this fail instead of silently saving every second again)."""
    from ray.tune.execution import experiment_state

    cls = experiment_state._ExperimentCheckpointManager
    monkeypatch.setattr(cls, "sync_up_experiment_state", cls.sync_up_experiment_state)
    assert state_saves.adapt_state_saves()
    assert cls.sync_up_experiment_state._gunn_adaptive
    assert state_saves.adapt_state_saves()  # twice: wrapped once


def test_slow_saves_stretch_the_period_and_fast_ones_bring_it_back(fake_tune):
    m = fake_tune(1)
    m.sync_up_experiment_state(lambda: time.sleep(0.2))
    assert m._checkpoint_period == pytest.approx(state_saves.SHARE * 0.2, rel=0.5)
    assert m._checkpoint_period > 2.0
    saves = []
    m.sync_up_experiment_state(lambda: saves.append(1))  # inside the stretched period: skipped
    assert saves == []
    m.sync_up_experiment_state(lambda: saves.append(1), force=True)  # a fast save
    assert saves == [1] and m._checkpoint_period == 1.0  # back to the configured floor
    assert timing.COUNTERS["tune_state_save"]["last"] == 1.0  # the timing line's counter


def test_auto_period_is_left_to_tune(fake_tune):
    m = fake_tune("auto")
    m.sync_up_experiment_state(lambda: time.sleep(0.05))
    assert m._checkpoint_period == 10.0


def test_importances_use_a_fixed_sample_of_a_large_search(monkeypatch):
    from gunn_search.results import importances

    monkeypatch.setattr(importances, "IMPORTANCE_TRIALS", 20)
    seen = []
    real = importances._fanova
    monkeypatch.setattr(importances, "_fanova", lambda rows, *a: seen.append(len(rows)) or real(rows, *a))
    recs = [TrialRecord(f"t{i}", {"lr": 0.01 * (i + 1), "wd": float(i % 7)}, [], "completed",
                        0.5 + 0.001 * i) for i in range(50)]
    assert param_importances(recs)
    assert seen == [20]
    small = importance_sample(list(range(50)), 20)
    assert small == importance_sample(list(range(50)), 20)  # seeded: the same every time
    assert len(set(small)) == 20 and small == sorted(small)  # distinct, in the trials' order
    assert importance_sample(list(range(20)), 20) == list(range(20))  # small search: all of it


def test_quarters_show_a_cost_that_grows():
    marks = [(i * i, i) for i in range(9)]  # cumulative i^2: the increments grow
    q = timing.quarters(marks, ("grows", "flat"))
    assert q["flat_first_q"] == q["flat_last_q"] == 1.0
    assert q["grows_first_q"] == 2.0 and q["grows_last_q"] == 14.0  # (4 - 0) / 2, (64 - 36) / 2
    assert timing.quarters(marks[:3], ("a", "b")) == {}


def test_timing_line_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv(timing.ENV, raising=False)
    timing.report({"x": 1})
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(timing.ENV, "1")
    monkeypatch.setattr(timing, "COUNTERS", {})
    timing.report({"x": 1})
    line = capsys.readouterr().err.strip()
    assert timing.parse(line) == {"x": 1} and timing.parse("gunn-search: other") is None
    timing.add("save", 0.5, 2.0)
    timing.add("save", 0.25, 1.0)
    timing.report({"x": 1})
    assert timing.parse(capsys.readouterr().err.strip()) == {
        "x": 1, "save": {"n": 2, "s": 0.75, "max_s": 0.5, "last": 1.0}}


def test_buffered_client_counts_its_calls_and_seconds():
    from gunn_search.track.store import BufferedClient

    slow = SimpleNamespace(log_batch=lambda *a, **k: time.sleep(0.05))
    c = BufferedClient(slow)
    c.call("log_batch", "run")
    c.call("log_batch", "run")
    assert c.calls == 2 and 0.09 < c.busy_s < 1.0


def test_trial_config_files_leave_the_spool_once_delivered(tmp_path):
    """Each trial's train_config.yaml is spooled for a write that may be queued; delivered, it
    goes at once (left to the search's end, 384 of them took 1.1 s to remove)."""
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr
    from gunn_search.run.search_runs import MLflowSearchCallback
    from gunn_search.space import example_configs, load_space

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    space = load_space("smoke.yaml")
    cb = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")
    trials = [SimpleNamespace(trial_id=f"t{i}", config=c, status="RUNNING", last_result={},
                              error_file=None)
              for i, c in enumerate(example_configs(space, n=3, seed=1))]
    for t in trials:
        cb.on_trial_start(0, trials, t)
    assert list(cb._spool().iterdir()) == []
    for t in trials:  # and the artifact did reach MLflow
        run = cb.runs[t.trial_id]
        assert [a.path for a in client.list_artifacts(run)] == ["train_config.yaml"]
