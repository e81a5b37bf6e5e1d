"""gunn_search.run.search_runs without Ray running: trials are stand-ins with an id and a config."""

import pickle
import sys
from types import SimpleNamespace

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from gunn_search.track import store as tr
from gunn_search.run import search_runs
from gunn_search.run.search_runs import MLflowSearchCallback
from gunn_search.space import example_configs, load_space


def trial(tid: str, config: dict, status: str = "TERMINATED", last=None):
    return SimpleNamespace(trial_id=tid, config=config, status=status, last_result=last or {},
                           error_file=None)


def test_resumed_search_deletes_the_run_of_a_trial_tune_never_saved(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    space = load_space("smoke.yaml")
    configs = example_configs(space, n=3, seed=1)
    trials = [trial(f"t{i}", c) for i, c in enumerate(configs)]

    first = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")  # the killed driver
    for t in trials:
        first.on_trial_start(0, trials, t)
    first.client.flush()

    # The restored search knows t0 and t1 only (t2 started after Tune's last state save) and
    # runs a new trial t3 in t2's place.
    resumed = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")
    restored = trials[:2] + [trial("t3", configs[2])]
    for t in restored:
        resumed.on_trial_start(0, restored, t)
        resumed.on_trial_result(0, restored, t, {"epoch": 1, "val_acc": 0.5, "train_loss": 1.0,
                                                 "trial_status": "completed"})
        resumed.on_trial_complete(0, restored, t)
    resumed.on_experiment_end(restored)

    active = client.search_runs([exp], f"tags.`{tr.PARENT_TAG}` = '{parent}'")
    assert sorted(r.data.tags[tr.TRIAL_TAG] for r in active) == ["t0", "t1", "t3"]
    assert all(r.info.status == "FINISHED" for r in active)
    deleted = client.search_runs([exp], f"tags.`{tr.TRIAL_TAG}` = 't2'",
                                 run_view_type=ViewType.DELETED_ONLY)
    assert len(deleted) == 1 and deleted[0].info.status == "KILLED"
    assert deleted[0].data.tags[tr.STATUS_TAG].startswith("abandoned")
    assert "trial t2 was started just before the driver stopped" in capsys.readouterr().err
    assert client.get_run(parent).info.status == "FINISHED"


def test_plot_imports_start_only_once_every_trial_is_sampled_and_a_slot_is_free(tmp_path,
                                                                                 monkeypatch):
    from gunn_search.run import search_runs as mlflow_callback

    started = []
    monkeypatch.setattr(mlflow_callback, "_import_plotting", lambda: started.append(1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    space = load_space("smoke.yaml")  # 6 samples
    configs = example_configs(space, n=6, seed=1)
    cb = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")

    def end(trials, t):
        cb.on_trial_start(0, trials, t)
        cb.on_trial_complete(0, trials, t)
        if cb._preloading is not None:
            cb._preloading.join()

    some = [trial(f"t{i}", c, "RUNNING") for i, c in enumerate(configs[:4])]
    end(some, some[0])  # more trials to sample: their slot is about to be reused
    assert started == []
    pending = some + [trial("t4", configs[4], "RUNNING"), trial("t5", configs[5], "PENDING")]
    end(pending, pending[0])  # all sampled, one still waiting for a slot
    assert started == []
    running = pending[:5] + [trial("t5", configs[5], "RUNNING")]
    end(running, running[1])
    end(running, running[2])  # at most once per search
    assert started == [1]


def test_trial_runs_log_the_config_paths_and_the_plots_get_numbers_and_distributions(
        tmp_path, monkeypatch):
    """A trial's params are its config's dotted paths (as gunn-train logs them); the plots get
    each searched value as a number with the distribution it was sampled from (log for lr)."""
    from optuna.distributions import FloatDistribution

    from gunn_search.results import plots
    from gunn_search.space import trial_config

    seen = {}
    monkeypatch.setattr(plots, "write_search_plots",
                        lambda records, out, **kw: seen.update(records=records, **kw) or [])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    space = load_space("smoke.yaml")
    configs = example_configs(space, n=3, seed=2)
    trials = [trial(f"t{i}", c) for i, c in enumerate(configs)]
    cb = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")
    for i, t in enumerate(trials):
        cb.on_trial_start(0, trials, t)
        cb.on_trial_result(0, trials, t, {"epoch": 1, "val_acc": 0.5 + i / 10, "train_loss": 1.0,
                                          "trial_status": "completed"})
        cb.on_trial_complete(0, trials, t)
    cb.on_experiment_end(trials)

    runs = {r.data.tags[tr.TRIAL_TAG]: r for r in
            client.search_runs([exp], f"tags.`{tr.PARENT_TAG}` = '{parent}'")}
    for t in trials:
        run = runs[t.trial_id]
        assert run.data.params == tr.config_params(trial_config(space, t.config))
        assert run.data.params["optim.momentum"] == str(t.config["optim.momentum"])
        assert run.data.metrics["cost.params"] == t.config["cost.params"]
        assert not set(run.data.params) & set(run.data.metrics)
    recs = seen["records"]
    assert all(isinstance(r.params["optim.lr"], float) for r in recs)  # never strings
    assert all(isinstance(r.params["model.stages.0.P"], int) for r in recs)
    lr = seen["distributions"]["optim.lr"]
    assert isinstance(lr, FloatDistribution) and lr.log
    assert set(seen["distributions"]) == set(space.searched())



def test_a_search_saved_before_the_callback_moved_to_run_still_unpickles():
    """Tune's state names the callback's class by its module; it was gunn_search.track's."""
    old = f"c{search_runs.FORMER_NAME}\nMLflowSearchCallback\n.".encode()  # a pickled class
    sys.modules.pop(search_runs.FORMER_NAME, None)
    try:
        with pytest.raises(ModuleNotFoundError):
            pickle.loads(old)
        search_runs.answer_to_former_name()
        assert pickle.loads(old) is MLflowSearchCallback
    finally:
        sys.modules.pop(search_runs.FORMER_NAME, None)
