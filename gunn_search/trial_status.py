"""The metric a search optimises and the `trial_status` values a trial reports.

Kept apart from `gunn_search.trainable` so the driver (callbacks, searcher, progress) can name
them without importing torch.
"""

METRIC = "val_acc"

# trial_status values reported by the trainable (the others are decided in the driver)
RUNNING = "running"
COMPLETED = "completed"
REJECTED = "rejected by budget"
NONFINITE = "non-finite loss"  # == trainers.loop.STATUS_NONFINITE (tests/test_trainable.py)
OOM = "oom"
