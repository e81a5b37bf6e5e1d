"""Pure-PyTorch GUNN/SUNN trainer: models, data, training loop, checkpoints.

Nothing in this package imports Ray, MLflow or Optuna; the search system drives it through
``build_model``, ``TrainConfig`` and the per-epoch callback of ``train``.
"""

from trainers.model.spec import MODEL_REGISTRY, NetworkSpec, StageSpec

__all__ = ["NetworkSpec", "StageSpec", "build_model", "MODEL_REGISTRY"]


def __getattr__(name: str):
    # build_model needs torch; importing the package for its specs alone (the search driver
    # does) must not import it.
    if name == "build_model":
        from trainers.model.network import build_model
        return build_model
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
