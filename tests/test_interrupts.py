"""Ctrl-C and SIGTERM, sent for real to the command's process group: the search ends as
interrupted (exit 130/143, the `--resume` command on stdout, every MLflow run's status and tags
saying so) and the printed `--resume` completes it with exactly one run per trial."""

import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gunn_search.track import store as tr
from gunn_search.tags import INTERRUPTED_AT_TAG, INTERRUPTED_BY_TAG
from tests.test_faults import BIN, runs_of, steps, write_space

pytestmark = pytest.mark.slow

EPOCHS = 2
TRIALS = 3


def start(cwd: Path, args: list[str]) -> subprocess.Popen:
    """The CLI in a process group of its own (as a shell runs a foreground job)."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_trained_epoch(proc: subprocess.Popen, cwd: Path, running: int,
                           storage: Path | None = None) -> set[str]:
    """Wait until `running` trials are RUNNING with an epoch logged; their trial ids."""
    state = (storage or cwd / "gunn-search-runs") / "space" / "gunn_search.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        time.sleep(1)
        if proc.poll() is not None:
            pytest.fail("the search ended before the signal: " + proc.stderr.read()[-2000:])
        if not state.exists():  # before: the search may still be creating the store
            continue
        try:
            _, _, children = runs_of(cwd)
        except Exception:
            continue
        live = {c.data.tags[tr.TRIAL_TAG] for c in children
                if c.info.status == "RUNNING" and "val_acc" in c.data.metrics}
        if len(live) >= running:
            return live
    pytest.fail("no trial trained an epoch in time")


def stop(proc: subprocess.Popen, *signals: signal.Signals, gap: float = 0.0):
    """Send each signal to the process group; (returncode, stdout, stderr, seconds to exit
    after the last signal)."""
    for i, s in enumerate(signals):
        if i:
            time.sleep(gap)
        os.killpg(proc.pid, s)
    t0 = time.time()
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err, time.time() - t0


def resume_args(stdout: str) -> list[str]:
    """The `resume:` line's command, as a user would paste it."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("resume:")]
    assert len(lines) == 1, stdout
    args = shlex.split(lines[0].removeprefix("resume:"))
    assert args[0] == "gunn-search" and "--resume" in args[-2:]  # a search's names itself
    return args


def assert_interrupted(cwd: Path, stdout: str, signame: str, cut: set[str]) -> dict:
    """What an interrupted search says and leaves in MLflow; the trials' runs by trial id."""
    assert re.search(rf"^search: space interrupted by {signame} at \S+Z", stdout, re.M), stdout
    assert "best trial" not in stdout and "export:" not in stdout, stdout
    client, parents, children = runs_of(cwd)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "KILLED"
    assert parent.data.tags[INTERRUPTED_BY_TAG] == signame
    at = parent.data.tags[INTERRUPTED_AT_TAG]
    assert f" at {at} " in stdout
    when = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 600
    by_trial = {c.data.tags[tr.TRIAL_TAG]: c for c in children}
    assert len(by_trial) == len(children)  # one run per trial
    for tid, run in by_trial.items():
        status = run.data.tags[tr.STATUS_TAG]
        if tid in cut:  # cut mid-training: never "completed" or "stopped by ASHA"
            assert (status, run.info.status) == ("interrupted", "KILLED"), (tid, status)
        else:  # ended before the signal, or cut as well (it started meanwhile)
            assert (status, run.info.status) in {("completed", "FINISHED"),
                                                 ("interrupted", "KILLED")}, (tid, status)
    assert not [c for c in children if c.info.status == "RUNNING"]
    return by_trial


def assert_completed(cwd: Path, stdout: str, interrupted_runs: dict, signame: str) -> None:
    """A resumed search that finished: every trial trained once to the end, one run each."""
    assert "best trial:" in stdout and "export:" in stdout, stdout
    client, parents, children = runs_of(cwd)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[INTERRUPTED_BY_TAG] == signame  # the record of the last one
    ids = [c.data.tags[tr.TRIAL_TAG] for c in children]
    assert len(ids) == len(set(ids)) == TRIALS
    for c in children:
        # grace_period = epochs: no rung before the end, so every trial completes
        assert (c.data.tags[tr.STATUS_TAG], c.info.status) == ("completed", "FINISHED")
        assert steps(client, c) == list(range(1, EPOCHS + 1))  # no epoch logged twice
    for tid, run in interrupted_runs.items():  # the same run, continued
        assert {c.data.tags[tr.TRIAL_TAG]: c.info.run_id for c in children}[tid] == run.info.run_id


def space_file(tmp_path: Path) -> Path:
    return write_space(tmp_path, epochs=EPOCHS, search={
        "num_samples": TRIALS, "grace_period": EPOCHS, "max_concurrent": 2})


def test_ctrl_c_interrupts_a_search_and_resume_finishes_it(tmp_path):
    space = space_file(tmp_path)
    proc = start(tmp_path, ["gunn-search", "--space", space.name])
    cut = wait_for_trained_epoch(proc, tmp_path, running=2)
    rc, out, err, took = stop(proc, signal.SIGINT)
    assert rc == 130, err[-3000:]
    assert "gunn-search: SIGINT: stopping and saving the state to resume from" in err
    runs = assert_interrupted(tmp_path, out, "SIGINT", cut)
    args = resume_args(out)
    assert args == ["gunn-search", "--space", "space.yaml", "--resume", "space"]
    print(f"FAULT-TABLE sigint: exit {rc} in {took:.1f} s, {len(cut)} trials cut")

    proc = start(tmp_path, args)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert_completed(tmp_path, out, {t: runs[t] for t in cut}, "SIGINT")


def test_sigterm_then_a_double_ctrl_c_each_leave_a_resumable_search(tmp_path):
    space = space_file(tmp_path)
    proc = start(tmp_path, ["gunn-search", "--space", space.name])
    cut = wait_for_trained_epoch(proc, tmp_path, running=1)
    rc, out, err, took = stop(proc, signal.SIGTERM)  # a scheduler's: stop as for Ctrl-C
    assert rc == 143, err[-3000:]
    runs = assert_interrupted(tmp_path, out, "SIGTERM", cut)
    print(f"FAULT-TABLE sigterm: exit {rc} in {took:.1f} s")

    # Resumed, then Ctrl-C twice: the second ends it at once (Tune's last save not awaited).
    proc = start(tmp_path, resume_args(out))
    wait_for_trained_epoch(proc, tmp_path, running=1)
    rc, out, err, took = stop(proc, signal.SIGINT, signal.SIGINT, gap=0.3)
    assert rc == 130, err[-3000:]
    assert "SIGINT again: stopping at once" in err
    assert re.search(r"^search: space interrupted \(SIGINT, stopped at once\)$", out, re.M), out
    _, parents, children = runs_of(tmp_path)
    assert parents[0].info.status == "KILLED"
    assert not [c for c in children if c.info.status == "RUNNING"]
    print(f"FAULT-TABLE double-sigint: exit {rc} in {took:.1f} s")

    proc = start(tmp_path, resume_args(out))
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert_completed(tmp_path, out, {t: runs[t] for t in cut}, "SIGINT")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_gunn_train_interrupted_keeps_its_checkpoint_and_resume_finishes_the_same_run(
        tmp_path, sig):
    from mlflow.tracking import MlflowClient

    from tests.test_train_cli import write_config
    from trainers.checkpoint import load_checkpoint

    epochs = 6
    cfg = write_config(tmp_path, epochs=epochs, data={"synthetic_train_size": 1024})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start(tmp_path, ["gunn-train", "--config", cfg.name, "--tracking-uri", uri])
    metrics = tmp_path / "out" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no epoch finished in time"
        time.sleep(0.2)
    rc, out, err, took = stop(proc, sig)
    assert rc == 128 + sig, err[-3000:]
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and summary["signal"] == sig.name
    ckpt = tmp_path / "out" / "checkpoint.pt"
    assert summary["checkpoint"] == str(ckpt)
    assert 1 <= summary["epochs"] < epochs
    assert load_checkpoint(ckpt)["epoch"] == summary["epochs"]  # readable, the last epoch's
    assert summary["resume"] == f"gunn-train --config run.yaml --tracking-uri {uri} --resume"
    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert (run.info.status, run.data.tags[tr.STATUS_TAG]) == ("KILLED", "interrupted")
    assert run.data.tags[INTERRUPTED_BY_TAG] == sig.name
    assert run.data.tags[INTERRUPTED_AT_TAG] == summary["interrupted_at"]
    print(f"FAULT-TABLE gunn-train {sig.name}: exit {rc} in {took:.1f} s")

    proc = start(tmp_path, shlex.split(summary["resume"]))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    final = json.loads(out)
    assert final["status"] == "completed" and final["epochs"] == epochs
    assert final["mlflow_run_id"] == run.info.run_id  # the same run, continued
    exp = client.get_experiment_by_name("gunn-train")
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [run.info.run_id]
    run = client.get_run(run.info.run_id)
    assert (run.info.status, run.data.tags[tr.STATUS_TAG]) == ("FINISHED", "completed")
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == \
        list(range(1, epochs + 1))


def test_ablate_interrupted_then_resumed_keeps_one_run_per_cell(tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.test_ablation import make_store

    epochs = 3
    uri, trial_id = make_store(tmp_path, epochs=epochs)
    args = ["gunn-search", "ablate", "--experiment", "tiny", "--variants", "gunn,sunn",
            "--seeds", "2", "--tracking-uri", uri]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")

    def ablation_runs():
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        return ([r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "ablation"],
                [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "ablation_run"])

    proc = start(tmp_path, args)
    deadline = time.time() + 600
    while True:  # until a run has trained an epoch
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no run trained an epoch in time"
        time.sleep(1)
        cut = {(r.data.tags["gunn_search.variant"], r.data.tags["gunn_search.seed"])
               for r in ablation_runs()[1] if r.info.status == "RUNNING" and r.data.metrics.get("val_acc") is not None}
        if cut:
            break
    rc, out, err, took = stop(proc, signal.SIGINT)
    assert rc == 130, err[-3000:]
    assert re.search(r"^ablation: interrupted by SIGINT at \S+Z \(\d of 4 runs completed\)", out,
                     re.M), out
    assert "Paired ablation" not in out  # no table from part of the runs
    resume = resume_args(out)
    assert resume == ["gunn-search", *args[1:], "--resume"]
    parents, children = ablation_runs()
    assert len(parents) == 1
    assert parents[0].info.status == "KILLED"
    assert parents[0].data.tags[INTERRUPTED_BY_TAG] == "SIGINT"
    for c in children:
        key = (c.data.tags["gunn_search.variant"], c.data.tags["gunn_search.seed"])
        state = (c.data.tags[tr.STATUS_TAG], c.info.status)
        assert state == ("interrupted", "KILLED") if key in cut else \
            state in {("completed", "FINISHED"), ("interrupted", "KILLED")}, (key, state)
    print(f"FAULT-TABLE ablate sigint: exit {rc} in {took:.1f} s")

    proc = start(tmp_path, resume)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert out.startswith(f"Paired ablation of trial run `{trial_id}`")
    parents, children = ablation_runs()
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [(c.data.tags["gunn_search.variant"], c.data.tags["gunn_search.seed"]) for c in children]
    assert sorted(keys) == sorted({(v, s) for v in ("gunn", "sunn") for s in ("0", "1")})
    for c in children:
        assert (c.data.tags[tr.STATUS_TAG], c.info.status) == ("completed", "FINISHED")
        assert sorted(m.step for m in client.get_metric_history(c.info.run_id, "val_acc")) == \
            list(range(1, epochs + 1))
