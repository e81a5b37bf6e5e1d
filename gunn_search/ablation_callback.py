"""The Ray side of `gunn-search ablate`: the trainable and the MLflow callback.

A run of the ablation is a trial of `gunn_search.trainable.train_trial` on the ablation's space
(`gunn_search.ablation.ablation_space`): the trial's config is put into the ablated config and
trained, reported and checkpointed exactly as a search trial is, and retried from its last
checkpoint when it fails. Tune's grid holds one cell per (variant, seed), under the key "run".

The callback writes one nested MLflow run per cell under the ablation's parent run, from the
driver (as the search's callback does): the cell's training config as params and as the artifact
`train_config.yaml` (so `gunn-train` can train it again), its per-epoch metrics (step = epoch,
`test_*` too with --final) and a `gunn_search.status` tag.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from ray import tune

from gunn_search import tracking as tr
from gunn_search.space.budget import config_cost, cost_metrics
from gunn_search.trial_status import Kind, TrialStatus

ROLE = "ablation_run"  # the role tag of an ablation's nested runs (the parent's is "ablation")
VARIANT_TAG = "gunn_search.variant"
SEED_TAG = "gunn_search.seed"
ERROR_TAG = "gunn_search.error"
METRICS = tr.EPOCH_METRICS + ("test_loss", "test_acc")


def ablation_trial(config: dict, space) -> None:
    """Tune function trainable: train one cell of the grid (`config["run"]`, a sample of `space`)."""
    from gunn_search.trainable import train_trial

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

    def on_trial_start(self, iteration, trials, trial, **info):
        self._ensure_run(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._ensure_run(trial)

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


