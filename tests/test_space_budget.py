"""gunn_search.space.budget: prices of sampled configs and whether a budget can be met."""

from __future__ import annotations

import itertools

import pytest

from gunn_search.space import budget as bd
from gunn_search.space import distributions as dist
from gunn_search.space import example_configs, load_space, trial_config, with_overrides
from gunn_search.space.budget import config_cost, min_costs
from gunn_search.space.sample import sample
from tests.space_helpers import BASE, TINY, new_study, one_line_error, parse, patched
from trainers.model.cost import estimate
from trainers.model.spec import gunn15_spec, gunn24_spec

# Small enough to enumerate, with every key the cheapest point depends on searched.
SMALL = {
    "data": {"name": {"choice": ["cifar100", "cifar10"]}},
    "model": {
        "family": {"choice": ["gunn", "sunn"]},
        "stem_channels": {"choice": [8, 4]},
        "head_channels": {"choice": [64, None, 4]},  # no head is cheaper than 64, dearer than 4
        "projection": {"choice": [True, False]},
        "stages": [
            {"n": {"choice": [2, 3]}, "P": {"low": 2, "high": 3}, "K": {"choice": [1, 2]}, "M": 1},
            {"N": {"choice": [12, 18]}, "P": {"choice": [2, 3, 6]}, "K": 1, "M": {"choice": [1, 2]}},
        ],
    },
    "epochs": 3,
    "search": {"grace_period": 1},
}


def all_points(space):
    """Every configuration of a space without float ranges, as sample values."""
    axes = []
    for i, form in enumerate(space.stage_forms):
        p = f"model.stages.{i}"
        Ps = dist.values(space.dims[f"{p}.P"])
        if form == "n":
            pairs = [(n * P, P) for n in dist.values(space.dims[f"{p}.n"]) for P in Ps]
        else:
            pairs = [(N, P) for N in dist.values(space.dims[f"{p}.N"]) for P in Ps if N % P == 0]
        axes.append([{f"{p}.N": N, f"{p}.P": P} for N, P in pairs])
    for path, d in space.dims.items():
        if not path.endswith((".n", ".N", ".P")):
            axes.append([{path: v} for v in dist.values(d)])
    for combo in itertools.product(*axes):
        yield {k: v for part in combo for k, v in part.items()}


def brute_force_min(space):
    costs = [config_cost(trial_config(space, v)) for v in all_points(space)]
    return min(c.params for c in costs), min(c.macs for c in costs)


def test_min_costs_matches_brute_force():
    """The pruned exact search for the cheapest configuration agrees with full enumeration."""
    space = parse(SMALL)
    lo = min_costs(space)
    assert (lo.params, lo.macs) == brute_force_min(space)
    assert lo.feasible and lo.exact


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_min_costs_matches_brute_force_with_a_transition_choice(stem):
    """Pooling before the transition's conv is cheaper in MACs, whatever the stem's default."""
    small = patched(SMALL, ("model.stem", stem),
                    ("model.transition", {"choice": ["conv_pool", "pool_conv"]}))
    lo = min_costs(parse(small))
    assert (lo.params, lo.macs) == brute_force_min(parse(small))
    for fixed in ("conv_pool", "pool_conv"):
        space = parse(patched(small, ("model.transition", fixed)))
        assert (min_costs(space).params, min_costs(space).macs) == brute_force_min(space)
    cifar_default = min_costs(parse(patched(SMALL, ("model.stem", stem))))
    pool_first = min_costs(parse(patched(small, ("model.transition", "pool_conv"))))
    assert pool_first.params == cifar_default.params and pool_first.macs == lo.macs
    assert (pool_first.macs < cifar_default.macs) == (stem == "cifar")
    named = parse(patched(TINY, ("model", {"name": "gunn18", "transition": "conv_pool"})))
    assert min_costs(named).macs == config_cost(named.base).macs
    assert named.base.model.network_spec(10).transition == "conv_pool"


def test_min_costs_matches_brute_force_on_the_base_space():
    space = parse(patched(BASE, ("optim.lr", 0.1), ("model.stages.2.N", {"choice": [20, 30, 36]})))
    lo = min_costs(space)
    assert (lo.params, lo.macs) == brute_force_min(space)


@pytest.mark.parametrize("change", [
    ("model.head_channels", {"choice": [360, None]}),   # no head is the cheaper point here
    ("data.name", {"choice": ["cifar100", "cifar10"]}),  # fewer classes are cheaper
    ("data.synthetic_num_classes", {"choice": [100, 10]}),
])
def test_a_budget_that_only_the_cheapest_point_meets_is_feasible(change):
    data = patched(TINY, ("data.name", "synthetic"), ("model.stages", [{"N": 360, "P": 30}]), change)
    space = parse(data)
    cheapest = min(c.params for c in (config_cost(trial_config(space, v)) for v in all_points(space)))
    assert min_costs(space).params == cheapest
    parse(patched(data, ("budget", {"max_params": cheapest})))
    err = one_line_error(parse, patched(data, ("budget", {"max_params": cheapest - 1})))
    assert err.field == "budget.max_params"
    assert f"the smallest has {cheapest:,} params > {cheapest - 1:,}" in str(err)


def test_infeasible_budgets_name_the_key():
    space = parse(BASE)
    lo = min_costs(space)
    parse(patched(BASE, ("budget", {"max_params": lo.params, "max_macs": lo.macs})))
    err = one_line_error(parse, patched(BASE, ("budget", {"max_params": lo.params - 1})))
    assert str(err) == (f"f.yaml: budget.max_params: no configuration in the space fits: the "
                        f"smallest has {lo.params:,} params > {lo.params - 1:,}")
    err = one_line_error(parse, patched(BASE, ("budget", {"max_macs": lo.macs - 1})))
    assert str(err).startswith("f.yaml: budget.max_macs: no configuration in the space fits")


def test_budget_error_when_limits_fit_alone_but_not_together(monkeypatch):
    # With this cost model the all-minimum point is cheapest in params and MACs alike, so no real
    # space reaches this branch; check its message with a stand-in cost search.
    monkeypatch.setattr(bd, "min_costs", lambda space: bd.MinCosts(10, 10, False, True))
    err = one_line_error(parse, patched(BASE, ("budget", {"max_params": 100, "max_macs": 100})))
    assert err.field == "budget"
    assert str(err) == ("f.yaml: budget: no configuration in the space has both params <= 100 "
                        "and MACs <= 100")


def test_a_space_too_large_to_search_is_not_rejected(monkeypatch):
    exact = min_costs(parse(BASE))
    monkeypatch.setattr(bd, "MAX_BUDGET_CANDIDATES", 0)
    tight = patched(BASE, ("budget", {"max_params": 1000}))
    space = parse(tight)  # not proven infeasible: loads, and the sampler flags every point
    lo = min_costs(space)
    assert not lo.exact and lo.feasible
    assert lo.params >= exact.params and lo.macs >= exact.macs
    assert sample(new_study().ask(), space)["budget_ok"] is False


def test_budget_ok_agrees_with_cost_model():
    space = load_space("cifar_gunn15")
    tight = with_overrides(space, {"budget.max_params": 1_500_000, "budget.max_macs": 600_000_000})
    seen = set()
    for v in example_configs(tight, n=40, seed=3):
        cost = config_cost(trial_config(tight, v))
        spec = trial_config(tight, v).model.network_spec(10)
        assert cost == estimate(spec, image_size=32)
        assert (v["cost.params"], v["cost.macs"], v["cost.activation_bytes"]) == (
            cost.params, cost.macs, cost.activation_bytes)
        ok = cost.params <= 1_500_000 and cost.macs <= 600_000_000
        assert v["budget_ok"] is ok
        seen.add(ok)
    assert seen == {True, False}
    assert all(v["budget_ok"] for v in example_configs(load_space("smoke"), n=10))


def test_config_cost_is_the_built_network():
    from trainers.model.network import build_model

    space = load_space("smoke")
    for v in example_configs(space, n=3, seed=1):
        cfg = trial_config(space, v)
        model = build_model(cfg.model.network_spec(10))
        assert sum(p.numel() for p in model.parameters()) == v["cost.params"]


def test_registered_models():
    space = parse(patched(TINY, ("model", {"name": {"choice": ["gunn24", "gunn15"]}})))
    assert min_costs(space).params == estimate(gunn15_spec()).params
    assert parse(patched(TINY, ("model", {"name": "gunn15"}), ("data.name", "cifar100"))).base \
        .model.name == "gunn15"
    err = one_line_error(parse, patched(TINY, ("model", {"name": "gunn15"}),
                                        ("budget", {"max_params": 1_000_000})))
    assert err.field == "budget.max_params"


def test_the_paper_models_fit_their_spaces_budgets():
    assert estimate(gunn15_spec()).params <= load_space("cifar_gunn15").budget.max_params
    assert estimate(gunn15_spec(100)).params <= load_space("cifar100_gunn15").budget.max_params
    assert estimate(gunn24_spec()).params <= load_space("cifar_gunn24").budget.max_params
    for name in ("cifar_gunn15", "cifar_gunn24", "cifar100_gunn15", "gunn_vs_sunn", "smoke"):
        lo = min_costs(load_space(name))
        assert lo.feasible and lo.exact, name
