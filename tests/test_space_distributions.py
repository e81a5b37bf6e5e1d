"""gunn_search.space.distributions: the {choice: [...]} and {low, high[, log][, step]} forms."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from gunn_search.space import distributions as dist
from gunn_search.space.distributions import Choice, Range
from gunn_search.space.extract import coercer
from tests.space_helpers import new_study
from trainers.config import DataConfig, OptimConfig, ScheduleConfig, StageConfig, TrainConfig


def as_is(x):
    return x


LR = coercer(OptimConfig, "lr")
MOMENTUM = coercer(OptimConfig, "momentum")
KIND = coercer(ScheduleConfig, "kind")
NESTEROV = coercer(OptimConfig, "nesterov")
P = coercer(StageConfig, "P")


# --- parsing --------------------------------------------------------------------------------------

def test_looks_like_distribution():
    for v in ({"choice": [1]}, {"low": 1, "high": 2}, {"low": 1}, {"high": 2, "log": True},
              {"choice": [], "low": 1}):
        assert dist.looks_like_distribution(v), v
    for v in ({}, {"uri": "x"}, {"log": True}, [1, 2], 1, "choice", None):
        assert not dist.looks_like_distribution(v), v


def test_choice_values_are_typed_by_the_key():
    # YAML reads 1e-4 (no dot) as a string; the key's own validator makes it the number it is.
    d = dist.parse({"choice": ["1e-4", 0.1, 1]}, "float", LR)
    assert d == Choice((1e-4, 0.1, 1.0)) and all(type(v) is float for v in d.values)
    assert dist.parse({"choice": ["cosine", "step"]}, "other", KIND).values == ("cosine", "step")
    assert dist.parse({"choice": [True, False]}, "other", NESTEROV).values == (True, False)
    assert dist.parse({"choice": [2, 3]}, "int", P) == Choice((2, 3))


def test_ranges():
    assert dist.parse({"low": 0.02, "high": 0.3, "log": True}, "float", LR) == Range(
        0.02, 0.3, log=True, step=None, integer=False)
    assert dist.parse({"low": 10, "high": 30, "step": 5}, "int", P) == Range(
        10, 30, step=5, integer=True)
    r = dist.parse({"low": "1e-3", "high": 0.1}, "float", LR)
    assert (r.low, r.high, r.log) == (1e-3, 0.1, False)
    assert dist.parse({"low": 0.1, "high": 0.5, "step": 0.1}, "float", LR).step == 0.1
    assert dist.parse({"low": 2, "high": 2}, "int", P) == Range(2, 2, integer=True)


@pytest.mark.parametrize("value,kind,coerce,fragment", [
    ({"choice": []}, "float", LR, "choice must not be empty"),
    ({"choice": 0.1}, "float", LR, "choice must be a list of values (got 0.1)"),
    ({"choice": [0.1, [0.2]]}, "float", LR, "choice values must be single values"),
    ({"choice": [0.1, {"low": 1}]}, "float", LR, "choice values must be single values"),
    ({"choice": [0.1, 0.1]}, "float", LR, "duplicate choice 0.1"),
    ({"choice": ["1e-4", 0.0001]}, "float", LR, "duplicate choice 0.0001"),
    ({"choice": [0.1], "low": 0.1}, "float", LR, "a choice takes no other keys (got low)"),
    ({"choice": [0.9, 1.5]}, "float", MOMENTUM, "choice 1.5: must be < 1.0 (got 1.5)"),
    ({"choice": ["step", "linear"]}, "other", KIND, "choice 'linear': unknown value 'linear'"),
    ({"choice": [2, 0]}, "int", P, "choice 0: must be >= 1 (got 0)"),
    ({"low": 0.1}, "float", LR, "a range needs both low and high"),
    ({"high": 0.1}, "float", LR, "a range needs both low and high"),
    ({"low": 0.1, "hihg": 0.3}, "float", LR, "unknown key 'hihg' in a range"),
    ({"low": 0, "high": 1}, "other", KIND, "a range needs a numeric key; use {choice: [...]} here"),
    ({"low": 0.3, "high": 0.02}, "float", LR, "low (0.3) > high (0.02)"),
    ({"low": 5, "high": 2}, "int", P, "low (5) > high (2)"),
    ({"low": 0, "high": 1, "log": True}, "float", as_is, "a log range needs low > 0 (got low=0)"),
    ({"low": -1.0, "high": 1.0, "log": True}, "float", as_is, "a log range needs low > 0"),
    ({"low": 0.01, "high": 0.1, "log": "yes"}, "float", LR, "log must be true or false (got 'yes')"),
    ({"low": 1, "high": 4, "step": 0}, "int", P, "step must be a positive number (got 0)"),
    ({"low": 1, "high": 4, "step": True}, "int", P, "step must be a positive number"),
    ({"low": 1, "high": 4, "step": "1"}, "int", P, "step must be a positive number"),
    ({"low": 1, "high": 4, "step": 1.5}, "int", P, "step of an integer range must be an integer"),
    ({"low": 2, "high": 5, "step": 2}, "int", P, "high - low (3) must be a multiple of step (2)"),
    ({"low": 0.1, "high": 0.2, "step": 0.03}, "float", LR, "must be a multiple of step (0.03)"),
    ({"low": 0.1, "high": 0.9, "log": True, "step": 0.1}, "float", LR,
     "a log range cannot have a step"),
    ({"low": 0.0, "high": 0.5}, "float", LR, "low 0.0: must be > 0.0"),
    ({"low": 0.5, "high": 1.0}, "float", MOMENTUM, "high 1.0: must be < 1.0"),
])
def test_bad_distribution(value, kind, coerce, fragment):
    with pytest.raises(ValueError) as info:
        dist.parse(value, kind, coerce)
    assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


# --- enumeration and membership -------------------------------------------------------------------

def test_values_size_first():
    c = Choice((8, 12, 16))
    assert dist.values(c) == [8, 12, 16] and dist.size(c) == 3 and dist.first(c) == 8
    r = Range(10, 30, step=5, integer=True)
    assert dist.values(r) == [10, 15, 20, 25, 30] and dist.size(r) == 5 and dist.first(r) == 10
    assert dist.values(Range(1, 3, integer=True)) == [1, 2, 3]
    f = Range(0.02, 0.3, log=True)
    assert dist.values(f) == [0.02, 0.3] and dist.size(f) == math.inf
    g = Range(0.1, 0.5, step=0.1)
    assert dist.size(g) == 5 and dist.values(g) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert dist.size(Range(0.1, 0.1)) == 1 and dist.values(Range(0.1, 0.1)) == [0.1]


def test_is_searched():
    assert dist.is_searched(Choice((1, 2))) and dist.is_searched(Range(0.1, 0.2))
    assert dist.is_searched(Range(1, 2, integer=True))
    assert not dist.is_searched(Choice((1,))) and not dist.is_searched(Range(0.1, 0.1))
    assert not dist.is_searched(Range(3, 3, integer=True))


def test_allows():
    assert dist.allows(Choice((8, 12)), 12) and not dist.allows(Choice((8, 12)), 10)
    # a flag is not a number here, though True == 1 in Python
    assert not dist.allows(Choice((1, 2)), True)
    assert not dist.allows(Choice((True, False)), 1) and dist.allows(Choice((True, False)), False)
    assert dist.allows(Choice(("step", "cosine")), "cosine")
    assert dist.allows(Choice((None, 16)), None)
    r = Range(0.02, 0.3, log=True)
    assert dist.allows(r, 0.1) and dist.allows(r, 0.02) and dist.allows(r, 0.3)
    assert not dist.allows(r, 0.31) and not dist.allows(r, 0.01)
    assert not dist.allows(r, "0.1") and not dist.allows(r, True) and not dist.allows(r, None)
    i = Range(10, 30, integer=True)
    assert dist.allows(i, 20) and dist.allows(i, 20.0) and not dist.allows(i, 20.5)
    s = Range(10, 30, step=5, integer=True)
    assert dist.allows(s, 25) and not dist.allows(s, 24)
    grid = Range(0.1, 0.5, step=0.1)
    assert dist.allows(grid, 0.3) and not dist.allows(grid, 0.25)


def test_describe():
    assert dist.describe(Choice((8, 12, 16))) == "{8, 12, 16}"
    assert dist.describe(Choice((0.0, 1e-4))) == "{0, 0.0001}"
    assert dist.describe(Choice(("gunn", "sunn"))) == "{gunn, sunn}"
    assert dist.describe(Range(0.02, 0.3, log=True)) == "[0.02, 0.3] log-uniform"
    assert dist.describe(Range(0.8, 0.95)) == "[0.8, 0.95] uniform"
    assert dist.describe(Range(1, 2, integer=True)) == "[1, 2]"
    assert dist.describe(Range(20, 40, step=2, integer=True)) == "[20, 40] step 2"
    assert dist.describe(Range(1, 64, log=True, integer=True)) == "[1, 64] log"


# --- Optuna ---------------------------------------------------------------------------------------

def test_suggest_asks_under_the_given_name():
    study = new_study(seed=0)
    for _ in range(20):
        trial = study.ask()
        lr = dist.suggest(trial, "optim.lr", Range(0.02, 0.3, log=True))
        bs = dist.suggest(trial, "batch_size", Choice((32, 64)))
        P_ = dist.suggest(trial, "model.stages.0.P", Range(10, 30, step=5, integer=True))
        g = dist.suggest(trial, "schedule.gamma", Range(0.1, 0.5, step=0.1))
        assert 0.02 <= lr <= 0.3 and type(lr) is float
        assert bs in (32, 64) and P_ in (10, 15, 20, 25, 30) and type(P_) is int
        assert 0.1 <= g <= 0.5
        assert set(trial.params) == {"optim.lr", "batch_size", "model.stages.0.P", "schedule.gamma"}
        assert trial.params["optim.lr"] == lr


def test_suggest_does_not_ask_for_a_single_value():
    trial = new_study().ask()
    assert dist.suggest(trial, "a", Choice((7,))) == 7
    assert dist.suggest(trial, "b", Range(0.1, 0.1)) == 0.1
    assert dist.suggest(trial, "c", Range(3, 3, integer=True)) == 3
    assert trial.params == {}


def test_to_optuna():
    c = dist.to_optuna(Choice(("gunn", "sunn")))
    assert isinstance(c, CategoricalDistribution) and c.choices == ("gunn", "sunn")
    i = dist.to_optuna(Range(10, 30, step=5, integer=True))
    assert isinstance(i, IntDistribution) and (i.low, i.high, i.step, i.log) == (10, 30, 5, False)
    f = dist.to_optuna(Range(0.02, 0.3, log=True))
    assert isinstance(f, FloatDistribution) and f.log and (f.low, f.high) == (0.02, 0.3)
    assert dist.to_optuna(Range(0.1, 0.5, step=0.1)).step == 0.1


def test_coercer_validates_as_the_training_config_does():
    assert coercer(TrainConfig, "batch_size")(32) == 32
    with pytest.raises(ValueError, match=r"must be >= 1 \(got 0\)"):
        coercer(TrainConfig, "batch_size")(0)
    with pytest.raises(ValueError, match="unknown value 'imagenet'"):
        coercer(DataConfig, "name")("imagenet")
    assert coercer(DataConfig, "flip")(None) is None
