"""Networks and the registry: exact parameter counts of the paper's models."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from trainers.model.network import build_model
from trainers.model.spec import NetworkSpec, StageSpec, model_spec


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,classes,expected", [
    ("gunn15", 10, 1_585_746),
    ("gunn15", 100, 1_618_236),
    ("sunn15", 10, 1_585_746),
    ("sunn15", 100, 1_618_236),
    ("gunn24", 10, 29_534_106),
    ("gunn24", 100, 29_631_396),
    ("sunn24", 10, 29_534_106),
    ("gunn18", 1000, 28_909_736),
    ("sunn18", 1000, 28_909_736),
    ("wide_gunn18", 1000, 45_624_936),
])
def test_paper_parameter_counts(name, classes, expected):
    assert n_params(build_model(name, classes)) == expected


@pytest.mark.parametrize("name,classes,expected", [
    ("gunn15", 10, 1_585_746), ("gunn24", 100, 29_631_396),
    ("gunn18", 1000, 28_909_736), ("wide_sunn18", 1000, 45_624_936),
])
@pytest.mark.parametrize("transition", ["conv_pool", "pool_conv"])
def test_paper_parameter_counts_with_either_transition(name, classes, expected, transition):
    spec = replace(model_spec(name, classes), transition=transition)
    with torch.device("meta"):
        model = build_model(spec)
    assert n_params(model) == expected
    order = [type(m) for m in model.transitions[0]]
    pool_first = [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert order == (pool_first if transition == "pool_conv" else pool_first[1:] + pool_first[:1])


def test_default_transition_follows_the_authors_code_per_stem():
    # gunn-15.lua: conv, BN, ReLU, then pool; gunn-18.lua: pool, then conv, BN, ReLU.
    assert {model_spec(n).transition for n in ("gunn15", "sunn15", "gunn24", "sunn24")} == \
        {"conv_pool"}
    assert {model_spec(n).transition for n in ("gunn18", "sunn18", "wide_gunn18",
                                                "wide_sunn18")} == {"pool_conv"}
    assert tiny_spec(stem="cifar").transition == "conv_pool"
    assert tiny_spec(stem="imagenet").transition == "pool_conv"
    explicit = NetworkSpec(stages=((8, 2),), stem="imagenet", transition="conv_pool")
    assert explicit.transition == "conv_pool"
    assert NetworkSpec.from_dict(explicit.to_dict()) == explicit
    with pytest.raises(ValueError, match="transition"):
        NetworkSpec(stages=((8, 2),), transition="pool_pool")


def test_pool_conv_transition_pools_before_its_conv():
    torch.manual_seed(0)
    conv_pool = build_model(replace(tiny_spec(), transition="conv_pool")).eval()
    pool_conv = build_model(replace(tiny_spec(), transition="pool_conv")).eval()
    assert set(conv_pool.state_dict()) != set(pool_conv.state_dict())
    (c, bn, relu, pool), (pool2, c2, bn2, relu2) = conv_pool.transitions[0], pool_conv.transitions[0]
    c2.load_state_dict(c.state_dict())
    bn2.load_state_dict(bn.state_dict())
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(pool_conv.transitions[0](x), relu(bn(c(pool(x)))))
        assert torch.allclose(conv_pool.transitions[0](x), pool(relu(bn(c(x)))))
        assert pool_conv(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_projection_accounts_for_n_squared_plus_2n_per_layer():
    with_proj = model_spec("gunn15")
    without = NetworkSpec(**{**with_proj.to_dict(), "projection": False})
    diff = n_params(build_model(with_proj)) - n_params(build_model(without))
    assert diff == sum(s.N ** 2 + 2 * s.N for s in with_proj.stages)
    assert 240 ** 2 + 2 * 240 + 300 ** 2 + 600 + 360 ** 2 + 720 == diff


def tiny_spec(family="gunn", stem="cifar"):
    return NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 1, 2)), family=family, stem=stem,
                       stem_channels=4, head_channels=6 if stem == "cifar" else None,
                       projection=stem == "cifar", num_classes=5)


@pytest.mark.parametrize("stem,size", [("cifar", 16), ("imagenet", 64)])
def test_forward_shapes_and_sunn_conversion(stem, size):
    torch.manual_seed(0)
    sunn = build_model(tiny_spec("sunn", stem))
    gunn = build_model(tiny_spec("gunn", stem))
    gunn.load_state_dict(sunn.state_dict())  # the paper's conversion: same names and shapes
    x = torch.randn(2, 3, size, size)
    assert sunn(x).shape == gunn(x).shape == (2, 5)


def test_build_model_from_spec_dict_and_errors():
    spec = tiny_spec()
    m = build_model(spec.to_dict())
    assert m.spec == spec
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown model"):
        build_model("gunn99")
    with pytest.raises(ValueError, match="divisible"):
        NetworkSpec(stages=(StageSpec(10, 3),))


def test_init_follows_authors_code():
    m = build_model(tiny_spec())
    conv = m.stem[0]
    std = conv.weight.std().item()
    expected = (2.0 / (3 * 3 * conv.out_channels)) ** 0.5
    assert abs(std - expected) / expected < 0.25
    assert torch.all(m.fc.bias == 0)
