"""A user's whole path on CPU: smoke search -> MLflow -> export -> gunn-train -> MLflow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gunn_search import tracking as tr

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def run_cli(args, cwd, timeout=600):
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


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
    assert {p for p in ("num_samples", "seed", "grace_period", "reduction_factor")} <= set(parent.data.params)

    stopped = 0
    best = 0.0
    for c in children:
        params = c.data.params
        for key in ("family", "stage1.N", "stage1.P", "stage1.K", "stage1.M", "stage2.N",
                    "lr", "weight_decay", "batch_size", "cost.params", "cost.macs"):
            assert key in params, key
        assert int(params["stage1.N"]) % int(params["stage1.P"]) == 0
        assert not any(k.startswith("stage1.n") or "_N" in k for k in params)  # raw sampler names
        assert set(c.data.metrics) <= set(tr.EPOCH_METRICS)  # no Ray internals as metrics
        status = c.data.tags[tr.STATUS_TAG]
        hist = client.get_metric_history(c.info.run_id, "val_acc")
        steps = sorted(m.step for m in hist)
        if status == "completed":
            assert steps == [1, 2, 3, 4]
        else:
            assert status.startswith("stopped by ASHA at epoch "), status
            e = int(status.rsplit(" ", 1)[1])
            assert steps == list(range(1, e + 1)) and e < 4
            stopped += 1
        assert c.info.status == "FINISHED"
        best = max(best, max(m.value for m in hist))
        assert "train_config.yaml" in [a.path for a in client.list_artifacts(c.info.run_id)]
    assert stopped >= 1  # ASHA cut some trials short
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "smoke.yaml", "plots"} <= arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/learning_curves.png",
            "plots/parallel_coordinates.png", "plots/param_importances.png"} <= plots


def test_export_then_train_logs_to_mlflow(smoke_search):
    cwd, _ = smoke_search
    res = run_cli(["gunn-search", "export", "--experiment", "smoke", "--out", "best.yaml"], cwd)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((cwd / "best.yaml").read_text())
    assert cfg["epochs"] == 300 and cfg["data"]["split"] == "final"
    assert cfg["schedule"]["kind"] == "step" and cfg["schedule"]["milestones"] == [0.5, 0.75]
    search_id = cfg["tracking"]["tags"][tr.SEARCH_TAG]

    res = run_cli(["gunn-train", "--config", "best.yaml", "--epochs", "1"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert '"status": "completed"' in res.stdout

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'train'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags[tr.SEARCH_TAG] == search_id
    assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 1
    assert "final_test_acc" in run.data.metrics
    assert "final/checkpoint.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "final")]
