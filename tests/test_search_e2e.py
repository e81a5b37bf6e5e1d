"""A user's whole path on CPU: smoke search -> MLflow -> export -> gunn-train -> MLflow."""

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gunn_search.track import store as tr
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_search(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("smoke")
    res = run_cli(["gunn-search", "--space", "smoke.yaml"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return cwd, res


def test_search_prints_result_on_stdout_and_progress_on_stderr(smoke_search):
    cwd, res = smoke_search
    assert "best trial:" in res.stdout and "gunn-search export --experiment smoke" in res.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in res.stdout
    assert "Configuration for experiment" not in res.stdout  # Ray's banner kept off stdout
    assert "trials" in res.stderr and "best val_acc" in res.stderr
    # Libraries' INFO notes (MLflow's schema creation, Optuna's new study) stay off the terminal.
    assert " INFO mlflow" not in res.stderr and "A new study created" not in res.stderr


def test_mlflow_holds_one_parent_and_a_child_per_trial(smoke_search):
    cwd, _ = smoke_search
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "search"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get(tr.PARENT_TAG) == parent.info.run_id]
    assert len(children) == 6 == len(runs) - 1
    assert {"search.num_samples", "search.seed", "seed", "search.grace_period",
            "search.reduction_factor"} <= set(parent.data.params)  # both seeds recorded

    stopped = 0
    best = 0.0
    momenta = set()
    for c in children:
        params = c.data.params
        # the trial's training config under its dotted paths, as gunn-train logs it
        for key in ("model.family", "model.stages.0.N", "model.stages.0.P", "model.stages.0.K",
                    "model.stages.1.N", "optim.lr", "optim.momentum", "optim.weight_decay",
                    "batch_size", "epochs", "seed", "data.name", "schedule.kind"):
            assert key in params, key
        assert int(params["model.stages.0.N"]) % int(params["model.stages.0.P"]) == 0
        assert not any(k.endswith(".n") or "_N" in k for k in params)  # raw sampler names
        assert 0.8 <= float(params["optim.momentum"]) <= 0.95
        momenta.add(params["optim.momentum"])
        assert set(c.data.metrics) <= set(tr.EPOCH_METRICS) | {"cost.params", "cost.macs",
                                                                "cost.activation_bytes"}
        assert not set(c.data.metrics) & set(params)  # no name is both a param and a metric
        status = c.data.tags[tr.STATUS_TAG]
        hist = client.get_metric_history(c.info.run_id, "val_acc")
        steps = sorted(m.step for m in hist)
        if status == "completed":
            assert steps == [1, 2, 3, 4]
        else:
            assert status == "stopped by ASHA", status
            e = int(c.data.tags["gunn_search.stopped_at_epoch"])
            assert steps == list(range(1, e + 1)) and e < 4
            stopped += 1
        assert c.info.status == "FINISHED"
        best = max(best, max(m.value for m in hist))
        # The rung results, beside the trial's own curve: an annealing branch at each of ASHA's
        # rungs (epochs 1 and 2) the trial reached, never at its last epoch; their cost too.
        annealed = client.get_metric_history(c.info.run_id, "annealed_val_acc")
        assert sorted(m.step for m in annealed) == [r for r in (1, 2) if r <= steps[-1]]
        branch = {m.step: m.value for m in client.get_metric_history(c.info.run_id,
                                                                     "branch_epochs")}
        assert all((branch[e] > 0) == (e in (1, 2)) for e in steps)
        assert "train_config.yaml" in [a.path for a in client.list_artifacts(c.info.run_id)]
    assert len(momenta) == len(children)  # each trial trained its own momentum
    assert stopped >= 1  # ASHA cut some trials short
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "smoke.yaml", "plots"} <= arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/learning_curves.png",
            "plots/parallel_coordinates.png", "plots/param_importances.png"} <= plots


def test_export_writes_what_the_trial_trained_and_gunn_train_logs_the_same_params(smoke_search):
    cwd, _ = smoke_search
    res = run_cli(["gunn-search", "export", "--experiment", "smoke", "--out", "best.yaml"], cwd)
    assert res.returncode == 0, res.stderr
    assert "Downloading artifacts" not in res.stderr
    cfg = yaml.safe_load((cwd / "best.yaml").read_text())
    search_id = cfg["tracking"]["tags"][tr.SEARCH_TAG]
    trial_id = cfg["tracking"]["tags"]["gunn_search.trial_run_id"]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    trained = yaml.safe_load(Path(client.download_artifacts(trial_id, "train_config.yaml",
                                                            str(cwd))).read_text())
    assert trained["tracking"] is None  # a trial logs nowhere of its own
    assert {k: v for k, v in cfg.items() if k != "tracking"} == \
        {k: v for k, v in trained.items() if k != "tracking"}  # exactly, plus tracking

    res = run_cli(["gunn-train", "--config", "best.yaml"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert '"status": "completed"' in res.stdout
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'train'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags[tr.SEARCH_TAG] == search_id
    assert run.data.params == client.get_run(trial_id).data.params  # same names, same values
    assert "final_val_acc" in run.data.metrics and "cost.params" in run.data.metrics
    assert "final/checkpoint.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "final")]

    res = run_cli(["gunn-search", "export", "--experiment", "smoke", "--out", "full.yaml",
                   "--epochs", "300", "--final"], cwd)
    assert res.returncode == 0, res.stderr
    full = yaml.safe_load((cwd / "full.yaml").read_text())
    assert full["epochs"] == 300 and full["data"]["split"] == "final"
    assert full["optim"] == cfg["optim"] and full["model"] == cfg["model"]


def test_an_exported_config_runs_as_a_one_point_search(smoke_search):
    cwd, _ = smoke_search
    if not (cwd / "best.yaml").exists():
        run_cli(["gunn-search", "export", "--experiment", "smoke", "--out", "best.yaml"], cwd)
    res = run_cli(["gunn-search", "--space", "best.yaml", "--experiment", "onepoint",
                   "--max-epochs", "1"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("onepoint")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    assert len(runs) == 1  # one point, one trial
    cfg = yaml.safe_load((cwd / "best.yaml").read_text())
    params = runs[0].data.params
    assert params["optim.lr"] == str(cfg["optim"]["lr"]) and params["epochs"] == "1"
    assert params["model.stages.0.N"] == str(cfg["model"]["stages"][0]["N"])


def test_warm_start_tells_the_sampler_the_earlier_trials_and_runs_the_best_first(smoke_search):
    cwd, _ = smoke_search
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    smoke = client.get_experiment_by_name("smoke")
    earlier = client.search_runs([smoke.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    finished = [r for r in earlier if r.data.tags[tr.STATUS_TAG] in ("completed", "stopped by ASHA")]
    best = max((r for r in finished if r.data.tags[tr.STATUS_TAG] == "completed"),
               key=lambda r: max(m.value for m in client.get_metric_history(r.info.run_id,
                                                                            "val_acc")))
    res = run_cli(["gunn-search", "--space", "smoke.yaml", "--experiment", "warm", "--warm-start",
                   "smoke", "--warm-start-top", "1", "--num-samples", "2", "--max-epochs", "1"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"warm start from 'smoke': {len(finished)} earlier trials" in res.stderr
    warm = client.get_experiment_by_name("warm")
    parent = client.search_runs([warm.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'search'")[0]
    assert parent.data.params["warm_start.experiment"] == "smoke"
    assert int(parent.data.params["warm_start.used"]) == len(finished)
    trials = client.search_runs([warm.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    # The trial sampled first is the one Tune created first: its directory's counter is 1. (Two
    # trials that start together open their MLflow runs in either order.)
    first_dir, = (cwd / "gunn-search-runs" / "warm").glob("train_trial_*_1_*")
    first_id = first_dir.name.split("_")[2]
    first, = [t.data.params for t in trials if t.data.tags[tr.TRIAL_TAG] == first_id]
    for key in ("optim.lr", "optim.momentum", "optim.weight_decay", "model.stages.0.N",
                "model.stages.1.P"):
        assert first[key] == best.data.params[key], key  # the earlier best ran first
    assert first["epochs"] == "1"


def test_importances_recomputed_from_mlflow_are_the_ones_the_search_logged(smoke_search):
    """The finished search's importances (its parent run's `importance.*` metrics, the numbers
    in its figure) and `gunn-search importances`, recomputed later from the trials' runs alone,
    are the same numbers, from the same trials."""
    from gunn_search import api

    cwd, res = smoke_search
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke")
    (parent,) = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'search'")
    logged = {k.removeprefix("importance."): v for k, v in parent.data.metrics.items()
              if k.startswith("importance.")}
    assert logged and sum(logged.values()) == pytest.approx(1.0)
    again = api.importances("smoke", tracking_uri=uri)
    assert again.search == "smoke"
    assert again.values == pytest.approx(logged, rel=1e-9)
    assert again.label in parent.data.tags["gunn_search.importances"]  # the same trials
    assert again.label in res.stdout  # ... as the summary said
    out = run_cli(["gunn-search", "importances", "--experiment", "smoke", "--tracking-uri", uri],
                  cwd)
    assert out.returncode == 0, out.stderr
    first = max(logged, key=logged.get)
    assert out.stdout.splitlines()[1].split() == [first, f"{logged[first]:.4f}"]
    bad = run_cli(["gunn-search", "importances", "--experiment", "smoke", "--search", "nope",
                   "--tracking-uri", uri], cwd)
    assert bad.returncode == 2 and "no such search" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
