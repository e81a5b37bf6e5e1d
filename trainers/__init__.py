"""Pure-PyTorch GUNN/SUNN trainer: models, data, training loop, checkpoints.

Nothing in this package imports Ray, MLflow or Optuna; the search system drives it through
``build_model``, ``TrainConfig`` and the per-epoch callback of ``train``.
"""

from trainers.networks import NetworkSpec, StageSpec, build_model, MODEL_REGISTRY

__all__ = ["NetworkSpec", "StageSpec", "build_model", "MODEL_REGISTRY"]
