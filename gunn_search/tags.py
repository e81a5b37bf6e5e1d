"""The names of the MLflow tags gunn-search writes and reads, each defined here only.

Plain strings, no imports: the driver, the trainer's command and the MLflow UI helpers all name
them, and none of them has to import MLflow (or each other) for that. The values are what the
stores already hold: renaming one orphans the runs of every earlier search.
"""

# --- Runs of a search, an ablation or a `gunn-train` -------------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a trial's run under its search's
ROLE_TAG = "gunn_search.role"  # search, trial, ablation, ablation_run, train
TRIAL_TAG = "gunn_search.trial_id"  # the Tune trial id: how a resumed search finds its runs
SEARCH_TAG = "gunn_search.search_run_id"  # on an exported config's runs: the search it came from
TRIAL_RUN_TAG = "gunn_search.trial_run_id"  # ... and the trial
# A trial's status (a `gunn_search.status.TrialStatus`); its details in tags of their own.
STATUS_TAG = "gunn_search.status"
ERROR_TAG = "gunn_search.error"  # the first line worth showing of the error
STOPPED_AT_TAG = "gunn_search.stopped_at_epoch"  # the last epoch a trial stopped early trained
EPOCHS_REDONE_TAG = "gunn_search.epochs_redone"  # epochs trained again after a resume, logged once
PARETO_TAG = "gunn_search.pareto"  # a multi-objective search's trial: on the front, true/false

# --- A search's parent run ---------------------------------------------------------------------
FINGERPRINT_TAG = "gunn_search.fingerprint"  # of the space file, as `--resume` checks it
SPACE_TAG = "gunn_search.space"  # the space file's name
BEST_TRIAL_TAG = "gunn_search.best_trial_id"
BEST_RUN_TAG = "gunn_search.best_run_id"
# A search's parameter importances: which trials they came from, or why none were drawn
IMPORTANCES_TAG = "gunn_search.importances"
# Of a search (or an ablation, a `gunn-train` run) stopped by a signal: when (UTC) and by which.
# A resumed search keeps them as the record of its last interruption.
INTERRUPTED_AT_TAG = "gunn_search.interrupted_at"
INTERRUPTED_BY_TAG = "gunn_search.interrupted_by"

# --- An ablation (`gunn-search ablate`) --------------------------------------------------------
SOURCE_TAG = "gunn_search.ablated_run_id"  # the parent's: the trial run whose config is ablated
PATH_TAG = "gunn_search.tune_path"  # the parent's: the Tune experiment a `--resume` restores
VARIANT_TAG = "gunn_search.variant"  # a cell's run: its variant ...
SEED_TAG = "gunn_search.seed"  # ... and seed

# --- What the MLflow web UI reads (gunn_search.track.ui) ---------------------------------------
NOTE_TAG = "mlflow.note.content"  # a run's description (its Overview page)
KIND_TAG = "mlflow.experimentKind"  # an experiment's: which pages the UI opens it on
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"  # an experiment's: the first chart
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # an experiment's: a shared runs-table view, by key
