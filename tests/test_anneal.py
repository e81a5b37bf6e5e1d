"""The annealing branch: its result, its cost, and that nothing of it leaks into the run."""

from __future__ import annotations

import pytest
import torch

from tests.test_loop import make_cfg, quiet
from trainers import anneal
from trainers.anneal import BRANCH_EPOCHS, AnnealingBranch, annealed_key, linear_decay, run_branch
from trainers.checkpoint import CHECKPOINT_NAME, load_checkpoint
from trainers.loop import train
from gunn_search.status import ANNEALED_METRIC


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_the_runs_own_training_is_bit_identical_with_and_without_branches(tmp_path):
    cfg = make_cfg(epochs=4, train_size=160)
    plain = train(cfg.model_copy(update={"out_dir": str(tmp_path / "a")}), log=quiet)
    branched = train(cfg.model_copy(update={"out_dir": str(tmp_path / "b")}), log=quiet,
                     after_epoch=AnnealingBranch(frozenset({1, 2, 3}), epochs=0.5))
    for p, b in zip(plain.history, branched.history):
        for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert p[k] == b[k], (k, p["epoch"])  # exactly: not a rounding apart
    a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # weights and BatchNorm buffers
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["data"], b["rng"]["data"])


def test_a_branch_reports_its_result_and_cost_at_its_epochs_only():
    # 144 training images (160 less the 10 % validation hold-out) at batch 32: 4 steps an
    # epoch; 0.3 of an epoch rounds to 1 step, a quarter of an epoch.
    res = train(make_cfg(epochs=3, train_size=160), log=quiet,
                after_epoch=AnnealingBranch(frozenset({2}), epochs=0.3))
    e1, e2, e3 = res.history
    assert ANNEALED_METRIC == annealed_key("val")
    assert ANNEALED_METRIC not in e1 and ANNEALED_METRIC not in e3 and BRANCH_EPOCHS not in e3
    assert 0.0 <= e2[ANNEALED_METRIC] <= 1.0 and e2["annealed_val_loss"] > 0
    assert e2[BRANCH_EPOCHS] == 0.25


def test_the_branch_trains_a_copy_at_the_decaying_lr(monkeypatch):
    seen = []
    real = anneal.sgd_step

    def spy(model, opt, x, y, amp):
        seen.append((id(model), opt.param_groups[0]["lr"]))
        return real(model, opt, x, y, amp)

    monkeypatch.setattr(anneal, "sgd_step", spy)
    captured = {}

    def after_epoch(state):
        captured["model"] = id(state.model)
        out = run_branch(state, 4, linear_decay(state.lr, 4), evaluate_after=[2, 4])
        assert [k for k, _, _ in out] == [2, 4]
        return {}

    cfg = make_cfg(epochs=1, train_size=160, optim={"lr": 0.08}, schedule={"kind": "constant"})
    train(cfg, log=quiet, after_epoch=after_epoch)
    assert {m for m, _ in seen} != {captured["model"]}  # never the run's own model
    assert [lr for _, lr in seen] == pytest.approx([0.08, 0.06, 0.04, 0.02])


def test_a_run_interrupted_inside_a_branch_resumes_to_the_same_result(tmp_path):
    cfg = make_cfg(epochs=3, train_size=160)
    branch = AnnealingBranch(frozenset({1, 2}), epochs=0.5)
    straight = train(cfg.model_copy(update={"out_dir": str(tmp_path / "a")}), log=quiet,
                     after_epoch=branch)

    def fail_in_second_branch(epoch, step, model):
        if epoch == 2 and step == -2:  # the second step of the branch after epoch 2
            raise RuntimeError("killed inside the branch")

    out = tmp_path / "b"
    with pytest.raises(RuntimeError, match="inside the branch"):
        train(cfg.model_copy(update={"out_dir": str(out)}), log=quiet, after_epoch=branch,
              on_step=fail_in_second_branch)
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 1  # epoch 2 was never saved
    resumed = train(cfg.model_copy(update={"out_dir": str(out)}), log=quiet, after_epoch=branch,
                    resume=out / CHECKPOINT_NAME)
    assert [m["epoch"] for m in resumed.history] == [1, 2, 3]
    for s, r in zip(straight.history, resumed.history):
        for k in ("val_acc", "train_loss", ANNEALED_METRIC, BRANCH_EPOCHS):
            assert s.get(k) == r.get(k), (k, s["epoch"])


def test_the_tail_is_the_schedules_lower_rates_compressed():
    from types import SimpleNamespace as NS

    from trainers.anneal import schedule_tail
    from trainers.config import ScheduleConfig

    def state(epoch, lr, kind="step"):
        return NS(cfg=NS(schedule=ScheduleConfig(kind=kind), epochs=12, optim=NS(lr=0.1)),
                  epoch=epoch, lr=lr)

    def rates(st, steps=8):
        f = schedule_tail(st, steps)
        return [round(f(k), 6) for k in range(steps)]

    # Before the drops (epochs 1-5 of 12 at 0.1): half at lr/10, half at lr/100.
    assert rates(state(1, 0.1)) == [0.01] * 4 + [0.001] * 4 == rates(state(5, 0.1))
    assert rates(state(6, 0.01)) == [0.001] * 8  # after the first: its last rate only
    assert schedule_tail(state(9, 0.001), 8) is None  # at its last rate: nothing to anneal
    assert rates(state(3, 0.05, "cosine"), 4) == [0.05, 0.0375, 0.025, 0.0125]  # to zero
