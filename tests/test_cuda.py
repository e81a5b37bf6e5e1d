"""What only a GPU can check: Algorithm 1 in CUDA kernels, the trainer's CUDA defaults (bf16
autocast, channels_last, torch.compile), its peak memory from torch.cuda.max_memory_allocated,
and trials packed on one GPU. Every test here is marked `cuda` and skips without CUDA;
`pytest -m cuda` runs them (benchmarks/gpu_check.py does, with the GPU numbers). Their CPU
counterparts (the same paths forced on with `always`) are in test_layers, test_loop,
test_train_cli and test_trainable.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainers.config import parse_config
from trainers.model.gunn_layer import GUNNLayer
from trainers.model.sunn_layer import SUNNLayer
from trainers.loop import STATUS_COMPLETED, load_data, train

pytestmark = pytest.mark.cuda
DEVICE = "cuda"
TINY = [{"N": 8, "P": 2, "K": 2, "M": 1}, {"N": 12, "P": 3, "K": 1, "M": 1}]


def make_cfg(**over):
    d = {"model": {"stages": TINY, "stem_channels": 8, "head_channels": None, "gunn_mode": "recompute"},
         "data": {"name": "synthetic", "synthetic_train_size": 256, "synthetic_test_size": 32},
         "optim": {"lr": 0.05}, "epochs": 1, "batch_size": 32, "device": DEVICE,
         "out_dir": None, "seed": 0}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return parse_config(d)


def layer_step(layer, x, w, autocast=False):
    """Forward (under bf16 autocast if asked) and backward outside it, as the trainer does."""
    x = x.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    (y.float() * w).sum().backward()
    return y.detach(), [x.grad] + [p.grad for p in layer.parameters()], \
        {n: b.clone() for n, b in layer.named_buffers()}


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_algorithm1_matches_naive_on_cuda_in_float64(mode):
    torch.manual_seed(0)
    ref = GUNNLayer(16, 4, 2, 2, True, mode="naive").double().to(DEVICE)
    layer = copy.deepcopy(ref)
    layer.mode = mode
    x = torch.randn(3, 16, 6, 6, dtype=torch.float64, device=DEVICE)
    w = torch.randn_like(x)
    (ya, ga, ba), (yb, gb, bb) = layer_step(layer, x, w), layer_step(ref, x, w)
    assert (ya - yb).abs().max() < 1e-10
    assert max((a - b).abs().max().item() for a, b in zip(ga, gb)) < 1e-10
    assert all(torch.allclose(ba[k].double(), bb[k].double(), atol=1e-10) for k in ba)


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_algorithm1_bf16_autocast_channels_last_on_cuda(mode):
    # As tests/test_layers.py::test_channels_last_and_autocast does on the CPU: the gradients
    # under bf16 autocast are as close to float32's as the naive reference's are.
    torch.manual_seed(6)
    ref = GUNNLayer(24, 4, 2, 2, True, mode="naive").to(DEVICE)
    x = torch.randn(8, 24, 8, 8, device=DEVICE).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 24, 8, 8, device=DEVICE)

    def flat_grads(m, autocast):
        lay = copy.deepcopy(ref).to(memory_format=torch.channels_last)
        lay.mode = m
        _, grads, bufs = layer_step(lay, x, w, autocast)
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert {b.item() for n, b in bufs.items() if n.endswith("num_batches_tracked")} == {1}
        return torch.cat([g.float().flatten() for g in grads])

    exact = flat_grads("naive", False)
    err = {m: ((flat_grads(m, True) - exact).norm() / exact.norm()).item() for m in (mode, "naive")}
    assert 0 < err[mode] <= 1.25 * err["naive"] + 0.01 and err[mode] < 0.3, err


def test_gunn_recompute_needs_less_memory_than_sunn_on_cuda():
    """Algorithm 1's point, measured as benchmarks/layer_memory.py does on CUDA: GUNN-15's first
    layer at batch 64, float32, peak of one step above what was allocated before it."""
    def step_peak(layer):
        layer = layer.to(DEVICE).train()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(64, 240, 32, 32, generator=g).to(DEVICE).requires_grad_()
        r = torch.randn(64, 240, 32, 32, generator=g).to(DEVICE)
        layer(x).backward(r)  # warm-up: cuDNN workspaces
        x.grad = None
        layer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        layer(x).backward(r)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    torch.manual_seed(0)
    sunn = step_peak(SUNNLayer(240, 20, 2, 1, True))
    recompute = step_peak(GUNNLayer(240, 20, 2, 1, True, mode="recompute"))
    keep = step_peak(GUNNLayer(240, 20, 2, 1, True, mode="keep"))
    naive = step_peak(GUNNLayer(240, 20, 2, 1, True, mode="naive"))
    print(f"layer step peak MB: SUNN {sunn / 1e6:.0f}, GUNN recompute {recompute / 1e6:.0f}, "
          f"keep {keep / 1e6:.0f}, naive {naive / 1e6:.0f}")
    assert recompute < 0.5 * sunn  # 0.16x on the CPU (benchmarks/RESULTS.md)
    assert keep < 1.25 * sunn < naive


def _probe(model_seen):
    def hook(epoch, step, model):
        if not getattr(model, "_probed", False):
            model._probed = True
            model.register_forward_hook(lambda m, args, out: model_seen.append({
                "training": m.training, "autocast": torch.is_autocast_enabled("cuda"),
                "channels_last": args[0].is_contiguous(memory_format=torch.channels_last),
                "out": out.dtype, "device": out.device.type}))
    return hook


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_cuda_training_uses_bf16_channels_last_and_reports_cuda_peak_memory(mode):
    """The defaults on CUDA (amp: true, channels_last: true): a bf16 channels_last training
    epoch, an eval in the same settings, and a peak memory that is torch.cuda's, not the
    process's RSS."""
    cfg = make_cfg(model={"gunn_mode": mode})
    data = load_data(cfg.data, DEVICE)
    seen: list[dict] = []
    torch.cuda.synchronize()
    result = train(cfg, data=data, log=lambda m: None, on_step=_probe(seen))
    assert result.status == STATUS_COMPLETED
    m = result.final
    assert math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"])
    assert {s["training"] for s in seen} == {True, False}
    assert all(s["autocast"] and s["channels_last"] and s["out"] == torch.bfloat16
               and s["device"] == "cuda" for s in seen), seen
    on_device = sum(t.nbytes for t in (data.train_x, data.train_y, data.eval_x, data.eval_y))
    # Reset at the epoch's start, read at its end: more than the data that sat on the GPU all
    # along, at most the process's CUDA peak (the CPU's figure, the process's RSS, is GBs).
    assert on_device < m["peak_memory_bytes"] <= torch.cuda.max_memory_allocated()


def test_cuda_training_with_amp_and_channels_last_off_is_float32():
    seen: list[dict] = []
    result = train(make_cfg(amp=False, channels_last=False), log=lambda m: None,
                   on_step=_probe(seen))
    assert result.status == STATUS_COMPLETED
    assert all(not s["autocast"] and not s["channels_last"] and s["out"] == torch.float32
               for s in seen), seen


def test_cuda_compile_trains_like_eager(tmp_path):
    """`compile: true` compiles on CUDA (inductor + triton) and trains like eager."""
    from torch._dynamo.utils import counters

    from trainers.checkpoint import load_checkpoint

    over = dict(model={"stages": [{"N": 8, "P": 2, "K": 1, "M": 1}]},
                data={"synthetic_train_size": 96, "synthetic_test_size": 16})
    eager = train(make_cfg(out_dir=str(tmp_path / "eager"), **over), log=lambda m: None)
    graphs = counters["stats"]["unique_graphs"]
    try:
        compiled = train(make_cfg(out_dir=str(tmp_path / "compiled"), compile=True, **over),
                         log=lambda m: None)
        assert counters["stats"]["unique_graphs"] > graphs
    finally:
        torch._dynamo.reset()
    assert compiled.status == eager.status == STATUS_COMPLETED
    assert compiled.final["train_loss"] == pytest.approx(eager.final["train_loss"], rel=0.02)
    wa = load_checkpoint(tmp_path / "compiled")["model"]
    wb = load_checkpoint(tmp_path / "eager")["model"]
    for k, v in wb.items():
        if v.is_floating_point():
            assert torch.allclose(wa[k], v, rtol=0.02, atol=2e-3), k


PACKED_SPACE = """\
name: packed
model: {stem_channels: 8, head_channels: null, stages: [{N: 16, P: 4, K: 1, M: 1}]}
data: {name: synthetic, synthetic_train_size: 512, synthetic_test_size: 64}
optim: {lr: {low: 0.02, high: 0.2, log: true}}
epochs: 2
batch_size: 64
search: {num_samples: 4, max_concurrent: 4, grace_period: 2}
resources: {cpus_per_trial: 1, gpus_per_trial: 0.25}
"""


@pytest.mark.slow
def test_four_trials_packed_on_one_gpu(tmp_path):
    """--gpus-per-trial 0.25: four trials share one GPU at the same time, each on CUDA."""
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    (tmp_path / "space.yaml").write_text(PACKED_SPACE)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    res = subprocess.run([str(Path(sys.executable).parent / "gunn-search"), "--space",
                          "space.yaml", "--gpus-per-trial", "0.25", "--num-samples", "4",
                          "--storage", str(tmp_path / "runs")], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("packed")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "trial"]
    parent = next(r for r in runs if r.data.tags.get(tr.ROLE_TAG) == "search")
    assert float(parent.data.params["resources.gpus_per_trial"]) == 0.25
    assert len(trials) == 4
    assert all(r.data.tags[tr.STATUS_TAG] == "completed" for r in trials), \
        [r.data.tags.get(tr.STATUS_TAG) for r in trials]
    # A trial's peak memory is torch.cuda's (tens of MB here), not its process's RSS (GBs with
    # CUDA loaded): each trial trained on the GPU.
    assert all(0 < r.data.metrics["peak_memory_bytes"] < 300e6 for r in trials)
    # They ran at the same time: some moment lies inside at least two trials' runs.
    spans = [(r.info.start_time, r.info.end_time) for r in trials]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap >= 2, spans
