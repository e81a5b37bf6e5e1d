"""A worker node dies mid-trial: its trial is retried from its last checkpoint on the node that
is left, with one MLflow run and no epoch logged twice (a real two-node Ray cluster)."""

import threading
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gunn_search.track import store as tr
from gunn_search.run.search import SearchOptions, run_search
from gunn_search.space import fingerprint as space_fingerprint, parse_space, resolve_space_path

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_worker_node_death_retries_trial_from_checkpoint(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(resolve_space_path("smoke.yaml").read_text())
    data["name"] = "nodes"
    data["epochs"] = 4
    data["search"].update({"num_samples": 2, "max_concurrent": 2, "grace_period": 4})
    data["data"]["data_dir"] = str(tmp_path / "data")
    space = parse_space(data, "nodes")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = SearchOptions(space_path=str(resolve_space_path("smoke.yaml")), experiment="nodes",
                         tracking_uri=uri, storage=str(tmp_path / "storage"), max_failures=2,
                         artifact_root=str(tmp_path / "art"), fingerprint=space_fingerprint(space))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    opts.address = cluster.address
    killed = {}

    def kill_worker_when_both_trials_have_a_checkpoint():
        deadline = time.time() + 240
        state = tmp_path / "storage" / "nodes" / "gunn_search.json"
        while time.time() < deadline and not killed:
            time.sleep(0.5)
            if not state.exists():  # the search has not opened its store yet: leave it be
                continue
            try:
                client = MlflowClient(uri)
                exp = client.get_experiment_by_name("nodes")
                runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
            except Exception:
                continue
            epochs = [len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs]
            if len(runs) == 2 and min(epochs) >= 1 and max(epochs) < 4:
                time.sleep(1.5)  # let Tune record the checkpoint in its state
                cluster.remove_node(worker, allow_graceful=False)
                killed["at"] = epochs
    watcher = threading.Thread(target=kill_worker_when_both_trials_have_a_checkpoint, daemon=True)
    try:
        watcher.start()
        out = run_search(space, opts)
    finally:
        watcher.join(timeout=5)
        cluster.shutdown()
    assert killed, "the worker node was never killed"
    assert out.num_trials == 2

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nodes")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    assert len(runs) == 2  # the retried trial kept its run
    for r in runs:
        assert r.data.tags[tr.STATUS_TAG] == "completed", r.data.tags
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_acc"))
        assert steps == [1, 2, 3, 4]  # resumed from its checkpoint: no epoch logged twice
        assert "gunn_search.epochs_redone" not in r.data.tags
