"""One MLflow run per trial of a Tune experiment, kept from the driver: the bookkeeping that the
search's callback (gunn_search.run.search_runs) and the ablation's
(gunn_search.ablation.callback) share.

A trial's run is created the first time the trial shows up, nested under the experiment's parent
run and tagged with its Tune trial id and `running`; its training config goes in as params (the
config's dotted paths, as `gunn-train` logs them), its price as metrics and the config itself as
the artifact `train_config.yaml`. A trial that fails and is retried continues its run
(`retrying after error`, then running again); an ended trial's run is closed once, with its
final status (`gunn_search.status.status_of`) and its details in tags of their own.

A resumed experiment finds the runs an earlier driver created by their tags and sets each
RUNNING again as its trial restarts. Stopped by a signal (gunn_search.run.interrupts), the runs
of the trials it cut are `interrupted` and KILLED; after a second signal, which raises out of
Tune at once, `abort` closes them from outside Tune (each kind of experiment registers it with
the signal handling in `register_abort`: signals are the run layer's, above this one). Every write goes through a `BufferedClient`:
a tracking store that is down queues writes, it never stops the trials.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Callable, Hashable

import yaml
from mlflow.tracking import MlflowClient
from ray import tune

from gunn_search.space.budget import config_cost, cost_metrics
from gunn_search.status import METRIC, Kind, TrialStatus, status_of
from gunn_search.tags import ERROR_TAG, PARENT_TAG, STATUS_TAG, STOPPED_AT_TAG, TRIAL_TAG
from gunn_search.track import store as tr

CONFIG_ARTIFACT = "train_config.yaml"


class TrialRuns(tune.Callback):
    """Child runs of a parent run, one per trial (`key`). Picklable: Tune stores its callbacks
    with the experiment, and this keeps only its settings (`SETTINGS`) there."""

    SETTINGS: tuple[str, ...] = ("tracking_uri", "experiment_id", "parent_run_id")
    SPOOL_PREFIX: str  # the name of the folder of queued artifacts, before the parent run's id

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._client: tr.BufferedClient | None = None
        self.runs: dict[Hashable, str] = {}  # key -> run id (a placeholder while MLflow is down)
        self.statuses: dict[Hashable, TrialStatus] = {}
        self.earlier: set = set()  # trials whose run an earlier driver created (resume)
        self.started: set = set()  # trials that (re)started in this driver
        self.closed: set = set()  # trials whose run got its final status in this driver

    def __getstate__(self):
        return {k: self.__dict__[k] for k in type(self).SETTINGS}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_runtime()

    # --- what a kind of experiment says -------------------------------------------------------
    def key(self, trial) -> Hashable:
        """What names a trial's run across drivers (Tune's trial id unless said otherwise)."""
        return trial.trial_id

    @abstractmethod
    def run_name(self, trial) -> str:
        """The name of a trial's run in the MLflow UI."""

    @abstractmethod
    def run_tags(self, trial) -> dict:
        """The tags of a trial's run besides its parent, trial id and status (its role...)."""

    @abstractmethod
    def train_config(self, trial):
        """The `TrainConfig` the trial trains."""

    @abstractmethod
    def existing_runs(self, client: MlflowClient) -> dict:
        """key -> run id of the runs an earlier driver of this experiment created."""

    def run_end(self, status: TrialStatus) -> str:
        """The MLflow run status of a trial that ended with `status`."""
        return "FINISHED"

    def resumed(self, client: MlflowClient) -> None:
        """Read back what else a resumed experiment's runs hold (none here)."""

    @abstractmethod
    def register_abort(self, abort: Callable[[], None]) -> None:
        """Have `abort` called when a second signal raises out of Tune (the subclasses hand it
        to `gunn_search.run.interrupts.on_abort`). A method, not a constructor argument: Tune
        pickles the callbacks with the experiment, and a resumed one comes back from that."""

    # --- the client ---------------------------------------------------------------------------
    @property
    def client(self) -> tr.BufferedClient:
        if self._client is None:
            raw = MlflowClient(self.tracking_uri)
            self._client = tr.BufferedClient(raw)
            try:  # a resumed experiment: continue the runs its trials already have
                self.runs.update(self.existing_runs(raw))
                self.earlier = set(self.runs)
                self.resumed(raw)
            except Exception as e:  # tracking down at start: carry on, writes are buffered
                print(f"gunn-search: could not read existing MLflow runs: {tr.shown_line(str(e))}",
                      file=sys.stderr)
        return self._client

    # --- Tune hooks ---------------------------------------------------------------------------
    def setup(self, **info):
        # A second Ctrl-C raises out of Tune at once: the runs are then closed from here.
        self.register_abort(self.abort)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._start(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._start(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        tr.batch(self.client, self._ensure_run(trial),
                 tags={STATUS_TAG: TrialStatus.RETRYING, ERROR_TAG: tr.trial_error_line(trial)})

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        status = status_of(last, ended=True)
        tags = {STOPPED_AT_TAG: int(last.get("epoch", 0))} if status.kind is Kind.STOPPED else {}
        self._finish(trial, status, self.run_end(status), tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, TrialStatus.ERRORED, "FAILED", {ERROR_TAG: tr.trial_error_line(trial)})

    # --- a trial's run ------------------------------------------------------------------------
    def _start(self, trial) -> None:
        run_id, key = self._ensure_run(trial), self.key(trial)
        if key in self.earlier and key not in self.started:
            # Resumed: a run an earlier driver ended (interrupted; errored and retried now)
            # runs again. One that a killed driver left RUNNING is set so again, harmlessly.
            self.client.call("update_run", run_id, status="RUNNING")
            tr.batch(self.client, run_id, tags={STATUS_TAG: TrialStatus.RUNNING})
        self.started.add(key)

    def _ensure_run(self, trial) -> str:
        key = self.key(trial)
        client = self.client  # on first use this also loads the runs a resumed experiment has
        if key in self.runs:  # a retried or restored trial continues its run
            return self.runs[key]
        name = self.run_name(trial)
        # While the store is unreachable this is a placeholder id that queued writes resolve.
        run_id = client.create_run(self.experiment_id, run_name=name,
                                   tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial.trial_id,
                                         **self.run_tags(trial), STATUS_TAG: TrialStatus.RUNNING})
        self.runs[key] = run_id
        try:
            cfg = self.train_config(trial)
            tr.batch(client, run_id, params=tr.config_params(cfg),
                     metrics=cost_metrics(config_cost(cfg)))
            self._log_yaml(run_id, cfg.model_dump(mode="json"), CONFIG_ARTIFACT)
        except Exception as e:  # never let bookkeeping stop the trials
            print(f"gunn-search: could not log the config of {name}: {e}", file=sys.stderr)
        return run_id

    def _result(self, trial, result: dict) -> tuple[str, TrialStatus]:
        """(run id, status so far) of a trial that reported `result`."""
        run_id, status = self._ensure_run(trial), status_of(result)
        self.statuses[self.key(trial)] = status
        return run_id, status

    def _finish(self, trial, status: TrialStatus, mlflow_status: str,
                tags: dict | None = None) -> None:
        run_id = self._ensure_run(trial)
        self.statuses[self.key(trial)] = status
        self.closed.add(self.key(trial))
        tr.batch(self.client, run_id, tags={STATUS_TAG: status, **(tags or {})})
        self.client.call("set_terminated", run_id, mlflow_status)

    def close_if_ended(self, trial) -> TrialStatus:
        """Close the run of a trial that ended without this driver seeing it (it ended while a
        killed driver was down); its status either way."""
        key = self.key(trial)
        if key in self.closed:
            return self.statuses[key]
        if trial.status == "ERROR":
            self.on_trial_error(0, [], trial)
        elif trial.status == "TERMINATED":
            self.on_trial_complete(0, [], trial)
        return self.statuses.get(key, TrialStatus.RUNNING)

    def close_cut(self, trials) -> list:
        """The end of an experiment a signal stopped (Tune has saved its state for `--resume`).

        A trial that started in this driver and did not end is cut (Tune's cleanup has marked
        it TERMINATED without telling the callbacks), and so is one with a run that waits to
        start again: `interrupted`, KILLED. Returns the trials neither closed nor cut.
        """
        rest = []
        for t in trials:
            key = self.key(t)
            if key in self.closed:
                continue
            if key in self.started or (key in self.runs and t.status not in ("TERMINATED", "ERROR")):
                self._finish(t, TrialStatus.INTERRUPTED, "KILLED")
            else:
                rest.append(t)
        return rest

    def abort(self) -> None:
        """After a second signal cut Tune's own stop short: the runs of the trials that started
        in this driver and did not end are `interrupted`, KILLED (the command closes the parent
        run)."""
        for key in sorted(self.started - self.closed):
            self.closed.add(key)
            tr.batch(self.client, self.runs[key], tags={STATUS_TAG: TrialStatus.INTERRUPTED})
            self.client.call("set_terminated", self.runs[key], "KILLED")
        self.client.flush()

    def drop_unsaved(self, trials) -> None:
        """Delete the runs of trials that a killed driver started but Tune never saved.

        Tune writes its state once a second; a trial started inside that second before the kill
        is unknown to the restored experiment, which samples a new trial in its place. Its run
        would be a stray extra child, so it is closed, tagged and soft-deleted (`mlflow runs
        restore` brings it back).
        """
        known = {self.key(t) for t in trials}
        for key in sorted(set(self.runs) - known):
            run_id = self.runs.pop(key)
            tr.batch(self.client, run_id, tags={STATUS_TAG: TrialStatus.ABANDONED})
            self.client.call("set_terminated", run_id, "KILLED")
            self.client.call("delete_run", run_id)
            print(f"gunn-search: trial {key} was started just before the driver stopped and was "
                  f"not saved by Tune; its MLflow run {self.client.resolve(run_id)} is deleted "
                  "(a new trial took its place)", file=sys.stderr)

    # --- artifacts ----------------------------------------------------------------------------
    def _spool(self) -> Path:
        """Artifacts are written here, not to a temporary directory, so that a write queued
        while the tracking store is unreachable still finds its file when it is retried."""
        d = Path(tempfile.gettempdir()) / f"{self.SPOOL_PREFIX}-{self.parent_run_id}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _log_yaml(self, run_id: str, data: dict, name: str) -> None:
        d = Path(tempfile.mkdtemp(dir=self._spool()))
        p = d / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        self.client.call("log_artifact", run_id, str(p))
        # Delivered, the file is not needed again: removed now, not at the experiment's end
        # (where 384 trials' folders took 1.1 s). A queued write keeps it for its retry.
        if not self.client.pending:
            shutil.rmtree(d, ignore_errors=True)

    def drop_spool(self) -> None:
        """Remove the spool once nothing queued needs its files."""
        if not self.client.pending:
            shutil.rmtree(self._spool(), ignore_errors=True)


def epoch_metrics(result: dict, status: TrialStatus, keys) -> dict[str, float]:
    """The finite metrics of an epoch's result; a non-finite loss's stand-in val_acc (0) is no
    measurement and stays out."""
    return tr.finite_metrics(result, [k for k in keys
                                      if not (status is TrialStatus.NONFINITE and k == METRIC)])
