"""The MLflow tracking server goes away mid-search: training goes on, writes are buffered and
arrive when it comes back; if it never does, the search still finishes and says what was lost."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gunn_search.track import store as tr
from gunn_search.space import resolve_space_path
from tests.conftest import BIN, MlflowServer

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


class Server(MlflowServer):
    """The shared `mlflow server` (tests/conftest.py), awaited on every start; `stop()` kills it
    at once, like an outage."""

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.uri = self.url

    def start(self, timeout=90):
        super().start()
        self.wait_ready(timeout)
        return self


def start_search(tmp: Path, uri: str) -> subprocess.Popen:
    data = yaml.safe_load(resolve_space_path("smoke.yaml").read_text())
    data["name"] = "outage"
    data["epochs"] = 3
    data["search"].update({"num_samples": 3, "max_concurrent": 2, "grace_period": 3})
    (tmp / "space.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen([str(BIN / "gunn-search"), "--space", "space.yaml", "--tracking-uri", uri],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_metrics(uri: str, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(1)
        try:
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
            if any(r.data.metrics for r in runs):
                return
        except Exception:
            continue
    raise AssertionError("no trial metrics reached the server")


@pytest.fixture
def running_search(tmp_path):
    """An MLflow server and a search logging to it, with its first metrics already arrived."""
    server = Server(tmp_path)
    server.start()
    search = None
    try:
        search = start_search(tmp_path, server.uri)
        wait_for_metrics(server.uri)
        yield server, search
    finally:
        if search and search.poll() is None:
            search.kill()
        server.stop()


def test_server_outage_is_buffered_and_delivered(running_search):
    server, search = running_search
    server.stop()
    time.sleep(15)  # trials keep training and reporting while the server is down
    server.start()
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, err[-3000:]
    assert "buffering" in err and "buffered writes delivered" in err

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name("outage")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "search"]
    children = [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "trial"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert len(children) == 3
    for c in children:
        assert c.data.tags[tr.STATUS_TAG] == "completed"
        assert c.info.status == "FINISHED"
        for key in ("val_acc", "train_loss", "lr"):
            steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, key))
            assert steps == [1, 2, 3], (key, steps)  # nothing lost, nothing twice
    arts = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert "best_config.yaml" in arts and "plots" in arts


def test_server_gone_for_good_search_still_finishes(running_search):
    server, search = running_search
    server.stop()
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, err[-3000:]
    assert "best trial:" in out
    assert "MLflow writes could not be delivered" in err
