"""gunn_search.run.study: the search's Optuna study in a storage Optuna's tools open."""

import optuna
import pytest
from optuna.trial import TrialState

from gunn_search.run import study
from gunn_search.run.searcher import StoppedAsPrunedOptunaSearch
from gunn_search.space import define_by_run, load_space


def test_the_default_storage_sits_beside_a_sqlite_store_else_in_the_storage_dir(tmp_path):
    assert study.default_storage(f"sqlite:///{tmp_path}/a/mlflow.db", "/x") == \
        f"sqlite:///{tmp_path}/a/optuna.db"
    assert study.default_storage("http://127.0.0.1:5000", str(tmp_path / "runs")) == \
        f"sqlite:///{tmp_path}/runs/optuna.db"


def test_a_password_is_masked_and_other_urls_kept():
    assert study.shown("postgresql://me:secret@db:5432/optuna") == \
        "postgresql://me:***@db:5432/optuna"
    assert "secret" not in study.shown("mysql+pymysql://me:secret@db/optuna?charset=utf8")
    assert study.shown("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


def searcher_with(url: str, name: str = "exp") -> StoppedAsPrunedOptunaSearch:
    return StoppedAsPrunedOptunaSearch(
        space=define_by_run(load_space("smoke.yaml")), metric="val_acc", mode="max",
        sampler=optuna.samplers.RandomSampler(0), storage=study.open_storage(url),
        study_name=name)


def test_trials_reach_the_storage_live_with_their_trial_and_run_ids(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = searcher_with(url)
    study.publish_run_ids({"a": "run-a"}.get)
    try:
        for tid in ("a", "b"):
            assert searcher.suggest(tid) is not None
        searcher.on_trial_result("a", {"val_acc": 0.4, "epoch": 1, "training_iteration": 1,
                                       "trial_status": "running"})
        # Another process (optuna-dashboard) sees the running trial and its epoch now.
        live = optuna.load_study(study_name="exp", storage=url).trials
        a = next(t for t in live if t.user_attrs.get("tune_trial_id") == "a")
        assert a.state == TrialState.RUNNING and a.intermediate_values == {1: 0.4}
        assert a.user_attrs["mlflow_run_id"] == "run-a"
        last = {"val_acc": 0.5, "epoch": 2, "training_iteration": 2, "trial_status": "completed"}
        searcher.on_trial_result("a", last)
        searcher.on_trial_complete("a", last)
    finally:
        study.publish_run_ids(lambda tid: None)
    done = {t.user_attrs.get("tune_trial_id"): t
            for t in optuna.load_study(study_name="exp", storage=url).trials}
    assert done["a"].state == TrialState.COMPLETE and done["a"].value == 0.5
    assert done["b"].state == TrialState.RUNNING and "mlflow_run_id" not in done["b"].user_attrs


def test_a_restored_search_fails_the_trials_it_will_never_tell(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = searcher_with(url)
    for tid in ("kept", "done"):
        searcher.suggest(tid)
    searcher.on_trial_complete("done", {"val_acc": 0.3, "trial_status": "completed"})
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last state save
    searcher.suggest("zombie")  # asked after it: the restored search does not know it

    restored = searcher_with(url)
    restored.restore(str(tmp_path / "searcher.pkl"))
    states = {t.user_attrs.get("tune_trial_id"): t.state
              for t in optuna.load_study(study_name="exp", storage=url).trials}
    assert states == {"kept": TrialState.RUNNING, "done": TrialState.COMPLETE,
                      "zombie": TrialState.FAIL}
    restored.on_trial_complete("kept", {"val_acc": 0.6, "trial_status": "completed"})
    s = optuna.load_study(study_name="exp", storage=url)
    assert study.fail_running(s) == 0
    assert sorted(t.state.name for t in s.trials) == ["COMPLETE", "COMPLETE", "FAIL"]


def test_a_trial_that_ended_after_the_last_save_is_run_again_as_a_new_trial(tmp_path):
    """A trial that failed after Tune's last state save (a full disk) is finished in the storage
    but open in the restored search, and Tune runs it again: its results go to a new Optuna
    trial with the same parameters (Optuna updates no finished trial)."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = searcher_with(url)
    searcher.suggest("t")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.on_trial_complete("t", None, error=True)  # after the save: not in the restored state

    restored = searcher_with(url)
    restored.restore(str(tmp_path / "searcher.pkl"))
    last = {"val_acc": 0.7, "epoch": 1, "training_iteration": 1, "trial_status": "completed"}
    restored.on_trial_result("t", last)
    restored.on_trial_complete("t", last)
    failed, rerun = optuna.load_study(study_name="exp", storage=url).trials
    assert (failed.state, rerun.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert rerun.params == failed.params and rerun.value == 0.7
    assert rerun.user_attrs == {"rerun_of": failed.number, "tune_trial_id": "t"}
    assert rerun.intermediate_values == {1: 0.7}


def test_fail_running_spares_the_trials_still_to_be_told(tmp_path):
    s = optuna.create_study(storage=study.open_storage(f"sqlite:///{tmp_path}/o.db"))
    keep, drop = s.ask(), s.ask()
    assert study.fail_running(s, keep={keep.number}) == 1
    assert [t.state for t in s.trials] == [TrialState.RUNNING, TrialState.FAIL]
    assert drop.number == 1


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir-\0/o.db"])
def test_an_unopenable_storage_is_an_exception_the_search_reports(url):
    with pytest.raises(Exception):
        study.study_exists(study.open_storage(url), "exp")


def test_a_new_search_claims_the_first_name_free_in_its_storage_and_folder(tmp_path):
    """Two searches of `smoke` against one storage get smoke and smoke-2, whichever order they
    ask in; a name whose folder exists here is skipped; the study gets the search's direction."""
    storage = study.open_storage(f"sqlite:///{tmp_path}/o.db")
    dirs = ["maximize"]
    assert study.claim(storage, "smoke", "smoke", dirs, lambda n: False) == "smoke"
    assert study.claim(storage, "smoke", "smoke", dirs, lambda n: False) == "smoke-2"
    assert study.claim(storage, "smoke", "smoke", dirs, lambda n: n == "smoke-3") == "smoke-4"
    loaded = optuna.load_study(study_name="smoke-2", storage=storage)
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    two = study.claim(storage, "pareto", "pareto", ["maximize", "minimize"], lambda n: False)
    assert [d.name for d in optuna.load_study(study_name=two, storage=storage).directions] == \
        ["MAXIMIZE", "MINIMIZE"]


def test_a_claimed_study_never_used_is_given_back_and_a_used_one_kept(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = study.open_storage(url)
    study.claim(storage, "smoke", "smoke", ["maximize"], lambda n: False)
    study.release(url, "smoke")
    assert not study.study_exists(storage, "smoke")
    name = study.claim(storage, "smoke", "smoke", ["maximize"], lambda n: False)
    optuna.load_study(study_name=name, storage=storage).ask()
    study.release(url, name)
    assert study.study_exists(storage, name)


def test_ray_loads_the_claimed_study_instead_of_making_another(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    study.claim(study.open_storage(url), "exp", "exp", ["maximize"], lambda n: False)
    searcher = searcher_with(url, "exp")
    assert searcher.suggest("a") is not None
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["exp"]
    assert len(optuna.load_study(study_name="exp", storage=url).trials) == 1
