"""A full disk, for real (a size-limited tmpfs the test mounts, skipped where the machine does
not allow one): the write that finds no room fails with one line saying so and where, the
previous checkpoint stays readable, and once space is freed `--resume` finishes with nothing
lost and no run duplicated."""

import json
import re
import shlex
import time

import pytest
from mlflow.tracking import MlflowClient

from gunn_search.track import store as tr
from tests.conftest import fill, small_filesystem
from tests.test_interrupts import start
from tests.test_train_cli import write_config
from trainers.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def test_gunn_train_on_a_full_disk_fails_in_one_line_and_resumes_the_same_run(tmp_path):
    epochs = 5
    with small_filesystem(tmp_path / "disk", "24m") as disk:
        # The checkpoints and the MLflow store on the small disk: both meet it full.
        cfg = write_config(disk, epochs=epochs, out_dir=str(disk / "out"),
                           data={"synthetic_train_size": 1024})
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        proc = start(disk, ["gunn-train", "--config", cfg.name, "--tracking-uri", uri])
        metrics = disk / "out" / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.1)
        filler = fill(disk)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err[-3000:]
        lines = [ln for ln in err.splitlines() if ln.startswith("gunn-train: error:")]
        assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
        ckpt = disk / "out" / "checkpoint.pt"
        kept = load_checkpoint(ckpt)["epoch"]  # the previous checkpoint, readable
        assert 1 <= kept < epochs
        resume = f"gunn-train --config run.yaml --tracking-uri {uri} --resume"
        assert re.fullmatch(
            rf"gunn-train: error: disk full: no room to write {re.escape(str(disk / 'out'))}/"
            r"(checkpoint\.pt|metrics\.jsonl) \(No space left on device\); the checkpoint of "
            rf"epoch {kept} is kept: free space, then {re.escape(resume)}", lines[0]), lines[0]
        assert out == ""
        print(f"FAULT-TABLE gunn-train disk full: exit 1, checkpoint of epoch {kept} kept")

        filler.unlink()
        proc = start(disk, shlex.split(resume))
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        final = json.loads(out)
        assert final["status"] == "completed" and final["epochs"] == epochs
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("gunn-train")
        runs = client.search_runs([exp.experiment_id])
        assert [r.info.run_id for r in runs] == [final["mlflow_run_id"]]  # the same run
        run = runs[0]
        assert (run.info.status, run.data.tags[tr.STATUS_TAG]) == ("FINISHED", "completed")
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert steps == list(range(1, epochs + 1))  # no epoch lost or logged twice


def test_a_search_whose_storage_fills_up_fails_its_trials_in_one_line_and_resumes(tmp_path):
    """Tune's storage (trial checkpoints and its state) on a small disk that fills mid-search:
    the trials fail with one line naming the disk, Tune's last state stays readable, and once
    space is freed `--resume` finishes every trial, one run each, no epoch logged twice."""
    from tests.test_faults import runs_of, steps, write_space
    from tests.test_interrupts import wait_for_trained_epoch

    epochs, trials = 3, 3
    space = write_space(tmp_path, epochs=epochs, search={
        "num_samples": trials, "grace_period": epochs, "max_concurrent": 2})
    with small_filesystem(tmp_path / "disk", "32m") as disk:
        args = ["gunn-search", "--space", space.name, "--storage", str(disk / "runs"),
                "--max-failures", "1"]
        proc = start(tmp_path, args)
        wait_for_trained_epoch(proc, tmp_path, running=1, storage=disk / "runs")
        filler = fill(disk)
        out, err = proc.communicate(timeout=900)
        (tmp_path / "full.err").write_text(err)  # to read after a failure
        assert proc.returncode == 0, err[-3000:]
        # (Tune itself logs each failed trial's traceback on stderr, as for any failing trial.)
        # Tune's state saves met the full disk: said once, and the last state is whole.
        assert re.search(rf"^gunn-search: disk full: no room to write {re.escape(str(disk))}/runs/"
                         r"space/\S+ \(No space left on device\); Tune's last saved state is "
                         r"kept, saving again once there is room$", err, re.M), err[-3000:]
        states = list((disk / "runs" / "space").glob("experiment_state-*.json"))
        assert states and all(json.loads(p.read_text()) for p in states)
        client, parents, children = runs_of(tmp_path)
        errored = [c for c in children if c.data.tags[tr.STATUS_TAG] == "errored"]
        assert errored, [c.data.tags[tr.STATUS_TAG] for c in children]
        for c in errored:
            assert c.info.status == "FAILED"
            line = c.data.tags["gunn_search.error"]
            assert line.endswith(f"DiskFullError: disk full: no room to write a checkpoint to "
                                 f"{disk}/runs/space (No space left on device)"), line
        print(f"FAULT-TABLE search storage full: {len(errored)} of {len(children)} trials "
              "errored with the disk-full line")

        filler.unlink()
        proc = start(tmp_path, [*args, "--resume"])
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        client, parents, children = runs_of(tmp_path)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        ids = [c.data.tags[tr.TRIAL_TAG] for c in children]
        assert len(ids) == len(set(ids)) == trials  # none lost, none duplicated
        for c in children:
            assert (c.data.tags[tr.STATUS_TAG], c.info.status) == ("completed", "FINISHED")
            assert steps(client, c) == list(range(1, epochs + 1))
