"""The Ray side of `gunn-search ablate`: the trainable and the MLflow callback.

A run of the ablation is a trial of `gunn_search.run.trainable.train_trial` on the ablation's space
(`gunn_search.ablation.variants.ablation_space`): the trial's config is put into the ablated config and
trained, reported and checkpointed exactly as a search trial is, and retried from its last
checkpoint when it fails. Tune's grid holds one cell per (variant, seed), under the key "run".

The callback writes one nested MLflow run per cell under the ablation's parent run, from the
driver (as the search's callback does): the cell's training config as params and as the artifact
`train_config.yaml` (so `gunn-train` can train it again), its per-epoch metrics (step = epoch,
`test_*` too with --final) and a `gunn_search.status` tag.

Stopped by Ctrl-C or SIGTERM (gunn_search.run.interrupts), the runs it cut are `interrupted` and
KILLED; `gunn-search ablate --resume` restores the Tune experiment, and this callback (restored
with it) finds the cells' runs by their tags and sets each RUNNING again as its cell restarts.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from ray import tune

from gunn_search.run import interrupts
from gunn_search.track import store as tr
from gunn_search.space.budget import config_cost, cost_metrics
from gunn_search.results.status import Kind, TrialStatus

ROLE = "ablation_run"  # the role tag of an ablation's nested runs (the parent's is "ablation")
VARIANT_TAG = "gunn_search.variant"
SEED_TAG = "gunn_search.seed"
ERROR_TAG = "gunn_search.error"
METRICS = tr.EPOCH_METRICS + ("test_loss", "test_acc")


def ablation_trial(config: dict, space) -> None:
    """Tune function trainable: train one cell of the grid (`config["run"]`, a sample of `space`)."""
    from gunn_search.run.trainable import train_trial

    train_trial(config["run"], space)


class AblationCallback(tune.Callback):
    """Nested MLflow runs for the cells of one ablation, written from the driver."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, configs: dict):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.configs = configs  # (variant, seed) -> the TrainConfig that cell trains
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.client = tr.BufferedClient(MlflowClient(self.tracking_uri))
        self.runs: dict[tuple[str, int], str] = {}  # (variant, seed) -> run id
        self.earlier: set[tuple[str, int]] | None = None  # cells with a run before this driver
        self.started: set[tuple[str, int]] = set()  # cells (re)started in this driver
        self.closed: set[tuple[str, int]] = set()  # cells whose run got its final status here
        self.statuses: dict[tuple[str, int], TrialStatus] = {}
        # Artifacts are written here, not to a temporary directory of the call: a write queued
        # while the tracking store is unreachable still finds its file when it is retried.
        self.spool = Path(tempfile.gettempdir()) / f"gunn-ablation-spool-{self.parent_run_id}"

    # Tune pickles its callbacks with the experiment state: the settings only, not the client.
    def __getstate__(self):
        return {k: self.__dict__[k] for k in
                ("tracking_uri", "experiment_id", "parent_run_id", "configs")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_runtime()

    @staticmethod
    def cell(trial) -> tuple[str, int]:
        run = trial.config["run"]
        return run["variant"], int(run["seed"])

    def _ensure_run(self, trial) -> str:
        if self.earlier is None:  # first use: a resumed ablation's runs continue
            self.runs.update(ablation_runs(self.client.client, self.experiment_id,
                                           self.parent_run_id))
            self.earlier = set(self.runs)
        key = self.cell(trial)
        if key in self.runs:  # a retried trial continues its run
            return self.runs[key]
        variant, seed = key
        run_id = self.client.create_run(
            self.experiment_id, run_name=f"{variant}-seed{seed}",
            tags={tr.PARENT_TAG: self.parent_run_id, tr.ROLE_TAG: ROLE,
                  tr.TRIAL_TAG: trial.trial_id, VARIANT_TAG: variant, SEED_TAG: str(seed),
                  tr.STATUS_TAG: TrialStatus.RUNNING})
        self.runs[key] = run_id
        try:
            cfg = self.configs[key]
            tr.batch(self.client, run_id, params=tr.config_params(cfg),
                     metrics=cost_metrics(config_cost(cfg)))
            path = self.spool / f"{variant}-seed{seed}" / "train_config.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            self.client.call("log_artifact", run_id, str(path))
        except Exception as e:  # bookkeeping never stops the runs
            print(f"gunn-search: could not log the config of {variant} seed {seed}: {e}",
                  file=sys.stderr)
        return run_id

    def setup(self, **info):
        interrupts.on_abort(self.abort)  # a second Ctrl-C raises out of Tune at once

    def on_trial_start(self, iteration, trials, trial, **info):
        self._start(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._start(trial)

    def _start(self, trial) -> None:
        run_id, key = self._ensure_run(trial), self.cell(trial)
        if key in self.earlier and key not in self.started:  # resumed: it runs again
            self.client.call("update_run", run_id, status="RUNNING")
            tr.batch(self.client, run_id, tags={tr.STATUS_TAG: TrialStatus.RUNNING})
        self.started.add(key)

    def on_experiment_end(self, trials, **info):
        """Deliver what is queued (saying what could not be). Stopped by a signal: the cells
        it cut (started here, not ended; Tune's cleanup has marked them TERMINATED) and those
        waiting to run again are `interrupted`, KILLED, first."""
        if interrupts.received() is not None:
            self._close_interrupted(trials)
        undelivered = self.close()
        if undelivered:
            print(f"gunn-search ablate: {len(undelivered)} MLflow writes could not be delivered "
                  f"to {self.tracking_uri}", file=sys.stderr, flush=True)

    def _close_interrupted(self, trials) -> None:
        for t in trials:
            key = self.cell(t)
            if key in self.closed:
                continue
            if key in self.started or (key in self.runs and t.status not in ("TERMINATED", "ERROR")):
                self._finish(t, TrialStatus.INTERRUPTED, "KILLED")

    def abort(self) -> None:
        """After a second signal: the runs of the cells started here and not ended."""
        for key in sorted(self.started - self.closed):
            self.closed.add(key)
            tr.batch(self.client, self.runs[key], tags={tr.STATUS_TAG: TrialStatus.INTERRUPTED})
            self.client.call("set_terminated", self.runs[key], "KILLED")
        self.client.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._ensure_run(trial)
        status = TrialStatus(result.get("trial_status", TrialStatus.RUNNING))
        self.statuses[self.cell(trial)] = status
        keys = [k for k in METRICS if not (status == TrialStatus.NONFINITE and k == "val_acc")]
        tr.batch(self.client, run_id, metrics=tr.finite_metrics(result, keys),
                 step=int(result.get("epoch", 0)))

    def on_trial_recover(self, iteration, trials, trial, **info):
        tr.batch(self.client, self._ensure_run(trial),
                 tags={tr.STATUS_TAG: TrialStatus.RETRYING, ERROR_TAG: tr.trial_error_line(trial)})

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = TrialStatus((trial.last_result or {}).get("trial_status", TrialStatus.RUNNING))
        if status.kind is Kind.RUNNING:  # ended with epochs left: nothing here stops a run early
            status = TrialStatus.STOPPED
        self._finish(trial, status, "FINISHED" if status.kind is Kind.COMPLETED else "FAILED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, TrialStatus.ERRORED, "FAILED", {ERROR_TAG: tr.trial_error_line(trial)})

    def _finish(self, trial, status: TrialStatus, mlflow_status: str, tags: dict | None = None):
        run_id = self._ensure_run(trial)
        self.statuses[self.cell(trial)] = status
        self.closed.add(self.cell(trial))
        tr.batch(self.client, run_id, tags={tr.STATUS_TAG: status, **(tags or {})})
        self.client.call("set_terminated", run_id, mlflow_status)

    def run_ids(self) -> dict[tuple[str, int], str]:
        """(variant, seed) -> MLflow run id (real ids once queued writes went through)."""
        self.client.flush()
        return {k: self.client.resolve(v) for k, v in self.runs.items()}

    def close(self) -> list[str]:
        """Deliver what is queued; the methods of the writes that could not be (none: all in)."""
        self.client.flush()
        if not self.client.pending:
            shutil.rmtree(self.spool, ignore_errors=True)
        return [m for m, _, _ in self.client.pending]




def ablation_runs(client: MlflowClient, experiment_id: str, parent_run_id: str
                  ) -> dict[tuple[str, int], str]:
    """(variant, seed) -> run id of an ablation's nested runs, read back from MLflow."""
    runs = client.search_runs([experiment_id], f"tags.`{tr.PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10000)
    return {(r.data.tags[VARIANT_TAG], int(r.data.tags[SEED_TAG])): r.info.run_id
            for r in runs if VARIANT_TAG in r.data.tags and SEED_TAG in r.data.tags}
