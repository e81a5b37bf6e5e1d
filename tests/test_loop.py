"""The training loop: exact resume, callbacks and metrics, non-finite loss, learning, devices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainers.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from trainers.config import ConfigError, parse_config
from trainers.loop import (STATUS_COMPLETED, STATUS_NONFINITE, STATUS_STOPPED, TrainResult,
                           train)
from trainers.model.network import build_model

TINY = [{"N": 8, "P": 2, "K": 2, "M": 1}, {"N": 12, "P": 3, "K": 1, "M": 1}]
METRIC_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
               "images_per_s", "peak_memory_bytes", "num_threads"}  # num_threads: on the CPU


@pytest.fixture(autouse=True)
def _restore_threads():
    # train() sets torch's thread count from the config; leave the process as we found it.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def make_cfg(out_dir=None, *, stages=TINY, stem=8, family="gunn", mode="recompute", train_size=256,
             data="synthetic", **over):
    d = {
        "model": {"stages": stages, "stem_channels": stem, "head_channels": None, "projection": True,
                  "family": family, "gunn_mode": mode},
        "data": {"name": data, "synthetic_train_size": train_size, "synthetic_test_size": 16},
        "optim": {"lr": 0.05, "weight_decay": 5e-4},
        "schedule": {"kind": "step"},
        "epochs": 2, "batch_size": 32, "eval_batch_size": 256, "device": "cpu", "num_threads": 1,
        "out_dir": str(out_dir) if out_dir is not None else None, "seed": 0,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return parse_config(d)


def quiet(msg: str) -> None:
    pass


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_is_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    straight = train(make_cfg(a, epochs=4, train_size=160), log=quiet)
    assert straight.status == STATUS_COMPLETED and straight.epochs_completed == 4

    first = train(make_cfg(b, epochs=4, train_size=160), on_epoch=lambda m, ckpt: m["epoch"] == 2,
                  log=quiet)
    assert first.status == STATUS_STOPPED and first.epochs_completed == 2
    assert first.checkpoint == b / CHECKPOINT_NAME
    assert load_checkpoint(b)["epoch"] == 2

    seen = []
    resumed = train(make_cfg(b, epochs=4, train_size=160), resume=b / CHECKPOINT_NAME,
                    on_epoch=lambda m, ckpt: seen.append(m["epoch"]), log=quiet)
    assert resumed.status == STATUS_COMPLETED and resumed.epochs_completed == 4
    assert seen == [3, 4]  # only the remaining epochs ran

    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sa["epoch"] == sb["epoch"] == 4 and sa["step"] == sb["step"]
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    # Optimizer state (momentum buffers) is identical too.
    for k, st in sa["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"], sb["optimizer"]["state"][k]["momentum_buffer"]), k

    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[h[k] for k in keys] for h in straight.history] == \
           [[h[k] for k in keys] for h in resumed.history]
    # metrics.jsonl: one line per epoch, no duplicates after the resume.
    lines = read_jsonl(b / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4]
    assert [m["train_loss"] for m in lines] == [h["train_loss"] for h in straight.history]


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    cfg = make_cfg(tmp_path, epochs=1, train_size=64)
    train(cfg, log=quiet)
    before = load_checkpoint(tmp_path)["model"]
    again = train(cfg, resume=tmp_path, log=quiet)
    assert again.status == STATUS_COMPLETED and again.epochs_completed == 1
    after = load_checkpoint(tmp_path)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 1


def test_callback_receives_metrics_and_an_existing_checkpoint(tmp_path):
    calls = []

    def on_epoch(metrics, ckpt):
        assert ckpt is not None and Path(ckpt).is_file()
        state = load_checkpoint(ckpt)
        calls.append((dict(metrics), Path(ckpt), state["epoch"]))
        return False

    logs = []
    result = train(make_cfg(tmp_path, epochs=2, train_size=128), on_epoch=on_epoch, log=logs.append)
    assert result.status == STATUS_COMPLETED and result.epochs_completed == 2
    assert [c[0]["epoch"] for c in calls] == [1, 2]
    assert [c[2] for c in calls] == [1, 2]  # the checkpoint was written before the callback
    for metrics, ckpt, _ in calls:
        assert set(metrics) == METRIC_KEYS
        assert ckpt == tmp_path / CHECKPOINT_NAME
        for k in METRIC_KEYS:
            assert isinstance(metrics[k], (int, float)) and math.isfinite(metrics[k]), k
        assert 0.0 <= metrics["train_acc"] <= 1.0 and 0.0 <= metrics["val_acc"] <= 1.0
        assert metrics["train_loss"] > 0 and metrics["val_loss"] > 0
        assert metrics["epoch_seconds"] > 0 and metrics["images_per_s"] > 0
        assert metrics["peak_memory_bytes"] > 0
        assert metrics["num_threads"] == 1  # make_cfg's, the threads the epoch trained with
        assert 0 < metrics["lr"] <= 0.05
    assert result.history == [c[0] for c in calls]
    assert result.final == calls[-1][0]
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert lines == [c[0] for c in calls]
    assert any("epoch 2/2" in line for line in logs)


def test_no_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpts = []
    result = train(make_cfg(None, epochs=1, train_size=64), on_epoch=lambda m, c: ckpts.append(c),
                   log=quiet)
    assert result.status == STATUS_COMPLETED and result.checkpoint is None
    assert ckpts == [None]
    assert list(tmp_path.iterdir()) == []


def test_non_finite_loss_stops_training(tmp_path):
    logs = []
    result = train(make_cfg(tmp_path, epochs=5, train_size=128, optim={"lr": 1e6}), log=logs.append)
    assert result.status == STATUS_NONFINITE
    assert result.epochs_completed < 5
    assert result.history[-1]["status"] == STATUS_NONFINITE
    assert "non-finite" in result.message
    assert any("stopping" in line for line in logs)
    # A resume of such a run does not train on.
    again = train(make_cfg(tmp_path, epochs=5, train_size=128, optim={"lr": 1e6}), resume=tmp_path,
                  log=quiet)
    assert again.status == STATUS_NONFINITE and again.epochs_completed == result.epochs_completed


def test_injected_nan_loss_stops_after_the_first_epoch(monkeypatch):
    import trainers.loop as loop

    real = loop.F.cross_entropy

    def nan_loss(*args, **kwargs):
        return real(*args, **kwargs) * float("nan")

    monkeypatch.setattr(loop.F, "cross_entropy", nan_loss)
    calls = []
    result = train(make_cfg(None, epochs=3, train_size=64), on_epoch=lambda m, c: calls.append(m),
                   log=quiet)
    assert result.status == STATUS_NONFINITE and result.epochs_completed == 1
    assert len(calls) == 1  # the callback still hears about the failed epoch


def test_small_model_beats_chance_on_synthetic():
    result = train(make_cfg(None, stages=[{"N": 16, "P": 2, "K": 2, "M": 1},
                                          {"N": 24, "P": 3, "K": 1, "M": 1}],
                            mode="naive", epochs=3, train_size=1024, optim={"lr": 0.1},
                            schedule={"kind": "cosine"}), log=quiet)
    assert result.status == STATUS_COMPLETED
    accs = [h["val_acc"] for h in result.history]
    assert accs[-1] >= 0.5, accs  # 10 classes: chance is 0.1


@pytest.mark.slow
def test_digits_reaches_90_percent():
    """A small GUNN learns scikit-learn's digits: >= 0.90 validation accuracy in 8 epochs.

    Seen on CPU with these settings (lr 0.2, batch 32, cosine, 1 warm-up epoch), over seeds and
    GUNN modes: 0.90-0.98 after epoch 8. The flip augmentation slows digits down (without it
    5 epochs reach ~0.95), so fewer epochs are not reliable.
    """
    cfg = make_cfg(None, stages=[{"N": 32, "P": 4, "K": 2, "M": 1}, {"N": 48, "P": 4, "K": 2, "M": 1}],
                   stem=16, mode="keep", data="digits", epochs=8, batch_size=32,
                   optim={"lr": 0.2, "weight_decay": 5e-4},
                   schedule={"kind": "cosine", "warmup_epochs": 1})
    result = train(cfg, log=quiet)
    accs = [round(h["val_acc"], 3) for h in result.history]
    assert result.status == STATUS_COMPLETED and len(accs) == 8
    assert accs[-1] >= 0.90, accs


@pytest.mark.parametrize("family", ["gunn", "sunn"])
def test_both_families_train(tmp_path, family):
    result = train(make_cfg(tmp_path, family=family, epochs=2, train_size=256,
                            optim={"lr": 0.1}), log=quiet)
    assert result.status == STATUS_COMPLETED and result.epochs_completed == 2
    losses = [h["train_loss"] for h in result.history]
    assert all(math.isfinite(x) for x in losses)
    assert losses[1] < losses[0]
    state = load_checkpoint(tmp_path)
    assert state["spec"]["family"] == family
    torch.manual_seed(0)
    init = build_model(make_cfg(family=family).model.network_spec(10)).state_dict()
    changed = [k for k in init if init[k].is_floating_point() and not torch.equal(init[k], state["model"][k])]
    assert changed  # the weights moved


def test_gunn_modes_agree_after_training_steps(tmp_path):
    # 72 synthetic images -> 65 to train on -> 2 steps of 32 per epoch.
    results = {}
    for mode in ("naive", "keep", "recompute"):
        out = tmp_path / mode
        r = train(make_cfg(out, mode=mode, epochs=1, train_size=72, optim={"lr": 0.1}), log=quiet)
        results[mode] = (r.final, load_checkpoint(out)["model"])
    ref_metrics, ref_model = results["naive"]
    for mode in ("keep", "recompute"):
        metrics, model = results[mode]
        # train_loss averages the loss before and after the first update.
        assert metrics["train_loss"] == pytest.approx(ref_metrics["train_loss"], abs=1e-5), mode
        assert metrics["val_loss"] == pytest.approx(ref_metrics["val_loss"], abs=1e-5), mode
        for k, v in ref_model.items():
            if v.is_floating_point():
                assert torch.allclose(model[k], v, atol=1e-5, rtol=1e-4), (mode, k)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_value_error(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available") as info:
        train(make_cfg(None, device=device, epochs=1, train_size=64), log=quiet)
    assert repr(device) in str(info.value)
    assert "\n" not in str(info.value)


# --- amp, channels_last, compile: true = on CUDA only, "always" = on any device -----------------

def test_speedups_apply_on_cuda_only_unless_always():
    from trainers.loop import applies
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [applies(v, cuda) for v in (True, False, "always")] == [True, False, True]
    assert [applies(v, cpu) for v in (True, False, "always")] == [False, False, True]


def test_speedup_settings_are_true_false_or_always():
    assert make_cfg(amp="always", channels_last=False, compile=True).amp == "always"
    for bad in ("sometimes", "true", 2):
        with pytest.raises(ConfigError, match=r"compile: .*True, False or 'always'"):
            make_cfg(compile=bad)


def _probe_training(monkeypatch, **settings):
    """Train 1 epoch on the CPU; what the network saw in training and in eval, and what was
    compiled (torch.compile recorded, not run: the real compile is in the slow tests)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    seen = []

    def record(module, args, out):
        x = args[0]
        seen.append({"training": module.training, "autocast": torch.is_autocast_enabled("cpu"),
                     "channels_last": x.is_contiguous(memory_format=torch.channels_last)
                     and not x.is_contiguous(), "out": out.dtype})

    def hook(epoch, step, model):
        if not seen and not getattr(model, "_probed", False):
            model._probed = True
            model.register_forward_hook(record)

    result = train(make_cfg(None, epochs=1, train_size=72, **settings), log=quiet, on_step=hook)
    assert result.status == STATUS_COMPLETED
    assert math.isfinite(result.final["train_loss"]) and result.final["peak_memory_bytes"] > 0
    return seen, compiled


def test_cpu_default_is_float32_nchw_eager(monkeypatch):
    # The defaults (amp and channels_last true) and compile: true mean "on CUDA": a CPU run
    # is what it always was.
    seen, compiled = _probe_training(monkeypatch, amp=True, channels_last=True, compile=True)
    assert compiled == []
    assert {s["training"] for s in seen} == {True, False}  # the train steps and the eval
    assert all(not s["autocast"] and not s["channels_last"] and s["out"] == torch.float32
               for s in seen), seen


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_always_runs_bf16_autocast_channels_last_and_compile_on_the_cpu(monkeypatch, mode):
    seen, compiled = _probe_training(monkeypatch, mode=mode, amp="always",
                                     channels_last="always", compile="always")
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    assert {s["training"] for s in seen} == {True, False}
    assert all(s["autocast"] and s["channels_last"] and s["out"] == torch.bfloat16
               for s in seen), seen


def test_always_channels_last_alone(monkeypatch):
    seen, compiled = _probe_training(monkeypatch, amp=False, channels_last="always")
    assert compiled == []
    assert all(not s["autocast"] and s["channels_last"] and s["out"] == torch.float32
               for s in seen), seen


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_bf16_training_on_the_cpu_follows_float32(tmp_path, mode):
    # amp + channels_last "always" (CPU bf16 autocast through Algorithm 1) against float32:
    # the same losses and weights up to bf16 rounding, and an exact resume.
    over = dict(mode=mode, epochs=2, train_size=72, optim={"lr": 0.1})
    ref = train(make_cfg(tmp_path / "fp32", **over), log=quiet)
    bf = train(make_cfg(tmp_path / "bf16", amp="always", channels_last="always", **over),
               log=quiet)
    assert bf.status == ref.status == STATUS_COMPLETED
    for a, b in zip(bf.history, ref.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.01)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=0.03)  # 7 images
    # What training changed in the weights, bf16 against float32.
    torch.manual_seed(0)
    init = build_model(make_cfg(mode=mode).model.network_spec(10)).state_dict()
    wa, wb = load_checkpoint(tmp_path / "bf16")["model"], load_checkpoint(tmp_path / "fp32")["model"]
    keys = [k for k, v in init.items() if v.is_floating_point() and "running" not in k]
    d_bf, d_fp = (torch.cat([(w[k] - init[k]).flatten() for k in keys]) for w in (wa, wb))
    assert ((d_bf - d_fp).norm() / d_fp.norm()).item() < 0.25  # 0.07-0.09 seen; wrong grads: ~1
    # Stopped after epoch 1 and resumed, it ends exactly where the uninterrupted run did.
    cut = make_cfg(tmp_path / "cut", amp="always", channels_last="always", **over)
    train(cut, on_epoch=lambda m, c: m["epoch"] == 1, log=quiet)
    again = train(cut, resume=tmp_path / "cut" / CHECKPOINT_NAME, log=quiet)
    assert again.status == STATUS_COMPLETED and again.epochs_completed == 2
    wc = load_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(wc[k], wa[k]) for k in wa)


# --- best accuracy, resuming with a changed config --------------------------------------------

def test_best_is_the_highest_eval_accuracy_and_its_first_epoch():
    hist = [{"epoch": 1, "train_acc": 0.9, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.75},
            {"epoch": 3, "val_acc": float("nan")}, {"epoch": 4, "val_acc": 0.75},
            {"epoch": 5, "train_acc": 1.0, "val_acc": 0.625}]
    result = TrainResult(STATUS_COMPLETED, 5, hist)
    assert result.best == {"best_val_acc": 0.75, "best_val_acc_epoch": 2}
    assert result.final["val_acc"] == 0.625  # the last, reported beside it
    test = TrainResult(STATUS_COMPLETED, 2, [{"epoch": 1, "test_acc": 0.25},
                                             {"epoch": 2, "test_acc": 0.5}])
    assert test.best == {"best_test_acc": 0.5, "best_test_acc_epoch": 2}
    assert TrainResult(STATUS_COMPLETED, 0, []).best == {}


def test_best_of_a_run(tmp_path):
    result = train(make_cfg(tmp_path, epochs=3, train_size=64), log=quiet)
    accs = [h["val_acc"] for h in result.history]
    assert result.best["best_val_acc"] == max(accs)
    assert result.best["best_val_acc_epoch"] == accs.index(max(accs)) + 1


def test_resume_refuses_a_changed_config_unless_told(tmp_path):
    run, moved = tmp_path / "run", tmp_path / "moved"
    train(make_cfg(run, epochs=2, train_size=64), on_epoch=lambda m, c: True, log=quiet)
    ckpt = run / CHECKPOINT_NAME
    assert load_checkpoint(ckpt)["epoch"] == 1
    # More epochs move the lr drops (and the cosine): refused, naming what differs.
    with pytest.raises(CheckpointError) as info:
        train(make_cfg(run, epochs=3, train_size=64, optim={"lr": 0.2}), resume=ckpt, log=quiet)
    msg = str(info.value)
    assert "\n" not in msg and str(ckpt) in msg and "--resume-changed" in msg
    assert "epochs: 2 -> 3" in msg and "optim.lr: 0.05 -> 0.2" in msg
    assert load_checkpoint(ckpt)["epoch"] == 1  # nothing trained
    # Where and how fast it runs may change: device, out_dir, threads, eval batch, GUNN mode.
    again = train(make_cfg(moved, epochs=2, train_size=64, eval_batch_size=7, num_threads=2,
                           mode="keep", tracking={"uri": "sqlite:///x.db"}),
                  resume=ckpt, log=quiet)
    assert again.status == STATUS_COMPLETED and again.epochs_completed == 2
    assert load_checkpoint(moved)["config_changes"] == []
    # Told: it trains on, says so, and the checkpoint records it, resume after resume.
    logs = []
    more = train(make_cfg(run, epochs=3, train_size=64), resume=ckpt, resume_changed=True,
                 log=logs.append)
    assert more.status == STATUS_COMPLETED and more.epochs_completed == 3
    assert any("changed config: epochs: 2 -> 3" in line for line in logs), logs
    assert load_checkpoint(ckpt)["config_changes"] == [{"epoch": 1, "changes": ["epochs: 2 -> 3"]}]
    train(make_cfg(run, epochs=4, train_size=64, batch_size=16), resume=ckpt,
          resume_changed=True, log=quiet)
    assert load_checkpoint(ckpt)["config_changes"] == [
        {"epoch": 1, "changes": ["epochs: 2 -> 3"]},
        {"epoch": 3, "changes": ["epochs: 3 -> 4", "batch_size: 32 -> 16"]}]
