"""The Ray side of `gunn-search ablate`: the trainable and the MLflow callback.

A run of the ablation is a trial of `gunn_search.run.trainable.train_trial` on the ablation's space
(`gunn_search.ablation.variants.ablation_space`): the trial's config is put into the ablated config and
trained, reported and checkpointed exactly as a search trial is, and retried from its last
checkpoint when it fails. Tune's grid holds one cell per (variant, seed), under the key "run".

The callback writes one nested MLflow run per cell under the ablation's parent run, from the
driver, with the search's bookkeeping (gunn_search.track.trial_runs): the cell's training config as params and as the artifact
`train_config.yaml` (so `gunn-train` can train it again), its per-epoch metrics (step = epoch,
`test_*` too with --final) and a `gunn_search.status` tag.

Stopped by Ctrl-C or SIGTERM (gunn_search.run.interrupts), the runs it cut are `interrupted` and
KILLED; `gunn-search ablate --resume` restores the Tune experiment, and this callback (restored
with it) finds the cells' runs by their tags and sets each RUNNING again as its cell restarts.
"""

from __future__ import annotations

import sys

from gunn_search.status import Kind, TrialStatus
from gunn_search.run import interrupts
from gunn_search.track import store as tr
from gunn_search.tags import PARENT_TAG, ROLE_TAG, SEED_TAG, VARIANT_TAG
from gunn_search.track.trial_runs import TrialRuns, epoch_metrics

ROLE = "ablation_run"  # the role tag of an ablation's nested runs (the parent's is "ablation")
METRICS = tr.EPOCH_METRICS + ("test_loss", "test_acc")


def ablation_trial(config: dict, space) -> None:
    """Tune function trainable: train one cell of the grid (`config["run"]`, a sample of `space`)."""
    from gunn_search.run.trainable import train_trial

    train_trial(config["run"], space)


class AblationCallback(TrialRuns):
    """Nested MLflow runs for the cells of one ablation, written from the driver; a cell's run
    is named by its (variant, seed), which a resumed ablation finds it by."""

    SETTINGS = TrialRuns.SETTINGS + ("configs",)
    SPOOL_PREFIX = "gunn-ablation-spool"

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, configs: dict):
        self.configs = configs  # (variant, seed) -> the TrainConfig that cell trains
        super().__init__(tracking_uri, experiment_id, parent_run_id)

    def key(self, trial) -> tuple[str, int]:
        run = trial.config["run"]
        return run["variant"], int(run["seed"])

    def run_name(self, trial) -> str:
        variant, seed = self.key(trial)
        return f"{variant}-seed{seed}"

    def run_tags(self, trial) -> dict:
        variant, seed = self.key(trial)
        return {ROLE_TAG: ROLE, VARIANT_TAG: variant, SEED_TAG: str(seed)}

    def train_config(self, trial):
        return self.configs[self.key(trial)]

    def existing_runs(self, client) -> dict:
        return ablation_runs(client, self.experiment_id, self.parent_run_id)

    def register_abort(self, abort) -> None:
        interrupts.on_abort(abort)

    def run_end(self, status: TrialStatus) -> str:
        # A cell ends with epochs left only if something stopped it, which nothing here does.
        return "FINISHED" if status.kind is Kind.COMPLETED else "FAILED"

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id, status = self._result(trial, result)
        tr.batch(self.client, run_id, metrics=epoch_metrics(result, status, METRICS),
                 step=int(result.get("epoch", 0)))

    def on_experiment_end(self, trials, **info):
        """Deliver what is queued (saying what could not be). Stopped by a signal: the cells
        it cut (started here, not ended; Tune's cleanup has marked them TERMINATED) and those
        waiting to run again are `interrupted`, KILLED, first."""
        if interrupts.received() is not None:
            self.close_cut(trials)
        undelivered = self.close()
        if undelivered:
            print(f"gunn-search ablate: {len(undelivered)} MLflow writes could not be delivered "
                  f"to {self.tracking_uri}", file=sys.stderr, flush=True)

    def run_ids(self) -> dict[tuple[str, int], str]:
        """(variant, seed) -> MLflow run id (real ids once queued writes went through)."""
        self.client.flush()
        return {k: self.client.resolve(v) for k, v in self.runs.items()}

    def close(self) -> list[str]:
        """Deliver what is queued; the methods of the writes that could not be (none: all in)."""
        self.client.flush()
        self.drop_spool()
        return [m for m, _, _ in self.client.pending]


def ablation_runs(client, experiment_id: str, parent_run_id: str) -> dict[tuple[str, int], str]:
    """(variant, seed) -> run id of an ablation's nested runs, read back from MLflow."""
    runs = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10000)
    return {(r.data.tags[VARIANT_TAG], int(r.data.tags[SEED_TAG])): r.info.run_id
            for r in runs if VARIANT_TAG in r.data.tags and SEED_TAG in r.data.tags}
