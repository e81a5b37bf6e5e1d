"""gunn_search.track.ui: what a search leaves for the MLflow UI (tests/test_ui.py shows it in a
browser): the experiment's tags, the trials view, the printed link, the parent's description."""

import json
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from gunn_search.track import ui
from gunn_search.track import store as tr
from gunn_search.run.search_runs import MLflowSearchCallback
from gunn_search.tags import NOTE_TAG
from gunn_search.space import example_configs, load_space


def test_experiment_is_tagged_model_training_new_or_existing_keeping_a_persons_choice(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    new = tr.get_or_create_experiment(client, "new", tmp_path / "art")
    assert client.get_experiment(new).tags[ui.KIND_TAG] == "custom_model_development"
    assert client.get_experiment(new).tags[ui.PRIMARY_METRIC_TAG] == "val_acc"
    old = client.create_experiment("old")  # an experiment made before these tags
    client.set_experiment_tag(old, ui.KIND_TAG, "genai_development")  # a person's choice
    assert tr.get_or_create_experiment(client, "old", None) == old
    tags = client.get_experiment(old).tags
    assert tags[ui.KIND_TAG] == "genai_development" and tags[ui.PRIMARY_METRIC_TAG] == "val_acc"


def test_trials_view_lists_one_searchs_trials_flat_best_first_with_status_and_val_acc_first():
    space = load_space("smoke.yaml")
    params = ui.shown_params(space)
    assert params[:4] == ["model.stages.0.N", "model.stages.0.P", "model.stages.1.N",
                          "model.stages.1.P"]
    assert "optim.lr" in params and not any(p.endswith(".n") for p in params)
    view = ui.trials_view("abc", params)
    assert view["searchFilter"] == "tags.`mlflow.parentRunId` = 'abc'"
    # Sorted by a metric: the UI lists the runs flat (it nests children only by start time).
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`val_acc`", False)
    assert view["selectedColumns"][:2] == ["tags.`gunn_search.status`", "metrics.`val_acc`"]
    assert "params.`optim.lr`" in view["selectedColumns"]
    assert view["columnOrder"][:3] == ["attributes.`Run Name`", "tags.`gunn_search.status`",
                                       "metrics.`val_acc`"]
    link = ui.runs_link("http://127.0.0.1:5000/", "7", "abc")
    assert link == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                    "&viewStateShareKey=gunn-search-abc")
    assert ui.run_link("http://h:1", "7", "r1") == \
        "http://h:1/#/experiments/7/runs/r1?workflowType=machine_learning"


def test_note_tables_the_best_trials_and_fits_a_run_tag():
    params = ["model.stages.0.N", "model.stages.0.P", "model.stages.0.K", "optim.lr"]
    rows = [{"trial": "b", "status": "completed", "val_acc": 0.5, "epochs": 2,
             "config": {"model.stages.0.N": 32, "model.stages.0.P": 4, "model.stages.0.K": 2,
                        "optim.lr": 0.123456}},
            {"trial": "r", "status": "rejected by budget", "val_acc": None, "epochs": 0,
             "config": {}},
            {"trial": "a", "status": "stopped by ASHA", "val_acc": 0.75, "epochs": 1,
             "config": {"model.stages.0.N": 16, "model.stages.0.P": 2, "optim.lr": 0.01}}]
    note = ui.trials_note(rows, params)
    lines = note.splitlines()
    assert lines[0].startswith("**3 trials** (1 completed, 1 rejected by budget, 1 stopped by ASHA)")
    assert "best val_acc 0.75 (`trial-a`)" in lines[0]
    assert lines[2] == "| trial | status | val_acc | epochs | N/P per stage | stages.0.K | optim.lr |"
    assert lines[4] == "| `a` | stopped by ASHA | 0.75 | 1 | 16/2 |  | 0.01 |"
    assert lines[5] == "| `b` | completed | 0.5 | 2 | 32/4 | 2 | 0.1235 |"
    assert lines[6].startswith("| `r` | rejected by budget |  | 0 |")
    many = [{**rows[0], "trial": f"t{i:04d}", "val_acc": i / 1000} for i in range(500)]
    long = ui.trials_note(many, params * 10)
    assert len(long) <= ui.MAX_NOTE and "| `t0499` |" in long


def test_search_writes_the_view_and_the_parent_description(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = tr.get_or_create_experiment(client, "e", tmp_path / "art")
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    space = load_space("smoke.yaml")
    key = ui.write_trials_view(client, exp, parent, ui.shown_params(space))
    state = json.loads(client.get_experiment(exp).tags[ui.VIEW_TAG_PREFIX + key])
    assert state["searchFilter"].endswith(f"'{parent}'")

    configs = example_configs(space, n=2, seed=1)
    trials = [SimpleNamespace(trial_id=f"t{i}", config=c, status="TERMINATED", error_file=None,
                              last_result={"epoch": 1, "trial_status": "completed"})
              for i, c in enumerate(configs)]
    cb = MLflowSearchCallback(uri, exp, parent, space, "smoke.yaml")
    for i, t in enumerate(trials):
        cb.on_trial_start(0, trials, t)
        cb.on_trial_result(0, trials, t, {"epoch": 1, "val_acc": 0.25 * (i + 1), "train_loss": 1.0,
                                          "trial_status": "completed"})
        cb.on_trial_complete(0, trials, t)
    cb.on_experiment_end(trials)
    note = client.get_run(parent).data.tags[NOTE_TAG]
    assert note.startswith("**2 trials** (2 completed), best val_acc 0.5 (`trial-t1`)")
    assert note.index("| `t1` |") < note.index("| `t0` |")
