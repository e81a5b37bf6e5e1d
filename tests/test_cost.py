"""The analytic cost model (`trainers.model.cost`) against models that are actually built."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainers.model.cost import Cost, estimate, layer_cost
from trainers.model.gunn_layer import GUNNLayer
from trainers.model.network import build_model
from trainers.model.sunn_layer import SUNNLayer
from trainers.model.spec import NetworkSpec, StageSpec, model_spec


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- params -------------------------------------------------------------------------------------

@pytest.mark.parametrize("transition", ["conv_pool", "pool_conv"])
@pytest.mark.parametrize("name,num_classes,expected", [
    ("gunn15", 10, 1_585_746),
    ("gunn15", 100, 1_618_236),
    ("gunn24", 10, 29_534_106),
    ("gunn18", 1000, 28_909_736),
    ("wide_gunn18", 1000, 45_624_936),
])
def test_params_of_paper_models(name, num_classes, expected, transition):
    # The order of pooling and 1x1 conv in a transition moves no parameter.
    spec = replace(model_spec(name, num_classes), transition=transition)
    size = 224 if spec.stem == "imagenet" else 32
    assert estimate(spec, size).params == expected
    assert estimate(spec.with_family("sunn"), size).params == expected
    with torch.device("meta"):  # same parameter shapes, no memory, no init cost
        model = build_model(spec)
    assert n_params(model) == expected


def random_spec(rng: random.Random) -> NetworkSpec:
    stages = []
    for _ in range(rng.randint(1, 3)):
        P = rng.randint(1, 4)
        stages.append(StageSpec(N=P * rng.randint(1, 5), P=P, K=rng.randint(1, 3),
                                M=rng.randint(1, 3)))
    return NetworkSpec(
        stages=tuple(stages), family=rng.choice(["gunn", "sunn"]),
        stem=rng.choice(["cifar", "imagenet"]), stem_channels=rng.randint(1, 9),
        head_channels=rng.choice([None, rng.randint(1, 9)]), projection=rng.random() < 0.5,
        num_classes=rng.randint(2, 12), in_channels=rng.choice([1, 3]),
        transition=rng.choice(["conv_pool", "pool_conv"]))


@pytest.mark.parametrize("seed", range(12))
def test_params_of_random_specs(seed):
    spec = random_spec(random.Random(seed))
    assert estimate(spec).params == n_params(build_model(spec))


def test_layer_cost_params_match_layers():
    for N, P, K, M, proj in [(12, 3, 2, 1, True), (12, 4, 1, 2, False), (10, 5, 3, 3, True)]:
        want = n_params(GUNNLayer(N, P, K, M, proj))
        assert n_params(SUNNLayer(N, P, K, M, proj)) == want
        assert layer_cost(N, P, K, M, proj, hw=8).params == want


# --- MACs ---------------------------------------------------------------------------------------

def hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    """conv: out_elements * in/groups * kh * kw; linear: in * out; per image."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * mod.in_channels // mod.groups * kh * kw
        else:
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total // x.shape[0]


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Op-level count (also sees SUNN's grouped F.conv2d and keep mode's fused first conv)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() // 2 // x.shape[0]


TINY_SPECS = [
    NetworkSpec(stages=((12, 3, 2, 1), (16, 4, 1, 2)), stem_channels=8, head_channels=20,
                projection=True, num_classes=7),
    NetworkSpec(stages=((12, 3, 2, 2), (16, 2, 2, 1), (8, 4, 3, 1)), stem_channels=8,
                head_channels=None, projection=False),
    NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 2, 2)), stem="imagenet", stem_channels=8,
                head_channels=None, projection=True),
    NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 2, 2)), stem="imagenet", stem_channels=8,
                head_channels=10, projection=False, num_classes=5),
    # The ImageNet specs above pool first (their stem's default); these swap the orders.
    NetworkSpec(stages=((8, 2, 2, 1), (12, 3, 2, 2), (8, 4, 1, 1)), stem="imagenet",
                stem_channels=8, head_channels=None, projection=True, transition="conv_pool"),
    NetworkSpec(stages=((12, 3, 2, 1), (16, 4, 1, 2), (8, 2, 2, 1)), stem_channels=8,
                head_channels=20, projection=True, num_classes=7, transition="pool_conv"),
]


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_macs_match_forward_hooks_for_gunn_and_sunn(spec):
    size = 16 if spec.stem == "cifar" else 40  # 40 -> 10 after the ImageNet stem
    x = torch.randn(2, spec.in_channels, size, size)
    gunn, sunn = spec.with_family("gunn"), spec.with_family("sunn")
    want = estimate(gunn, size).macs
    assert estimate(sunn, size).macs == want
    for mode in ("recompute", "keep", "naive"):
        assert estimate(gunn, size, gunn_mode=mode).macs == want

    model = build_model(gunn, gunn_mode="naive").eval()
    assert hook_macs(model, x) == want
    for mode in ("naive", "recompute", "keep"):
        model = build_model(gunn, gunn_mode=mode).eval()
        assert flop_counter_macs(model, x) == want, mode

    model = build_model(sunn).eval()
    assert flop_counter_macs(model, x) == want  # grouped SUNN, counted at op level
    for layer in model.stages:
        layer.grouped = False  # run the units as modules so that the hooks see them
    assert hook_macs(model, x) == want


def test_macs_of_odd_image_sizes():
    spec = TINY_SPECS[2]
    for size in (33, 37, 50):
        x = torch.randn(2, spec.in_channels, size, size)
        model = build_model(spec, gunn_mode="naive").eval()
        assert hook_macs(model, x) == estimate(spec, size).macs


@pytest.mark.parametrize("name,transition,macs", [
    # GUNN-18 as the paper's text orders its transitions, conv then pool: 9.72 GMACs ...
    ("gunn18", "conv_pool", 9_722_759_552),
    # ... and as the authors' gunn-18.lua does, pool then conv (the default): 7.75 GMACs.
    ("gunn18", "pool_conv", 7_747_079_552),
    ("wide_gunn18", "conv_pool", 33_052_090_752),
    ("wide_gunn18", "pool_conv", 26_066_650_752),
])
def test_imagenet_macs_of_both_transitions(name, transition, macs):
    spec = replace(model_spec(name), transition=transition)
    assert estimate(spec, 224).macs == macs
    assert model_spec(name).transition == "pool_conv"
    if name == "gunn18":  # counted on the real network, shapes only (meta tensors)
        with torch.device("meta"):
            model = build_model(spec, gunn_mode="naive").eval()
            x = torch.empty(1, 3, 224, 224)
        assert hook_macs(model, x) == macs


def test_gunn15_macs_sane():
    # Hand count of the paper's GUNN-15 on 32x32 is about 0.56 GMACs (= 1.1 GFLOPs).
    macs = estimate(model_spec("gunn15"), 32).macs
    assert 0.5e9 < macs < 0.6e9
    assert macs == estimate(model_spec("sunn15"), 32).macs


# --- activation bytes ---------------------------------------------------------------------------

def saved_storage_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages that pass through saved_tensors_hooks in one forward."""
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def measured_per_image(spec: NetworkSpec, mode: str, size: int) -> int:
    """Saved bytes per image: difference of batch 4 and batch 2, so that parameters, buffers
    and per-channel BN statistics (batch-independent) drop out."""
    torch.manual_seed(0)
    model = build_model(spec, gunn_mode=mode).train()
    b2, b4 = (saved_storage_bytes(model, torch.randn(b, spec.in_channels, size, size))
              for b in (2, 4))
    return (b4 - b2) // 2


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_activation_bytes_match_saved_tensor_hooks(spec):
    size = 16
    for mode in ("recompute", "keep", "naive"):
        gunn = spec.with_family("gunn")
        assert estimate(gunn, size, mode).activation_bytes == measured_per_image(gunn, mode, size)
    sunn = spec.with_family("sunn")
    assert estimate(sunn, size).activation_bytes == measured_per_image(sunn, "recompute", size)


@pytest.mark.parametrize("name", ["gunn15", "gunn24", "gunn18", "wide_gunn18"])
def test_recompute_saves_less_than_sunn_keep_and_naive(name):
    spec = model_spec(name)
    size = 224 if spec.stem == "imagenet" else 32
    rec = estimate(spec, size, "recompute").activation_bytes
    keep = estimate(spec, size, "keep").activation_bytes
    naive = estimate(spec, size, "naive").activation_bytes
    sunn = estimate(spec.with_family("sunn"), size).activation_bytes
    assert rec < 0.6 * sunn
    assert sunn <= keep <= naive
    assert keep <= sunn * 1.01  # keep costs about what SUNN does


def test_activation_bytes_scale_with_image_area():
    for name in ("gunn15", "sunn15"):
        spec = model_spec(name)
        for mode in ("recompute", "keep", "naive"):
            a32 = estimate(spec, 32, mode).activation_bytes
            a64 = estimate(spec, 64, mode).activation_bytes
            # Everything scales with area except the fc input (a few hundred bytes).
            fc_in = 4 * spec.head_channels
            assert a64 - fc_in == 4 * (a32 - fc_in)
    spec = model_spec("gunn18")
    a224, a448 = (estimate(spec, s).activation_bytes for s in (224, 448))
    assert a448 - 4 * 2000 == 4 * (a224 - 4 * 2000)


def test_layer_cost_modes():
    N, P, K, M, hw = 240, 20, 2, 1, 32
    c = {m: layer_cost(N, P, K, M, True, hw, mode=m) for m in ("sunn", "recompute", "keep", "naive")}
    assert len({x.params for x in c.values()}) == 1
    assert len({x.macs for x in c.values()}) == 1
    assert c["recompute"].activation_bytes == N * hw * hw * 4  # just the output y
    assert c["keep"].activation_bytes == c["sunn"].activation_bytes + N * hw * hw * 4
    assert c["naive"].activation_bytes == c["sunn"].activation_bytes + (P - 1) * N * hw * hw * 4
    assert c["recompute"].activation_bytes < c["sunn"].activation_bytes
    # layer_cost at half the resolution is a quarter of the MACs and activations
    half = layer_cost(N, P, K, M, True, hw // 2, mode="sunn")
    assert 4 * half.macs == c["sunn"].macs
    assert 4 * half.activation_bytes == c["sunn"].activation_bytes


def test_cost_add_and_errors():
    a = Cost(1, 2, 3)
    assert a + a == Cost(2, 4, 6)
    with pytest.raises(ValueError):
        estimate(model_spec("gunn15"), gunn_mode="bogus")
    with pytest.raises(ValueError):
        layer_cost(10, 3, 2, 1, False, 8)
    with pytest.raises(ValueError):
        layer_cost(12, 3, 2, 1, False, 8, mode="bogus")
    # names and dicts are accepted too
    assert estimate("gunn15") == estimate(model_spec("gunn15"))
    assert estimate(model_spec("gunn15").to_dict()) == estimate(model_spec("gunn15"))
