"""gunn-search on a real two-node Ray cluster (the `ray` CLI) logging to a real `mlflow server`.

Everything runs on this machine, as separate processes, bounded in time and always torn down:

- `ray start --head` and one `ray start --address` worker node, each with `--num-cpus=1`, in
  `--block` mode in their own process groups, with a private `--temp-dir` and a private token
  (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`) that every process of the cluster, the driver
  included, shares (docs/runtime.md: mixing modes fails after ~20 s with InvalidAuthToken);
- `mlflow server` on 127.0.0.1 with a SQLite store and a local artifact root (tests/conftest.py);
- `gunn-search --address 127.0.0.1:P --tracking-uri http://127.0.0.1:M` as the driver.

Teardown never uses `ray stop` (it stops every Ray process of the machine, other people's too):
it signals the process groups it started, then kills any process left that carries this
cluster's marker in its environment (Ray's workers rename themselves, so cmdlines are no help).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from gunn_search.track import store as tr
from tests.conftest import BIN, MlflowServer, free_port, kill_group, tail

MARKER_VAR = "GUNN_SEARCH_TEST_CLUSTER"
NUM_SAMPLES, MAX_EPOCHS = 4, 2


# --- helpers ------------------------------------------------------------------------------------

def marked_pids(marker: str) -> list[int]:
    """Processes (other than this one) whose environment carries `MARKER_VAR=marker`."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def sweep(marker: str, timeout: float = 15.0) -> list[int]:
    """SIGKILL every process carrying the marker until none is left; returns what was killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = marked_pids(marker)
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.5)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log) if log else ''}")
        time.sleep(interval)
    pytest.fail(f"{what}: not ready after {timeout:.0f} s\n{tail(log) if log else ''}")


def active_nodes(status_output: str) -> list[str]:
    """Node ids listed under 'Active:' in `ray status` output."""
    m = re.search(r"^Active:\n(.*?)^Pending:", status_output, re.M | re.S)
    return re.findall(r"node_([0-9a-f]+)", m.group(1)) if m else []


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """Environment shared by every process of the test cluster, the driver included."""
    root = tmp_path_factory.mktemp("cluster")
    token = root / "ray_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    marker = secrets.token_hex(8)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
           MARKER_VAR: marker, "PYTHONUNBUFFERED": "1"}
    for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    yield root, env
    sweep(marker)  # last resort: nothing of this cluster may outlive the module


@pytest.fixture(scope="module")
def mlflow_server(cluster_env):
    """`mlflow server` on 127.0.0.1 (SQLite + a local artifact root); started, not yet awaited."""
    root, env = cluster_env
    server = MlflowServer(root, env=env).start()
    try:
        yield server
    finally:
        server.stop(grace=10)


@pytest.fixture(scope="module")
def ray_cluster(cluster_env):
    """A head and one worker node, 1 CPU each, from the `ray` CLI, with token authentication."""
    root, env = cluster_env
    # A short temp dir: Ray's unix sockets live under it and their paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="gsray-", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(args, name):
        log = root / f"ray-{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "ray"), "start", *args, "--num-cpus=1", f"--temp-dir={temp_dir}",
                 "--disable-usage-stats", "--block"],
                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log))
        wait_for(lambda: "block forever" in tail(log, 100_000), 120, f"ray {name} node", proc, log)

    try:
        t0 = time.monotonic()
        start(["--head", f"--port={port}", "--include-dashboard=false"], "head")
        start([f"--address={address}"], "worker")

        def two_nodes():
            res = subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env,
                                 capture_output=True, text=True, timeout=60)
            nodes = active_nodes(res.stdout)
            return nodes if len(nodes) == 2 else None
        nodes = wait_for(two_nodes, 90, "ray status showing 2 active nodes", interval=2)
        yield {"address": address, "nodes": nodes, "temp_dir": temp_dir,
               "startup_s": time.monotonic() - t0}
    finally:
        for proc, _ in reversed(procs):  # the worker first, then the head
            kill_group(proc, grace=15)
        sweep(env[MARKER_VAR])
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_search(mlflow_server, ray_cluster, cluster_env):
    """One `gunn-search` run on the cluster, logging to the server; (cwd, result, timings)."""
    root, env = cluster_env
    mlflow_server.wait_ready(150)
    cwd = root / "work"
    cwd.mkdir()
    storage = root / "storage"
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            [str(BIN / "gunn-search"), "--space", "smoke.yaml", "--num-samples", str(NUM_SAMPLES),
             "--max-epochs", str(MAX_EPOCHS), "--address", ray_cluster["address"],
             "--tracking-uri", mlflow_server.url, "--storage", str(storage)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"gunn-search on the cluster ran past 300 s\n{(e.stderr or b'')[-3000:]!r}")
    assert res.returncode == 0, res.stderr[-4000:]
    return {"cwd": cwd, "res": res, "storage": storage, "search_s": time.monotonic() - t0}


@pytest.fixture(scope="module")
def server_runs(cluster_search, mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("smoke")
    assert exp is not None, "no experiment 'smoke' on the tracking server"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "search"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(tr.PARENT_TAG) == parent.info.run_id]
    return client, parent, children, runs


# --- tests: the cluster -------------------------------------------------------------------------

@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_has_two_nodes_before_the_search(ray_cluster):
    assert len(set(ray_cluster["nodes"])) == 2


@pytest.mark.cluster
@pytest.mark.slow
def test_search_on_cluster_reports_on_stdout(cluster_search, mlflow_server):
    out = cluster_search["res"].stdout
    assert f"search: smoke ({NUM_SAMPLES} trials)" in out
    assert "best trial:" in out and "best trial: none" not in out
    assert f"--tracking-uri {mlflow_server.url}" in out  # the export hint names the server
    # Every MLflow write went to the server: nothing local in the driver's working directory.
    assert not (cluster_search["cwd"] / "mlflow.db").exists()
    assert not (cluster_search["cwd"] / "mlartifacts").exists()
    assert (cluster_search["storage"] / "smoke" / "gunn_search.json").is_file()


@pytest.mark.cluster
@pytest.mark.slow
def test_server_holds_one_parent_and_a_child_per_trial(server_runs):
    client, parent, children, runs = server_runs
    assert parent.info.status == "FINISHED"
    assert len(children) == NUM_SAMPLES == len(runs) - 1
    assert len({c.data.tags[tr.TRIAL_TAG] for c in children}) == NUM_SAMPLES
    for c in children:
        assert c.info.status == "FINISHED", c.data.tags
        status = c.data.tags[tr.STATUS_TAG]
        assert status in ("completed", "stopped by ASHA"), status
        steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, "val_acc"))
        assert steps and steps == list(range(1, len(steps) + 1)) and len(steps) <= MAX_EPOCHS
    assert "best_val_acc" in parent.data.metrics
    assert parent.data.tags.get("gunn_search.best_run_id") in {c.info.run_id for c in children}


@pytest.mark.cluster
@pytest.mark.slow
def test_artifacts_land_through_the_server_and_on_disk(server_runs, mlflow_server):
    client, parent, children, _ = server_runs
    root = mlflow_server.artifacts.resolve()

    def on_disk(run) -> Path:
        uri = run.info.artifact_uri
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).resolve()
        assert path.is_relative_to(root), (uri, root)
        return path

    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "smoke.yaml", "plots"} <= arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots and "plots/learning_curves.png" in plots
    pdir = on_disk(parent)
    assert (pdir / "best_config.yaml").is_file() and (pdir / "plots").is_dir()
    assert any((pdir / "plots").glob("*.png"))
    for c in children:
        assert "train_config.yaml" in {a.path for a in client.list_artifacts(c.info.run_id)}
        assert (on_disk(c) / "train_config.yaml").is_file()


@pytest.mark.cluster
@pytest.mark.slow
def test_trials_ran_on_both_nodes(cluster_search, ray_cluster):
    """Each trial's pid (Tune's result.json) -> its core-worker log -> the node it ran on."""
    pids = set()
    for f in (cluster_search["storage"] / "smoke").glob("*/result.json"):
        for line in f.read_text().splitlines():
            if line.strip():
                pids.add(json.loads(line)["pid"])
    assert pids, "no trial results in the storage"
    nodes = set()
    for log in (ray_cluster["temp_dir"]).glob("session_*/logs/python-core-worker-*.log"):
        pid = int(log.stem.rsplit("_", 1)[1])
        if pid in pids:
            m = re.search(r"node_id=([0-9a-f]+)", log.read_text(errors="replace"))
            if m:
                nodes.add(m.group(1))
    if not nodes:
        pytest.skip("Ray's worker logs no longer name the node (log layout changed)")
    assert nodes <= set(ray_cluster["nodes"])
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s) only"


# --- tests: an unreachable address (no cluster needed) ------------------------------------------

@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_fast_with_one_line(tmp_path, scheme):
    """`ray.init` to a port where nothing listens hangs for minutes; gunn-search must not."""
    address = f"{scheme}127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.monotonic()
    res = subprocess.run([str(BIN / "gunn-search"), "--space", "smoke.yaml", "--address", address],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - t0
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and address in errors[0], res.stderr
    assert errors[0].startswith("gunn-search: error: --address")
    assert res.stdout == ""
    assert elapsed < 30, f"took {elapsed:.1f} s"  # ~5-13 s here, mostly imports; never minutes
    # Nothing was started or recorded for a search that could not run.
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "gunn-search-runs" / "smoke" / "gunn_search.json").exists()
