"""Running a search on Ray Tune: the Tuner and its state, the trial's trainable, the scheduler
(ASHA with rung results), the Optuna searcher, resources, progress, interrupts and faults; the
search's MLflow callback (search_runs) and the --dry-run summary, which join the run to the
tracking and the resources below it."""
