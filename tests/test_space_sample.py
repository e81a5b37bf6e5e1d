"""gunn_search.space.sample: Optuna define-by-run sampling and the exact config a sample trains."""

from __future__ import annotations

import math
import pickle
import warnings

import optuna
import pytest

from gunn_search.space import define_by_run, example_configs, load_space, trial_config
from gunn_search.space.sample import runtime_config, sample
from gunn_search.space.paths import get_path
from tests.space_helpers import (BASE, SEARCHABLE, TINY, assert_valid_sample, new_study, parse,
                                 patched)
from trainers.config import TrainConfig


@pytest.fixture(scope="module")
def base_space():
    return parse(BASE)


def run(space, n, seed=0, sampler=None, objective=None):
    study = new_study(seed, sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        values = sample(trial, space)
        study.tell(trial, objective(values) if objective else 0.0)
        out.append(values)
    return out, study


def test_samples_are_valid_networks_inside_the_space(base_space):
    samples, study = run(base_space, 200)
    for v in samples:
        assert_valid_sample(base_space, v)
        assert 2 <= v["model.stages.0.P"] <= 4 and v["model.stages.0.n"] in (2, 4)
        assert v["model.stages.1.N"] in (12, 16, 18) and v["model.stages.1.P"] in (2, 3, 4, 6)
        assert 20 <= v["model.stages.2.N"] <= 40 and v["model.stages.2.N"] % 2 == 0
        assert 3 <= v["model.stages.2.P"] <= 7
        assert 0.01 <= v["optim.lr"] <= 0.3 and v["optim.weight_decay"] in (0.0, 1e-4, 5e-4)
        assert v["batch_size"] in (32, 64) and v["budget_ok"] is True
    # Every allowed N shows up, and several P.
    assert {v["model.stages.1.N"] for v in samples} == {12, 16, 18}
    assert len({v["model.stages.1.P"] for v in samples}) >= 3
    # a stepped N range: only the N some allowed P divides (22, 26, 34, 38 have no divisor in 3..7)
    assert {v["model.stages.2.N"] for v in samples} == {20, 24, 28, 30, 32, 36, 40}


def test_optuna_names_are_the_dotted_paths(base_space):
    _, study = run(base_space, 60)
    names = set().union(*(t.params for t in study.trials))
    assert {"model.stages.0.n", "model.stages.0.P", "model.stages.0.K", "model.stages.1.N",
            "model.stages.1.M", "model.stages.2.N", "optim.lr", "optim.weight_decay",
            "batch_size"} <= names
    # N-form stages: P's choices depend on N, so its name does too.
    p_names = {n for n in names if ".P" in n and not n.startswith("model.stages.0")}
    assert p_names and all(n.startswith(("model.stages.1.P_N", "model.stages.2.P_N")) for n in p_names)
    assert any(n.startswith("model.stages.1.P_N") for n in names)
    # Fixed values are not Optuna parameters.
    assert "model.stages.1.K" not in names and "model.stages.0.M" not in names
    assert "model.family" not in names and "epochs" not in names
    for t in study.trials:
        N = t.params["model.stages.1.N"]
        Ps = [P for P in (2, 3, 4, 6) if N % P == 0]
        assert t.distributions[f"model.stages.1.P_N{N}"].choices == tuple(Ps)


def test_sampling_is_deterministic(base_space):
    a, _ = run(base_space, 30, seed=3)
    b, _ = run(base_space, 30, seed=3)
    c, _ = run(base_space, 30, seed=4)
    assert a == b and a != c


def test_n_form_names_and_distributions():
    space = parse(patched(BASE, ("model.stages", [
        {"N": 12, "P": {"low": 2, "high": 7}},              # N fixed: P among its divisors {2, 3, 4, 6}
        {"N": {"low": 8, "high": 16, "step": 4}, "P": 4},   # every N reachable: an int range
        {"N": {"choice": [10, 14]}, "P": {"choice": [2, 5, 7]}},  # P's name depends on N
        {"N": {"choice": [6, 9, 12]}, "P": 3},              # one P: not asked
    ])))
    samples, study = run(space, 60)
    for v in samples:
        assert_valid_sample(space, v)
    assert {v["model.stages.0.P"] for v in samples} == {2, 3, 4, 6}
    assert {v["model.stages.0.N"] for v in samples} == {12}
    dists = {k: d for t in study.trials for k, d in t.distributions.items()}
    assert isinstance(dists["model.stages.0.P"], optuna.distributions.CategoricalDistribution)
    assert dists["model.stages.0.P"].choices == (2, 3, 4, 6)
    assert "model.stages.0.N" not in dists
    assert isinstance(dists["model.stages.1.N"], optuna.distributions.IntDistribution)
    assert dists["model.stages.1.N"].step == 4 and "model.stages.1.P" not in dists
    assert dists["model.stages.2.P_N10"].choices == (2, 5)
    assert dists["model.stages.2.P_N14"].choices == (2, 7)
    assert dists["model.stages.3.N"].choices == (6, 9, 12) and not any(
        k.startswith("model.stages.3.P") for k in dists)


def test_n_range_with_unreachable_values_is_a_categorical_over_the_reachable():
    stage = {"N": {"low": 20, "high": 25}, "P": {"choice": [4, 5]}}
    space = parse(patched(BASE, ("model.stages.2", stage)))
    samples, study = run(space, 40)
    for v in samples:
        assert_valid_sample(space, v)
    dists = {k: d for t in study.trials for k, d in t.distributions.items()}
    assert dists["model.stages.2.N"].choices == (20, 24, 25)
    assert {v["model.stages.2.N"] for v in samples} == {20, 24, 25}


def test_conditional_p_with_multivariate_tpe(base_space):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=1, multivariate=True, group=True,
                                             n_startup_trials=5)

    def objective(v):
        return -abs(math.log(v["optim.lr"] / 0.1)) + v["model.stages.1.N"] / 100

    samples, _ = run(parse(BASE), 30, sampler=sampler, objective=objective)
    for v in samples:
        assert_valid_sample(parse(BASE), v)


# --- the config a sample trains -------------------------------------------------------------------

def test_trial_config_puts_the_sample_into_the_base(base_space):
    samples, _ = run(base_space, 20)
    for v in samples:
        cfg = trial_config(base_space, v)
        assert isinstance(cfg, TrainConfig) and cfg.tracking is None
        assert [(s.N, s.P) for s in cfg.model.stages] == [
            (v[f"model.stages.{i}.N"], v[f"model.stages.{i}.P"]) for i in range(3)]
        assert cfg.model.stages[0].K == v["model.stages.0.K"]
        assert cfg.model.stages[1].M == v["model.stages.1.M"]
        assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.batch_size) == (
            v["optim.lr"], v["optim.weight_decay"], v["batch_size"])
        # what is not searched stays the base's
        assert cfg.epochs == 4 and cfg.data.name == "digits" and cfg.model.stem_channels == 8
        assert cfg.optim.momentum == 0.9 and cfg.model.stages[2].K == 1


def test_trial_config_reads_only_config_paths(base_space):
    v, _ = run(base_space, 1)
    v = {**v[0], "model.stages.1.P_N12": 3, "cost.params": 1, "budget_ok": False, "unrelated": 1}
    assert trial_config(base_space, v) == trial_config(base_space, {
        k: x for k, x in v.items() if k in base_space.config_paths})
    # nothing sampled: the base itself (a one-point space trains its config)
    assert trial_config(base_space, {}) == base_space.base


@pytest.mark.parametrize("path,value,values", SEARCHABLE, ids=[s[0] for s in SEARCHABLE])
def test_every_searched_value_reaches_the_trial_config(path, value, values):
    space = parse(patched(TINY, (path, value)))
    samples, study = run(space, 40)
    names = set().union(*(t.params for t in study.trials))
    assert names == {path}
    seen = set()
    for v in samples:
        cfg = trial_config(space, v)
        got = get_path(cfg.model_dump(mode="python"), path)
        assert got == v[path] and type(got) is type(v[path])
        seen.add(got)
    if len(values) <= 4 and all(isinstance(x, (str, bool, int)) or x is None for x in values):
        assert seen == set(values), seen  # every value of a small discrete dimension shows up
    else:
        assert min(seen) >= min(values) and max(seen) <= max(values)


def test_exported_config_trains_unchanged():
    # A one-point space from an exported config: the sample is the config without its tracking.
    from gunn_search.results.export import export_config

    cfg = export_config(trial_config(parse(BASE), run(parse(BASE), 1)[0][0]), "s", "t",
                        experiment="e")
    space = parse(cfg.model_dump(mode="json"), "exported.yaml")
    (v,), study = run(space, 1)
    assert study.trials[0].params == {}
    assert trial_config(space, v) == cfg.model_copy(update={"tracking": None})


def test_runtime_config_changes_only_where_the_trial_runs(base_space):
    cfg = trial_config(base_space, run(base_space, 1)[0][0])
    rt = runtime_config(cfg, "cpu", "/tmp/trial", 2)
    assert (rt.device, rt.out_dir, rt.num_threads) == ("cpu", "/tmp/trial", 2)
    assert rt.model_dump(exclude={"device", "out_dir", "num_threads"}) == cfg.model_dump(
        exclude={"device", "out_dir", "num_threads"})


def test_registered_models_by_name():
    space = parse(patched(TINY, ("model", {"name": {"choice": ["gunn15", "sunn15"]}})))
    assert space.stage_forms == ()
    samples, _ = run(space, 10)
    assert {v["model.name"] for v in samples} == {"gunn15", "sunn15"}
    for v in samples:
        assert trial_config(space, v).model.name == v["model.name"]
        assert v["cost.params"] > 1_000_000


# --- define_by_run and example_configs ------------------------------------------------------------

def test_define_by_run_is_picklable(base_space):
    import cloudpickle

    fn = define_by_run(base_space)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        again = loads(dumps(fn))
        assert_valid_sample(base_space, again(new_study().ask()))


def test_example_configs_are_deterministic():
    space = load_space("gunn_vs_sunn")
    a, b = example_configs(space, n=8, seed=5), example_configs(space, n=8, seed=5)
    assert a == b and len(a) == 8
    assert a != example_configs(space, n=8, seed=6)
    for v in a:
        assert_valid_sample(space, v)
    assert {v["model.family"] for v in example_configs(space, n=20)} == {"gunn", "sunn"}
