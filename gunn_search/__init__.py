"""gunn-search: hyperparameter and architecture search for GUNN/SUNN networks.

The Python API (`gunn_search.api`): `search`, `export`, `ablate`, `importances`, `train`. Importing the package
imports none of Ray, MLflow or torch; each function imports what it needs when called.
"""

__all__ = ["search", "export", "ablate", "importances", "train"]


def __getattr__(name: str):
    if name in __all__:
        from gunn_search import api
        return getattr(api, name)
    raise AttributeError(f"module 'gunn_search' has no attribute {name!r}")
