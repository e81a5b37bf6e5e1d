"""A tracking server behind MLflow's own login (`mlflow server --app-name basic-auth`).

The credentials come from MLflow's variables (MLFLOW_TRACKING_USERNAME / _PASSWORD). With the
right ones a search, export, gunn-train and an ablation work; with wrong or none, every command
stops in one line naming the server, exit 2, before Ray or MLflow are imported; the password
appears in no output, state file, param or tag.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.conftest import BIN, free_port, run_cli, tail
from tests.test_train_cli import write_config

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

pytest.importorskip("flask_wtf", reason="mlflow[auth] is not installed")

ADMIN, PASSWORD = "admin", "gunn-Secret-4242-xyz"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An auth-enabled MLflow server on a free port: its URL."""
    d = tmp_path_factory.mktemp("auth-server")
    ini = d / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{d / 'basic_auth.db'}\n"
                   f"admin_username = {ADMIN}\nadmin_password = {PASSWORD}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = free_port()
    log = d / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    # The auth app refuses to start without a CSRF secret (MLflow 3.17).
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_DISABLE_TELEMETRY="true",
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
             "--port", str(port), "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
             "--artifacts-destination", str(d / "artifacts"), "--workers", "1"],
            cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited\n{tail(log)}")
            time.sleep(0.5)
    else:
        pytest.fail(f"mlflow server not ready\n{tail(log)}")
    yield url
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def login(password: str | None = PASSWORD) -> dict:
    env = {"MLFLOW_TRACKING_USERNAME": ADMIN}
    if password is not None:
        env["MLFLOW_TRACKING_PASSWORD"] = password
    return env


def without_login() -> dict:
    return {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}


def assert_refused(res, url: str, words: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"tracking server {url}" in lines[0] and words in lines[0], lines[0]
    assert PASSWORD not in res.stderr + res.stdout and "wrong-one" not in res.stderr


def test_a_refused_login_stops_every_command_in_one_line_before_ray(server, tmp_path):
    for env, words in ((login("wrong-one"), "refused the login"),
                       (without_login(), "needs a login")):
        for argv in (["gunn-search", "--space", "smoke.yaml", "--tracking-uri", server],
                     ["gunn-search", "export", "--experiment", "smoke", "--out", "b.yaml",
                      "--tracking-uri", server],
                     ["gunn-search", "ablate", "--experiment", "smoke", "--tracking-uri", server]):
            assert_refused(run_cli(argv, tmp_path, timeout=120, env=env), server, words)
        cfg = write_config(tmp_path)
        res = run_cli(["gunn-train", "--config", str(cfg), "--tracking-uri", server], tmp_path,
                      timeout=120, env=env)
        assert res.returncode == 2 and server in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "gunn-search-runs").exists()  # nothing started
    # ... and before Ray, MLflow or torch are imported.
    code = ("import sys; from gunn_search.cli.main import main; "
            f"rc = main(['--space', 'smoke.yaml', '--tracking-uri', {server!r}]); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **login("wrong-one")}, cwd=tmp_path, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "2 []", out.stderr[-2000:]


def test_search_export_train_and_ablate_work_behind_the_login(server, tmp_path):
    env = login()
    res = run_cli(["gunn-search", "--space", "smoke.yaml", "--num-samples", "2", "--max-epochs",
                   "1", "--tracking-uri", server], tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = run_cli(["gunn-search", "export", "--experiment", "smoke", "--out", "best.yaml",
                   "--tracking-uri", server], tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    train = run_cli(["gunn-train", "--config", "best.yaml", "--epochs", "1"], tmp_path, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    ablate = run_cli(["gunn-search", "ablate", "--experiment", "smoke", "--variants", "gunn,sunn",
                      "--seeds", "2", "--epochs", "1", "--tracking-uri", server], tmp_path, env=env)
    assert ablate.returncode == 0, ablate.stderr[-3000:]

    # The password is nowhere: printed output, the state file, params, tags, exported config.
    for r in (res, out, train, ablate):
        assert PASSWORD not in r.stdout + r.stderr
    for f in [*Path(tmp_path / "gunn-search-runs").rglob("*.json"), tmp_path / "best.yaml"]:
        assert PASSWORD not in f.read_text(errors="replace"), f
    from mlflow.tracking import MlflowClient

    os.environ.update(env)
    try:
        client = MlflowClient(server)
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    finally:
        for k in env:
            os.environ.pop(k, None)
    assert len(runs) >= 3 + 1 + 5  # the search's, gunn-train's and the ablation's runs
    for r in runs:
        assert PASSWORD not in json.dumps([r.data.params, r.data.tags])
