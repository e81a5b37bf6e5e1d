"""`model.residual: false`, the paper's NoRes ablation (Table 5): layers against a reference
written out from the units, Algorithm 1 without the residual add, parameter counts, config."""

import copy

import pytest
import torch

from trainers.config import ModelConfig, dump_config, load_config, parse_config
from trainers.model.cost import estimate
from trainers.model.gunn_layer import GUNNLayer
from trainers.model.network import build_model
from trainers.model.sunn_layer import SUNNLayer
from trainers.model.spec import NetworkSpec, model_spec
from tests.test_layers import max_diff  # outputs, gradients and BN buffers, compared

SPECS = [  # N, P, K, M, projection
    (12, 3, 2, 1, True),
    (12, 4, 2, 2, True),   # M = 2: the stacked unit replaces, not adds, too
    (8, 1, 2, 1, False),   # P = 1
    (12, 6, 1, 2, False),
]


def reference(layer, x, gradual: bool):
    """The NoRes layer written out from the units' own forward: segment i becomes
    unit_M(...unit_1(state)) [+ proj(state)], the state read as updated so far (GUNN) or the
    layer input (SUNN). Nothing of SegmentUpdate.forward or the layers' fast paths is used."""
    state = x
    for i, seg in enumerate(layer.segments):
        a, b = layer.bounds(i)
        inp = state if gradual else x
        s = seg.units[0](inp)
        if seg.proj is not None:
            s = s + seg.proj(inp)
        for unit in seg.units[1:]:
            s = unit(s)
        state = torch.cat([state[:, :a], s, state[:, b:]], 1)
    return state


def step(fn, layer, x):
    """Forward + backward of a fixed linear loss: output, input grad, param grads, buffers."""
    x = x.clone().requires_grad_()
    y = fn(layer, x)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    (y * w).sum().backward()
    return (y.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in layer.named_parameters()},
            {n: b.clone() for n, b in layer.named_buffers()})


def call(layer, x):
    return layer(x)


@pytest.mark.parametrize("mode", ["naive", "recompute", "keep"])
@pytest.mark.parametrize("spec", SPECS)
def test_gunn_nores_matches_the_reference_in_float64(spec, mode):
    """Algorithm 1 holds without the residual: it needs every segment updated once, not the
    add. Outputs, input gradient, every parameter gradient and BN statistics (moved once)."""
    torch.manual_seed(0)
    ref = GUNNLayer(*spec, mode="naive", residual=False).double().train()
    layer = copy.deepcopy(ref)
    layer.mode = mode
    x = torch.randn(3, spec[0], 5, 5, dtype=torch.float64)
    got = step(call, layer, x)
    want = step(lambda m, t: reference(m, t, gradual=True), ref, x)
    assert max_diff(got, want) < 1e-10


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_gunn_nores_gradcheck(mode):
    """Algorithm 1's backward without the add, against finite differences (float64): the input
    and the weights of the three kinds of path (the fused first conv, the projection, a stacked
    unit); a second backward through a kept graph as well."""
    torch.manual_seed(5)
    layer = GUNNLayer(6, 3, 1, 2, True, mode=mode, residual=False).double().train()
    x = torch.randn(2, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    names = ["segments.1.units.0.conv1.weight", "segments.1.proj.conv.weight",
             "segments.2.units.1.conv3.weight"]
    params = [layer.get_parameter(n) for n in names]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), atol=1e-6)
    y = layer(x)
    g1 = torch.autograd.grad(y.sum(), x, retain_graph=True)[0]
    g2 = torch.autograd.grad(y.sum(), x)[0]
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("spec", SPECS)
def test_sunn_nores_matches_the_reference_in_float64(spec, grouped):
    torch.manual_seed(1)
    ref = SUNNLayer(*spec, grouped=False, residual=False).double().train()
    layer = copy.deepcopy(ref)
    layer.grouped = grouped
    x = torch.randn(3, spec[0], 5, 5, dtype=torch.float64)
    got = step(call, layer, x)
    want = step(lambda m, t: reference(m, t, gradual=False), ref, x)
    assert max_diff(got, want) < 1e-10


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_gunn_nores_eval_and_no_grad_paths(mode):
    torch.manual_seed(2)
    ref = GUNNLayer(12, 4, 2, 2, True, mode="naive", residual=False).double()
    step(call, ref.train(), torch.randn(4, 12, 4, 4, dtype=torch.float64))  # move running stats
    ref.zero_grad(set_to_none=True)
    layer = copy.deepcopy(ref).eval()
    layer.mode = mode
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    with torch.no_grad():  # inference updates in place (`_segment_update`)
        assert (layer(x) - reference(ref.eval(), x, gradual=True)).abs().max().item() < 1e-12
    assert max_diff(step(call, layer, x), step(call, ref.eval(), x)) < 1e-10


def test_nores_changes_the_function_not_the_parameters():
    torch.manual_seed(3)
    res = GUNNLayer(12, 3, 2, 1, True, mode="recompute").double()
    nores = GUNNLayer(12, 3, 2, 1, True, mode="recompute", residual=False).double()
    nores.load_state_dict(res.state_dict())  # same modules, same names
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    assert not torch.allclose(res(x), nores(x))
    # With P = 1 and no projection, NoRes is the residual layer minus its input.
    one_res = GUNNLayer(8, 1, 2, 1, False).double().eval()
    one_nores = GUNNLayer(8, 1, 2, 1, False, residual=False).double().eval()
    one_nores.load_state_dict(one_res.state_dict())
    with torch.no_grad():
        assert torch.allclose(one_res(x[:, :8]) - x[:, :8], one_nores(x[:, :8]), atol=1e-12)
    assert "residual=False" in repr(nores) and "residual" not in repr(res)


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_gunn_nores_under_bf16_autocast_and_channels_last(mode):
    """The trainer's CUDA path (amp + channels_last), run on the CPU: within bf16 rounding of
    the float32 reference, as close as plain autograd gets under the same autocast."""
    torch.manual_seed(4)
    base = GUNNLayer(16, 4, 2, 1, True, mode="naive", residual=False).train()
    x = torch.randn(4, 16, 6, 6)

    def grads(m, autocast):
        layer = copy.deepcopy(base)
        layer.mode = m
        xi = x
        if autocast:
            layer = layer.to(memory_format=torch.channels_last)
            xi = x.contiguous(memory_format=torch.channels_last)
        xi = xi.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(xi)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return torch.cat([xi.grad.flatten()] + [p.grad.float().flatten() for p in layer.parameters()])

    exact = grads("naive", False)
    err = {m: ((grads(m, True) - exact).norm() / exact.norm()).item() for m in (mode, "naive")}
    assert err[mode] <= 1.25 * err["naive"] + 0.01 and err[mode] < 0.3, err


@pytest.mark.parametrize("name", ["gunn15", "sunn15"])
def test_parameter_counts_and_init_are_unchanged(name):
    spec = model_spec(name, 10)
    nores = NetworkSpec.from_dict({**spec.to_dict(), "residual": False})
    torch.manual_seed(0)
    a = build_model(spec).state_dict()
    torch.manual_seed(0)
    b = build_model(nores).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(t.numel() for k, t in b.items() if "running" not in k and "num_batches" not in k) \
        == estimate(spec).params == estimate(nores).params
    assert estimate(spec) == estimate(nores)  # MACs and activation memory too
    if name == "gunn15":
        assert estimate(nores).params == 1_585_746  # the paper's count


def test_network_nores_forward_backward():
    spec = NetworkSpec(stages=((8, 2, 1, 1), (12, 3, 1, 2)), stem_channels=8, residual=False)
    for family in ("gunn", "sunn"):
        net = build_model(spec.with_family(family))
        assert all(not layer.residual for layer in net.stages)
        out = net(torch.randn(2, 3, 16, 16))
        out.sum().backward()
        assert out.shape == (2, 10)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_config_residual_reaches_the_spec(tmp_path):
    m = ModelConfig(stages=[{"N": 8, "P": 2}], residual=False)
    assert m.network_spec(10).residual is False
    assert ModelConfig(stages=[{"N": 8, "P": 2}]).network_spec(10).residual is True  # default
    named = ModelConfig(name="gunn15", residual=False).network_spec(100)
    assert named.residual is False and named.num_classes == 100 and named.stages[0].N == 240
    assert ModelConfig.from_spec(m.network_spec(10)).residual is False
    cfg = parse_config({"model": {"name": "sunn15", "residual": False}})
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").model.residual is False
    with pytest.raises(Exception, match="residual"):
        parse_config({"model": {"name": "gunn15", "residual": "maybe"}})
    with pytest.raises(ValueError, match="residual"):
        NetworkSpec(stages=((8, 2),), residual="no")


def test_residual_is_searchable_in_a_space():
    from gunn_search.space import parse_space, trial_config
    from gunn_search.run.summary import summarize

    space = parse_space({"model": {"stages": [{"N": 8, "P": 2}], "residual": {"choice": [True, False]}},
                         "epochs": 2, "search": {"grace_period": 1}}, "nores-space")
    assert "model.residual" in space.searched()
    assert trial_config(space, {"model.residual": False}).model.residual is False
    fixed = parse_space({"model": {"stages": [{"N": 8, "P": 2}], "residual": False}, "epochs": 2,
                         "search": {"grace_period": 1}}, "fixed")
    assert "residual False (NoRes)" in summarize(fixed)
