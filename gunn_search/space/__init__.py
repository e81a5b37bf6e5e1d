"""Search spaces: a `gunn-train` config whose values may be distributions, plus the search's
own sections. One job per module:

    distributions   the {choice: [...]} and {low, high[, log][, step]} forms
    schema          the space file = TrainConfig + distributions + search/resources/budget
    budget          prices of configs (trainers.model.cost) and the budget's feasibility
    sample          Optuna define-by-run sampling; the exact TrainConfig of a sample
    load            finding and reading a space file (bundled names too), overrides
    summary         the human summary of --dry-run
"""

from trainers.config_errors import ConfigError as SpaceError

from gunn_search.space.load import bundled_spaces, load_space, resolve_space_path, with_overrides
from gunn_search.space.sample import define_by_run, example_configs, trial_config
from gunn_search.space.schema import Space, fingerprint, parse_space

__all__ = ["SpaceError", "Space", "bundled_spaces", "load_space", "resolve_space_path",
           "with_overrides", "define_by_run", "example_configs", "trial_config", "fingerprint",
           "parse_space"]
