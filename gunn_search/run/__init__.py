"""Running a search on Ray Tune: the Tuner and its state, the trial's trainable, the scheduler
(ASHA with rung results), the Optuna searcher, resources, progress, interrupts and faults."""
