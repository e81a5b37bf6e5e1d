"""Warm start: earlier trials replayed into a space's sampler (no Ray here; the end-to-end run
is in tests/test_search_e2e.py)."""

import optuna
import pytest

from gunn_search.track import store as tr
from gunn_search.run.searcher import StoppedAsPrunedOptunaSearch
from gunn_search.space import define_by_run, example_configs, load_space, trial_config, with_overrides
from gunn_search.status import Kind
from gunn_search.results.warm_start import PastTrial, apply, config_from_params, replay


@pytest.fixture(scope="module")
def space():
    return load_space("smoke.yaml")


def test_a_config_comes_back_from_the_params_its_run_logged(space):
    for values in example_configs(space, n=3, seed=4):
        cfg = trial_config(space, values)
        assert config_from_params(tr.config_params(cfg)) == cfg


def test_replay_finds_the_optuna_params_of_a_point_and_refuses_others(space):
    values = example_configs(space, n=1, seed=5)[0]
    cfg = trial_config(space, values)
    params, dists = replay(space, cfg)
    assert params["optim.momentum"] == cfg.optim.momentum
    assert params["model.stages.0.n"] * params["model.stages.0.P"] == cfg.model.stages[0].N
    assert set(params) == set(dists) == {p for p in space.searched()}
    # a shorter or longer run of the same point is still the point
    assert replay(space, cfg.model_copy(update={"epochs": 99})) is not None
    # outside: a searched value out of its range, a fixed value changed
    outside = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"momentum": 0.5})})
    assert replay(space, outside) is None
    wider = cfg.model_copy(update={"model": cfg.model.model_copy(update={"stem_channels": 32})})
    assert replay(space, wider) is None


def test_apply_tells_the_study_and_queues_the_best_first(space):
    past = []
    for i, values in enumerate(example_configs(space, n=4, seed=6)):
        cfg = trial_config(space, values)
        kind = Kind.COMPLETED if i < 3 else Kind.STOPPED
        past.append(PastTrial(f"r{i}", cfg, kind, 0.5 + i / 10, {1: 0.5 + i / 10}))
    outside = past[0].config.model_copy(update={"seed": 7})
    past.append(PastTrial("x", outside, Kind.COMPLETED, 0.99))
    searcher = StoppedAsPrunedOptunaSearch(space=define_by_run(space), metric="val_acc",
                                           mode="max", sampler=optuna.samplers.RandomSampler(0))
    w = apply(searcher, space, past, "earlier", top_k=2)
    assert (w.used, w.outside, w.enqueued) == (4, 1, 2)
    states = [t.state.name for t in searcher._ot_study.get_trials()]
    assert states.count("COMPLETE") == 3 and states.count("PRUNED") == 1
    # the next trials are the best complete ones: r2 (0.7), then r1 (0.6)
    first = searcher.suggest("new1")
    second = searcher.suggest("new2")
    assert first["optim.lr"] == past[2].config.optim.lr
    assert second["optim.lr"] == past[1].config.optim.lr
    assert trial_config(space, first) == past[2].config


def test_a_multi_objective_space_gets_each_objective(space):
    mo = with_overrides(space, {"search.objectives": [{"metric": "val_acc", "mode": "max"},
                                                      {"metric": "cost.params", "mode": "min"}]})
    values = example_configs(mo, n=1, seed=8)[0]
    cfg = trial_config(mo, values)
    past = [PastTrial("r", cfg, Kind.COMPLETED, 0.8, {1: 0.8},
                      {"cost.params": values["cost.params"]})]
    searcher = StoppedAsPrunedOptunaSearch(space=define_by_run(mo), metric=["val_acc", "cost.params"],
                                           mode=["max", "min"],
                                           sampler=optuna.samplers.RandomSampler(0))
    assert apply(searcher, mo, past, "earlier").used == 1
    (t,) = [t for t in searcher._ot_study.get_trials() if t.state.name == "COMPLETE"]
    assert t.values == [0.8, values["cost.params"]]
