"""Names of the metrics the trainer reports beside its own (`val_acc`, `train_loss`, ...), kept
apart from `trainers.anneal` (which needs torch) so that the search's driver and the MLflow
logging name them without importing torch: one definition each."""

from __future__ import annotations

# Branch epochs are counted apart from the run's own epochs (every budget counts both).
BRANCH_EPOCHS = "branch_epochs"


def annealed_key(eval_name: str, what: str = "acc") -> str:
    """The metric name of a branch's result: `annealed_val_acc` beside the run's `val_acc`."""
    return f"annealed_{eval_name}_{what}"
