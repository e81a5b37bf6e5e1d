"""gunn_search.track.trial_runs through the ablation's callback, without Ray running: cells are
stand-ins with a trial id, a grid config and a Tune status."""

import pickle
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from gunn_search.ablation import run as ab
from gunn_search.ablation.callback import AblationCallback
from gunn_search.status import STATUS_KEY
from gunn_search.run import interrupts
from gunn_search import tags
from trainers.config import parse_config

from tests.test_ablation import tiny_config


def cell(variant: str, seed: int, status: str = "RUNNING", last=None):
    return SimpleNamespace(trial_id=f"{variant}_{seed}", status=status, last_result=last or {},
                           error_file=None, config={"run": {"variant": variant, "seed": seed}})


@pytest.fixture
def ablation(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={tags.ROLE_TAG: "ablation"}).info.run_id
    base = parse_config(tiny_config(), "test")
    configs = {(v, s): ab.variant_config(base, v, s) for v in ("gunn", "sunn") for s in (0, 1)}
    return client, lambda: AblationCallback(uri, exp, parent, configs)


def by_cell(client, cb):
    runs = client.search_runs([cb.experiment_id], f"tags.`{tags.PARENT_TAG}` = '{cb.parent_run_id}'")
    return {(r.data.tags[tags.VARIANT_TAG], int(r.data.tags[tags.SEED_TAG])): r for r in runs}


def test_cells_get_runs_with_their_config_metrics_and_final_status(ablation):
    client, new = ablation
    cb = new()
    done, nan, failed = cell("gunn", 0), cell("sunn", 0), cell("gunn", 1)
    for c in (done, nan, failed):
        cb.on_trial_start(0, [], c)
    cb.on_trial_result(0, [], done, {"epoch": 1, "val_acc": 0.7, "test_acc": 0.6,
                                     STATUS_KEY: "completed"})
    cb.on_trial_result(0, [], nan, {"epoch": 1, "val_acc": 0.0, "train_loss": float("nan"),
                                    STATUS_KEY: "non-finite loss"})
    done.last_result = {"epoch": 1, STATUS_KEY: "completed"}
    nan.last_result = {"epoch": 1, STATUS_KEY: "non-finite loss"}
    cb.on_trial_complete(0, [], done)
    cb.on_trial_complete(0, [], nan)
    cb.on_trial_recover(0, [], failed)
    cb.on_trial_error(0, [], failed)
    cb.on_experiment_end([done, nan, failed])

    runs = by_cell(client, cb)
    assert set(runs) == {("gunn", 0), ("sunn", 0), ("gunn", 1)}
    r = runs["gunn", 0]
    assert (r.info.status, r.data.tags[tags.STATUS_TAG]) == ("FINISHED", "completed")
    assert r.info.run_name == "gunn-seed0" and r.data.tags[tags.ROLE_TAG] == "ablation_run"
    assert r.data.tags[tags.TRIAL_TAG] == "gunn_0"
    assert r.data.metrics["val_acc"] == 0.7 and r.data.metrics["test_acc"] == 0.6
    assert r.data.params["model.family"] == "gunn" and r.data.params["seed"] == "0"
    assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["train_config.yaml"]
    r = runs["sunn", 0]  # its stand-in val_acc is no measurement
    assert (r.info.status, r.data.tags[tags.STATUS_TAG]) == ("FAILED", "non-finite loss")
    assert "val_acc" not in r.data.metrics
    r = runs["gunn", 1]
    assert (r.info.status, r.data.tags[tags.STATUS_TAG]) == ("FAILED", "errored")
    assert r.data.tags[tags.ERROR_TAG] == "unknown error"
    assert cb.run_ids() == {k: r.info.run_id for k, r in runs.items()}


def test_a_signal_closes_the_cut_cells_and_a_resume_continues_their_runs(ablation, monkeypatch):
    client, new = ablation
    cb = new()
    done, cut, waiting = cell("gunn", 0), cell("sunn", 0), cell("gunn", 1)
    for c in (done, cut, waiting):
        cb.on_trial_start(0, [], c)
    done.last_result = {"epoch": 1, STATUS_KEY: "completed"}
    cb.on_trial_complete(0, [], done)
    cb = pickle.loads(pickle.dumps(cb))  # as Tune keeps it: its settings, not its runs
    assert cb.runs == {} and cb.__getstate__().keys() == {"tracking_uri", "experiment_id",
                                                          "parent_run_id", "configs"}
    cb.on_trial_start(0, [], cut)  # restored: its run again, RUNNING
    assert cb.earlier == set(by_cell(client, cb))
    monkeypatch.setattr(interrupts, "_received", interrupts.Interrupt(2, "2026-01-01T00:00:00Z"))
    # Tune's cleanup marks a cut cell TERMINATED; one that waits to start again is PENDING.
    cut.status, waiting.status, done.status = "TERMINATED", "PENDING", "TERMINATED"
    cb.on_experiment_end([done, cut, waiting])

    runs = by_cell(client, cb)
    assert len(runs) == 3
    for key in (("sunn", 0), ("gunn", 1)):
        assert (runs[key].info.status, runs[key].data.tags[tags.STATUS_TAG]) == \
            ("KILLED", "interrupted")
    assert (runs["gunn", 0].info.status, runs["gunn", 0].data.tags[tags.STATUS_TAG]) == \
        ("FINISHED", "completed")

    monkeypatch.setattr(interrupts, "_received", None)
    resumed = new()
    resumed.on_trial_start(0, [], cut)
    assert resumed.runs[("sunn", 0)] == runs["sunn", 0].info.run_id  # the same run continues
    r = client.get_run(runs["sunn", 0].info.run_id)
    assert (r.info.status, r.data.tags[tags.STATUS_TAG]) == ("RUNNING", "running")
    resumed.abort()  # a second signal: what started here and did not end
    r = client.get_run(runs["sunn", 0].info.run_id)
    assert (r.info.status, r.data.tags[tags.STATUS_TAG]) == ("KILLED", "interrupted")
    assert client.get_run(runs["gunn", 0].info.run_id).info.status == "FINISHED"
