"""Search spaces: a `gunn-train` config whose values may be distributions, plus the search's
own sections. One job per module:

    distributions   the {choice: [...]} and {low, high[, log][, step]} forms
    schema          the space file = TrainConfig + distributions + search/resources/budget
    extract         moving the distributions out of the config (and back to YAML)
    paths           dotted paths: get/set in a mapping, typed updates of a validated config
    budget          the budget section, prices of configs (trainers.model.cost), feasibility
    sample          Optuna define-by-run sampling; the exact TrainConfig of a sample
    load            finding and reading a space file (bundled names too)
    overrides       a read space with settings changed (flags, dotted paths)
    compute_limits  the compute budget's keys: durations, the trial count a budget leaves out
    rungs           ASHA's rungs and their defaults, as plain arithmetic

Nothing here imports the rest of the search (run, track, results): the contract in
pyproject.toml keeps the space below them.
"""

from trainers.config_errors import ConfigError as SpaceError

from gunn_search.space.load import bundled_spaces, load_space, resolve_space_path
from gunn_search.space.overrides import with_overrides, with_settings
from gunn_search.space.sample import define_by_run, example_configs, trial_config
from gunn_search.space.schema import Space, fingerprint, parse_space

__all__ = ["SpaceError", "Space", "bundled_spaces", "load_space", "resolve_space_path",
           "with_overrides", "with_settings", "define_by_run", "example_configs", "trial_config",
           "fingerprint", "parse_space"]
