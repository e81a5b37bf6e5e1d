"""A value is validated where it enters and travels typed: `optim.lr` on its way from a space file
to the trainer, through the command line's overrides, the sampler and the trainable, is checked
at most twice (its distribution's values by the key's own validator when the file is read, and
the value left in the base config by `TrainConfig`), never parsed again downstream."""

from types import SimpleNamespace

import optuna
import pytest

optuna.logging.set_verbosity(optuna.logging.WARNING)

import trainers.loop
from gunn_search.api import load_searched_space
from gunn_search.cli.search import search_parser, space_settings
from gunn_search.run import trainable
from gunn_search.space import define_by_run, extract, load_space
from trainers.config import OptimConfig, TrainConfig


class Counting:
    """Stands in for a pydantic model's validator and counts the calls that validate optim.lr:
    a TrainConfig given its `optim` as data (an OptimConfig instance is not validated again,
    pydantic's default), or an OptimConfig."""

    def __init__(self, real, counts, sees_lr):
        self.real, self.counts, self.sees_lr = real, counts, sees_lr

    def _count(self, data):
        if self.sees_lr(data):
            self.counts.append(self.real.title)

    def validate_python(self, data, *a, **kw):
        self._count(data)
        return self.real.validate_python(data, *a, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def lr_validations(monkeypatch):
    counts: list[str] = []
    monkeypatch.setattr(TrainConfig, "__pydantic_validator__", Counting(
        TrainConfig.__pydantic_validator__, counts,
        lambda d: not isinstance(d, dict) or not isinstance(d.get("optim"), OptimConfig)))
    monkeypatch.setattr(OptimConfig, "__pydantic_validator__", Counting(
        OptimConfig.__pydantic_validator__, counts, lambda d: True))
    real_coercer = extract.coercer

    def coercer(model, key):  # the distribution's values, checked by the key's validator
        if (model, key) == (OptimConfig, "lr"):
            counts.append("coercer(optim.lr)")
        return real_coercer(model, key)

    monkeypatch.setattr(extract, "coercer", coercer)
    return counts


def test_optim_lr_is_validated_at_most_twice_from_the_space_file_to_the_trainer(
        lr_validations, monkeypatch, tmp_path):
    # the driver: the space file, then the flags a search is typically run with
    args = search_parser().parse_args(["--space", "smoke.yaml", "--data-dir", str(tmp_path),
                                       "--max-epochs", "3", "--num-samples", "2", "--seed", "1",
                                       "--cpus-per-trial", "1", "--gpus-per-trial", "0"])
    space, _, _ = load_searched_space(args.space, **space_settings(args))
    assert space.search.num_samples == 2 and space.max_epochs == 3
    assert space.base.data.data_dir == str(tmp_path.resolve())
    # the searcher's define-by-run sample
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    config = define_by_run(space)(study.ask())
    # the worker: the trainable builds the trial's config and hands it to the trainer
    trained = []
    monkeypatch.setattr(trainable, "tune", SimpleNamespace(
        get_context=lambda: None, get_checkpoint=lambda: None, report=lambda *a, **k: None))
    monkeypatch.setattr(trainable, "cached_data", lambda d, device: None)
    monkeypatch.setattr(trainers.loop, "train", lambda cfg, **kw: trained.append(cfg))
    trainable.train_trial(config, space)

    (cfg,) = trained
    assert cfg.optim.lr == config["optim.lr"] and cfg.epochs == 3
    assert cfg.data.data_dir == str(tmp_path.resolve())
    assert len(lr_validations) <= 2, lr_validations
    assert "coercer(optim.lr)" in lr_validations  # the counter does see the checks


def test_the_counter_sees_a_parse_of_the_trial_config(lr_validations):
    """The count above is not zero by accident: parsing a config again is counted."""
    from trainers.config import parse_config

    cfg = parse_config({"model": {"name": "gunn15"}, "optim": {"lr": 0.1}})
    parse_config(cfg.model_dump())
    OptimConfig.model_validate({"lr": 0.2})
    assert lr_validations == ["TrainConfig", "TrainConfig", "OptimConfig"]


@pytest.mark.parametrize("settings", [
    {"epochs": 2}, {"epochs": 12, "num_samples": 3, "seed": 4},
    {"gpus_per_trial": 0.5, "cpus_per_trial": 2.0, "data_dir": "/data"}])
def test_flags_as_typed_settings_give_the_space_that_reading_the_file_again_gives(settings):
    """`with_settings` (typed updates) against `with_overrides` (the file edited and read again):
    the same space, a first rung the file set cut to fewer epochs, unset defaults following."""
    from gunn_search.space import with_overrides, with_settings

    space = load_space("smoke.yaml")
    paths = {"epochs": "epochs", "num_samples": "search.num_samples", "seed": "search.seed",
             "gpus_per_trial": "resources.gpus_per_trial",
             "cpus_per_trial": "resources.cpus_per_trial", "data_dir": "data.data_dir"}
    over = {paths[k]: v for k, v in settings.items()}
    if "epochs" in settings:
        over["search.grace_period"] = min(space.search.grace_period, settings["epochs"])
    typed, reread = with_settings(space, **settings), with_overrides(space, over)
    assert typed.base == reread.base and typed.dims == reread.dims
    assert typed.search == reread.search and typed.resources == reread.resources
    assert typed.data == reread.data


def test_a_bad_flag_is_one_line_naming_its_key():
    from gunn_search.space import with_settings
    from trainers.config_errors import ConfigError

    space = load_space("smoke.yaml")
    for settings, words in [({"epochs": 0}, "command line: epochs: "),
                            ({"num_samples": 0}, "command line: search.num_samples: "),
                            ({"cpus_per_trial": 0.0}, "command line: resources.cpus_per_trial: ")]:
        with pytest.raises(ConfigError) as e:
            with_settings(space, **settings)
        assert str(e.value).startswith(words) and "\n" not in str(e.value), str(e.value)
