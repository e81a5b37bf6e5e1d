"""A search's Optuna study in a real optuna-dashboard, while the search runs, in a real browser.

A smoke search starts; as soon as its study (optuna.db beside mlflow.db) holds a finished
trial, `optuna-dashboard` (the command the search prints, on a free port) serves it and Chromium
(through Playwright, as tests/test_ui.py) opens the study's trial table: it lists the trials
with their values. After the search: the study and the MLflow runs tell the same story.
Screenshots go to the test's tmp dir (and where GUNN_SEARCH_SAVE_SCREENSHOTS says).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import BIN, free_port, tail
from tests.test_ui import CHROMIUM, VIEWPORT, screenshot_dirs, shoot

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def finished_trials(url: str) -> list:
    import optuna

    try:
        study = optuna.load_study(study_name="smoke", storage=url)
    except KeyError:  # not created yet
        return []
    return [t for t in study.trials if t.state.is_finished() and t.value is not None]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process ended ({proc.returncode})\n{tail(log)}")
        time.sleep(1)
    pytest.fail(f"{what}: not after {timeout:.0f} s\n{tail(log)}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def serving(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/studies", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (apt-get install chromium)")
def test_the_study_is_live_in_optuna_dashboard(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    search_log = tmp_path / "search.log"
    with open(search_log, "wb") as out:
        search = subprocess.Popen([str(BIN / "gunn-search"), "--space", "smoke.yaml"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=out,
                                  start_new_session=True)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    dashboard = None
    try:
        seen = wait_for(lambda: finished_trials(url), 600, "a finished Optuna trial", search,
                        search_log)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        dash_log = tmp_path / "dashboard.log"
        with open(dash_log, "wb") as out:
            dashboard = subprocess.Popen(
                [str(BIN / "optuna-dashboard"), url, "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: serving(base), 120, "optuna-dashboard", dashboard, dash_log)
        dirs = screenshot_dirs(tmp_path)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(90_000)
            # The trials list, then each trial finished by then: its value and its MLflow run.
            page.goto(f"{base}/dashboard/studies/1/trials")
            for t in seen:
                page.get_by_text(f"Trial {t.number}", exact=True).first.wait_for()
            listed = page.inner_text("body")
            shoot(page, dirs, "optuna_dashboard_trials.png")
            shown = {}
            for t in seen:
                page.goto(f"{base}/dashboard/studies/1/trials?numbers={t.number}")
                page.get_by_text(f"Trial {t.number} (trial_id=").first.wait_for()
                page.get_by_text("User Attributes").first.wait_for()
                shown[t.number] = page.inner_text("body")
            shoot(page, dirs, "optuna_dashboard_trial.png")
            browser.close()
        live = search.poll() is None
        assert "smoke" in listed
        for t in seen:
            assert f"Trial {t.number}" in listed
            assert f"{t.value}" in shown[t.number], (t.number, t.value)
            assert t.user_attrs["mlflow_run_id"] in shown[t.number]
        assert live, "the search ended before the dashboard was read"
        stdout, _ = search.communicate(timeout=900)
        assert search.returncode == 0, tail(search_log)
    finally:
        stop(search) if search.poll() is None else None
        if dashboard is not None:
            stop(dashboard)
    printed = next(ln for ln in stdout.decode().splitlines() if ln.startswith("study:"))
    assert shlex.split(printed.split(":", 1)[1])[:2] == ["optuna-dashboard", url]
    check_study_matches_mlflow(tmp_path, url)


def check_study_matches_mlflow(d, url: str) -> None:
    """The finished search's study: a trial per MLflow trial run, linked by run id, none left
    RUNNING, ASHA's stopped trials PRUNED, values the runs' last val_acc."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name="smoke", storage=url).trials
    client = MlflowClient(f"sqlite:///{d / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("gunn_search.role") == "trial"}
    assert len(trials) == len(runs) == 6
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == set(runs)
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["gunn_search.trial_id"] == t.user_attrs["tune_trial_id"]
        status = run.data.tags["gunn_search.status"]
        assert t.state == {"completed": TrialState.COMPLETE,
                           "stopped by ASHA": TrialState.PRUNED}[status], (status, t.state)
        epochs = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(t.intermediate_values) == sorted(m.step for m in epochs)
        if t.state == TrialState.COMPLETE:
            last = max(epochs, key=lambda m: m.step).value
            assert t.value == pytest.approx(last)
