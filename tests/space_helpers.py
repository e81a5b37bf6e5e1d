"""Shared by the tests of gunn_search.space (tests/test_space_*.py): a small space with every stage
form, ways to change it by dotted path, and what a valid sample is."""

from __future__ import annotations

import copy

import optuna
import pytest
import yaml

from gunn_search.space import distributions as dist
from gunn_search.space.paths import get_path
from gunn_search.space.schema import Space, parse_space
from trainers.config_errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUNDLED = ["cifar100_gunn15.yaml", "cifar_gunn15.yaml", "cifar_gunn24.yaml", "gunn_vs_sunn.yaml",
           "smoke.yaml"]

# A small valid space (a gunn-train config with distributions) with both stage forms:
# n-form (N = n*P) and N-form (P must divide N), over a choice and over a stepped range.
BASE = {
    "data": {"name": "digits"},
    "model": {
        "stem_channels": 8,
        "stages": [
            {"n": {"choice": [2, 4]}, "P": {"low": 2, "high": 4}, "K": {"low": 1, "high": 2}, "M": 1},
            {"N": {"choice": [12, 16, 18]}, "P": {"choice": [2, 3, 4, 6]}, "K": 1,
             "M": {"choice": [1, 2]}},
            {"N": {"low": 20, "high": 40, "step": 2}, "P": {"low": 3, "high": 7}, "K": 1, "M": 1},
        ],
    },
    "optim": {"lr": {"low": 0.01, "high": 0.3, "log": True},
              "weight_decay": {"choice": [0.0, 1.0e-4, 5.0e-4]}},
    "batch_size": {"choice": [32, 64]},
    "epochs": 4,
    "search": {"grace_period": 1, "reduction_factor": 2},
}

# The smallest gunn-train config: one fixed stage.
TINY = {"data": {"name": "digits"}, "model": {"stem_channels": 4, "stages": [{"N": 8, "P": 2}]},
        "epochs": 3, "search": {"grace_period": 1}}

# Every value of a gunn-train config can be searched: (path, distribution, its values).
SEARCHABLE = [
    ("optim.momentum", {"low": 0.8, "high": 0.95}, [0.8, 0.95]),
    ("optim.nesterov", {"choice": [True, False]}, [True, False]),
    ("optim.weight_decay", {"low": 1e-5, "high": 1e-3, "log": True}, [1e-5, 1e-3]),
    ("batch_size", {"choice": [32, 64, 128]}, [32, 64, 128]),
    ("eval_batch_size", {"choice": [100, 500]}, [100, 500]),
    ("epochs", {"low": 3, "high": 5}, [3, 4, 5]),
    ("seed", {"low": 0, "high": 3}, [0, 1, 2, 3]),
    ("schedule.kind", {"choice": ["step", "cosine", "constant"]}, ["step", "cosine", "constant"]),
    ("schedule.warmup_epochs", {"low": 0, "high": 2}, [0.0, 2.0]),
    ("schedule.gamma", {"low": 0.25, "high": 0.75, "step": 0.25}, [0.25, 0.5, 0.75]),
    ("data.cyclic_shift", {"choice": [False, True]}, [False, True]),
    ("data.flip", {"choice": [None, True, False]}, [None, True, False]),
    ("data.val_fraction", {"choice": [0.1, 0.2]}, [0.1, 0.2]),
    ("model.family", {"choice": ["gunn", "sunn"]}, ["gunn", "sunn"]),
    ("model.stem_channels", {"low": 4, "high": 16, "step": 4}, [4, 8, 12, 16]),
    ("model.head_channels", {"choice": [None, 16, 32]}, [None, 16, 32]),
    ("model.projection", {"choice": [True, False]}, [True, False]),
    ("model.gunn_mode", {"choice": ["recompute", "keep"]}, ["recompute", "keep"]),
    ("compile", {"choice": [False, "always"]}, [False, "always"]),
]


def _keys(path: str) -> list:
    return [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]


def patched(data: dict, *changes) -> dict:
    """A copy of ``data`` with (dotted path, value) changes; the value None deletes the key
    (use ``("path", ("null",))`` for an explicit null)."""
    d = copy.deepcopy(data)
    for path, value in changes:
        *parents, last = _keys(path)
        cur = d
        for k in parents:
            cur = cur.setdefault(k, {}) if isinstance(k, str) else cur[k]
        if value is None:
            del cur[last]
        else:
            cur[last] = None if value == ("null",) else value
    return d


def write(tmp_path, data, name: str = "space.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def one_line_error(fn, *args, **kwargs) -> ConfigError:
    """The ConfigError ``fn`` raises, after checking it is one line."""
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    return info.value


def parse(data: dict, source: str = "f.yaml") -> Space:
    return parse_space(data, source)


def new_study(seed: int = 0, sampler=None) -> optuna.Study:
    return optuna.create_study(direction="maximize",
                               sampler=sampler or optuna.samplers.RandomSampler(seed=seed))


def inside(space: Space, point: dict) -> bool:
    """Whether a point (values by dotted config path; stages by N, P, K, M) lies in the space:
    each searched key's distribution allows its value, every other key has the base's value, and
    each stage is a valid layer of its form (n-form: N = n*P with n allowed)."""
    base = space.base.model_dump(mode="python")
    for path, v in point.items():
        keys = path.split(".")
        if path.startswith("model.stages."):
            i, dim = int(keys[2]), keys[3]
            if i >= len(space.stage_forms):
                return False
            p = f"model.stages.{i}"
            if dim == "N":
                P = point.get(f"{p}.P", get_path(base, f"{p}.P"))
                if v % P:
                    return False
                if space.stage_forms[i] == "n":
                    if not dist.allows(space.dims[f"{p}.n"], v // P):
                        return False
                    continue
        if path in space.dims:
            if not dist.allows(space.dims[path], v):
                return False
        elif get_path(base, path) != v or type(get_path(base, path)) is not type(v):
            return False
    return True


def assert_valid_sample(space: Space, values: dict) -> None:
    """A sample is complete (N and P of every stage, every other dimension), typed, a valid
    network (N % P == 0), priced, and inside the space."""
    for i, form in enumerate(space.stage_forms):
        p = f"model.stages.{i}"
        N, P = values[f"{p}.N"], values[f"{p}.P"]
        assert type(N) is int and type(P) is int, values
        assert N % P == 0, (i, N, P)
        if form == "n":
            assert values[f"{p}.n"] * P == N
    for path in space.dims:
        assert path in values, (path, values)
    for key in ("cost.params", "cost.macs", "cost.activation_bytes"):
        assert type(values[key]) is int and values[key] > 0
    assert type(values["budget_ok"]) is bool
    point = {k: v for k, v in values.items() if not k.startswith("cost.") and k != "budget_ok"
             and not k.endswith(".n")}
    assert inside(space, point), values
