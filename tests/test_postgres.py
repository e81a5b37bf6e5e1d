"""PostgreSQL, as a team's cluster uses it: an MLflow tracking server whose backend store is a
PostgreSQL database, and the Optuna study in PostgreSQL storage (tests/postgres_server.py
starts a throwaway server). A search against both, killed with SIGKILL and resumed, loses and
doubles nothing; two searches started at once against the same databases take two names and
keep apart; a wrong password or an unreachable database ends with one line, exit 2, before Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.conftest import BIN, MlflowServer, free_port, run_cli
from tests.postgres_server import PASSWORD, PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SEARCH = ["--space", "smoke.yaml", "--max-epochs", "2"]


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tracking(postgres, tmp_path_factory):
    """An MLflow tracking server on a PostgreSQL backend store; its URL."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-pg"),
                          backend=postgres.create_database("mlflow")).start()
    server.wait_ready()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def studies(postgres):
    """The Optuna storage URL, a PostgreSQL database the searches share."""
    return postgres.create_database("optuna")


def search_runs(url, experiment):
    """(parent runs, trial runs) of `experiment` on the tracking server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("gunn_search.role") == "search"]
    return client, parents, [r for r in runs if r not in parents]


def test_a_search_killed_and_resumed_on_postgres_loses_and_doubles_nothing(
        tracking, studies, tmp_path):
    import optuna
    from optuna.trial import TrialState

    args = [*SEARCH, "--num-samples", "4", "--tracking-uri", tracking,
            "--optuna-storage", studies, "--experiment", "pg-kill"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([str(BIN / "gunn-search"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    state = tmp_path / "gunn-search-runs" / "pg-kill" / "gunn_search.json"
    try:
        deadline = time.time() + 400
        while time.time() < deadline:  # kill once a trial has ended and another trains
            time.sleep(1)
            if proc.poll() is not None:
                pytest.fail("the search ended before the kill: " + proc.stderr.read().decode()[-2000:])
            if not state.exists():
                continue
            try:
                study = optuna.load_study(study_name="pg-kill", storage=studies)
            except Exception:
                continue
            ended = [t for t in study.trials if t.state.is_finished()]
            if ended and any(t.state == TrialState.RUNNING for t in study.trials):
                break
        else:
            pytest.fail("the search reached no kill point in time")
        time.sleep(1.5)  # past Tune's one-second state save (docs/runtime.md)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    # The password is not kept in the state file: --resume is given the storage again.
    assert PASSWORD not in state.read_text()
    res = run_cli(["gunn-search", *args, "--resume"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert PASSWORD not in res.stderr + res.stdout

    study = optuna.load_study(study_name="pg-kill", storage=studies)
    assert all(t.state.is_finished() for t in study.trials)  # none left RUNNING
    told = Counter(t.user_attrs.get("tune_trial_id") for t in study.trials
                   if t.state != TrialState.FAIL)
    assert len(told) == 4 and set(told.values()) == {1}, told  # each trial told once
    _, parents, children = search_runs(tracking, "pg-kill")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    ids = [c.data.tags["gunn_search.trial_id"] for c in children]
    assert len(ids) == len(set(ids)) == 4  # one run per trial
    assert not [c for c in children if c.info.status == "RUNNING"]
    redone = sum(int(c.data.tags.get("gunn_search.epochs_redone", 0)) for c in children)
    rerun = sum(1 for t in study.trials if "rerun_of" in t.user_attrs)
    print(f"FAULT-TABLE postgres-driver-sigkill: trials={len(ids)} duplicates=0 "
          f"epochs_redone={redone} optuna_trials={len(study.trials)} reruns={rerun}")


def test_two_searches_at_once_on_the_same_databases_take_two_names(tracking, studies, tmp_path):
    """Two people start the same search at the same moment from two folders (two machines):
    the study's database gives one name to each, smoke and smoke-2, and both finish apart."""
    import optuna

    args = [*SEARCH, "--num-samples", "2", "--tracking-uri", tracking, "--optuna-storage",
            studies, "--experiment", "pg-twice"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    folders = [tmp_path / "a", tmp_path / "b"]
    procs = []
    for folder in folders:
        folder.mkdir()
        procs.append(subprocess.Popen([str(BIN / "gunn-search"), *args], cwd=folder, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    names = sorted(json.loads(next(f.glob("gunn-search-runs/*/gunn_search.json")).read_text())
                   ["search"] for f in folders)
    assert names == ["pg-twice", "pg-twice-2"]
    assert any("search 'pg-twice-2' of experiment 'pg-twice'" in err for _, err in outs)
    for name in names:
        study = optuna.load_study(study_name=name, storage=studies)
        assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    _, parents, children = search_runs(tracking, "pg-twice")
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    assert len(children) == 4


@pytest.mark.parametrize("which", ["wrong password", "unreachable"])
def test_a_database_that_refuses_ends_with_one_line_before_ray(postgres, studies, tmp_path,
                                                               which):
    bad = (studies.replace(PASSWORD, "not-it") if which == "wrong password"
           else studies.replace(f":{postgres.port}/", f":{free_port()}/"))
    for flag in ("--optuna-storage", "--tracking-uri"):
        res = run_cli(["gunn-search", *SEARCH, flag, bad], cwd=tmp_path, timeout=120)
        assert res.returncode == 2, res.stderr[-2000:]
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0] and "cannot" in lines[0], res.stderr
        assert ("password authentication failed" if which == "wrong password"
                else "refused") in lines[0]
        assert PASSWORD not in res.stderr and "not-it" not in res.stderr  # masked
        assert not (tmp_path / "gunn-search-runs").exists()  # nothing started
