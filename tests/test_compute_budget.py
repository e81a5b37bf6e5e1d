"""The compute budget (gunn_search/run/compute_budget.py, budget_stopper.py): durations, the
ledger, the schema's checks, the stopper's decisions, and a real search under a budget killed
with SIGKILL and resumed."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gunn_search.status import STATUS_KEY, TrialStatus
from gunn_search.run import compute_budget as cb
from gunn_search.space import load_space, parse_space
from trainers.config_errors import ConfigError

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("2h", 7200), ("1.5d", 129600),
                                           ("45s", 45), ("30", 30), (600, 600)])
def test_durations(text, seconds):
    assert cb.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3 parsecs", "0", "-2h", "0m", "h", "", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        cb.parse_duration(text)


def smoke(**search):
    data = copy.deepcopy(load_space("smoke.yaml").data)
    data["search"].update(search)
    return data


def test_num_samples_is_an_upper_bound_that_may_be_left_out():
    data = smoke(budget_epochs=20)
    assert parse_space(data, "x").search.num_samples == 6  # the file's, now a cap
    data["search"].pop("num_samples")
    s = parse_space(data, "x")
    assert s.search.num_samples == cb.UNBOUNDED
    assert parse_space(smoke(), "x").search.num_samples == 6  # no budget: as before
    from gunn_search.space import with_settings
    no_n = copy.deepcopy(load_space("smoke.yaml").data)
    no_n["search"].pop("num_samples")
    assert parse_space(no_n, "x").search.num_samples == 32
    # a budget from the command line lifts the default's 32 as well
    assert with_settings(parse_space(no_n, "x"), budget_epochs=50).search.num_samples == cb.UNBOUNDED


@pytest.mark.parametrize("search, field", [
    ({"budget_epochs": 0}, "search.budget_epochs"),
    ({"budget_epochs": -5}, "search.budget_epochs"),
    ({"budget_epochs": 1}, "search.budget_epochs"),  # below the first rung: 1 + a 0.67 branch
    ({"time_budget": "3 parsecs"}, "search.time_budget"),
    ({"time_budget": "0h"}, "search.time_budget"),
    ({"budget_gpu_hours": 0}, "search.budget_gpu_hours"),
])
def test_bad_budgets_name_the_field(search, field):
    with pytest.raises(ConfigError) as e:
        parse_space(smoke(**search), "space.yaml")
    assert field in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_a_bad_budget_before_ray(tmp_path):
    for flag in (["--budget-epochs", "0"], ["--time-budget", "3 parsecs"],
                 ["--budget-epochs", "1"]):
        res = subprocess.run([str(BIN / "gunn-search"), "--space", "smoke.yaml", *flag],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "budget" in res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "gunn-search-runs").exists()  # nothing started


def running(epoch, branch=0.0):
    return {"epoch": epoch, "branch_epochs": branch, STATUS_KEY: TrialStatus.RUNNING,
            "time_this_iter_s": 2.0}


def test_ledger_counts_epochs_and_branches_once_and_persists(tmp_path):
    book = cb.Ledger(str(tmp_path))
    book.add("a", running(1, 0.5), gpus=0.5)
    book.add("a", running(1, 0.5), gpus=0.5)  # Tune's repeat of a last result: not again
    book.add("a", running(2), gpus=0.5)
    book.add("b", running(1), gpus=0.5)
    assert book.epochs == 3.5 and book.gpu_seconds == 3.0
    again = cb.Ledger.load(str(tmp_path))
    assert (again.epochs, again.trials) == (3.5, {"a": 2, "b": 1})
    assert again.exhausted(cb.Limits(epochs=3.5)) and not again.exhausted(cb.Limits(epochs=4))
    assert again.left(cb.Limits(epochs=7)) == pytest.approx(0.5)
    assert "3.5/7 epochs" in again.describe(cb.Limits(epochs=7))


def test_stopper_stops_running_trials_once_spent(tmp_path):
    from gunn_search.run.budget_stopper import BudgetStopper

    cb.forget(str(tmp_path))
    stop = BudgetStopper(str(tmp_path), cb.Limits(epochs=3), 0.0)
    assert not stop("a", running(1)) and not stop("b", running(1))
    r = running(2)
    assert stop("a", r) and r[STATUS_KEY] == TrialStatus.BUDGET  # it spent the third
    last = {**running(4), STATUS_KEY: TrialStatus.COMPLETED}
    assert not stop("b", last) and last[STATUS_KEY] == TrialStatus.COMPLETED  # ends as it is
    assert not stop.stop_all()
    cb.forget(str(tmp_path))


def test_searcher_starts_no_trial_once_spent(tmp_path):
    from gunn_search.run.decisions import search_parts

    space = parse_space(smoke(budget_epochs=5), "x")
    folder = str(tmp_path)
    cb.forget(folder)
    searcher, _ = search_parts(space, budget_folder=folder)
    assert isinstance(searcher.suggest("t1"), dict)
    book = cb.ledger(folder)
    book.add("t1", running(4, 1.0), 0.0)
    assert searcher.suggest("t2") == "FINISHED"
    cb.forget(folder)


def test_tpe_startup_follows_the_trials_a_budget_buys():
    from gunn_search.run.decisions import expected_trials

    data = smoke(budget_epochs=40, grace_period=1, reduction_factor=2)
    data["search"].pop("num_samples")
    s = parse_space(data, "x").search
    # 4 epochs a trial at most; ASHA (rungs 1, 2, branches 0.67) about 2.8 expected
    assert 10 <= expected_trials(s, 4) <= 16


@pytest.mark.slow
def test_budget_survives_sigkill_and_resume(tmp_path):
    """A real search under a budget of 14 epochs (4 epochs a trial, 2 at a time), killed with
    SIGKILL once it spent some, then resumed: it goes on from what it had spent, ends within
    one epoch (and branch) per running trial of the budget, and leaves no trial RUNNING in the
    Optuna study or in MLflow."""
    import optuna
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    args = [str(BIN / "gunn-search"), "--space", "smoke.yaml", "--budget-epochs", "14",
            "--num-samples", "50"]
    ledger_file = tmp_path / "gunn-search-runs" / f"smoke.{cb.FILE}"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail("search ended before the kill: " + proc.stderr.read().decode()[-2000:])
            try:
                spent = json.loads(ledger_file.read_text())["epochs"]
            except (OSError, ValueError, KeyError):
                continue
            if spent >= 4:
                break
        else:
            pytest.fail("the search spent nothing in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    before = json.loads(ledger_file.read_text())["epochs"]
    assert 4 <= before < 14

    res = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{before:g}/14 epochs" in res.stderr  # the first line: what was spent already
    after = json.loads(ledger_file.read_text())["epochs"]
    assert 14 <= after <= 14 + 2 * (1 + 4 / 6) + 1e-6  # one epoch and branch per running trial
    assert "budget:  spent" in res.stdout and "on " in res.stdout

    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.trials and all(t.state.is_finished() for t in study.trials)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_time_budget_counts_the_drivers_wall_time(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(cb.time, "monotonic", lambda: clock[0])
    book = cb.Ledger(str(tmp_path / "exp"))
    limits = cb.Limits(seconds=cb.parse_duration("2m"))
    clock[0] += 90
    book.add("a", running(1), 0.0)
    assert book.seconds == 90 and not book.exhausted(limits)
    resumed = cb.Ledger.load(str(tmp_path / "exp"))  # a new driver: the time it was dead is not
    clock[0] += 1000
    resumed._tick = clock[0]
    clock[0] += 31
    assert resumed.exhausted(limits) and resumed.seconds == 121
    assert "2m01s/2m00s" in resumed.describe(limits)
