"""Learning-rate schedules (trainers.schedule.lr_at): pure functions of the iteration; the step
schedule changes per epoch at the authors' epochs."""

from __future__ import annotations

import math

import pytest

from trainers.config import ScheduleConfig
from trainers.schedule import lr_at

BASE = 0.1


def lrs(kind: str, total: int, steps_per_epoch: int, **kw) -> list[float]:
    cfg = ScheduleConfig(kind=kind, **kw)
    return [lr_at(s, total, BASE, cfg, steps_per_epoch) for s in range(total)]


def authors_decays(epoch: int, n_epochs: int) -> int:
    """The authors' train.lua (CIFAR), epoch counted from 1:
    decay = epoch >= 0.75*nEpochs and 2 or epoch >= 0.5*nEpochs and 1 or 0"""
    return 2 if epoch >= 0.75 * n_epochs else 1 if epoch >= 0.5 * n_epochs else 0


def lr_per_epoch(n_epochs: int, steps_per_epoch: int, cfg: ScheduleConfig) -> dict[int, float]:
    """{epoch (from 1): its lr}, checking that every step of an epoch has the same lr."""
    total = n_epochs * steps_per_epoch
    out = {}
    for e in range(1, n_epochs + 1):
        within = {lr_at(s, total, BASE, cfg, steps_per_epoch)
                  for s in range((e - 1) * steps_per_epoch, e * steps_per_epoch)}
        assert len(within) == 1, (e, within)  # once per epoch, never mid-epoch
        out[e] = within.pop()
    return out


@pytest.mark.parametrize("steps_per_epoch", [1, 3, 782])
def test_step_drops_in_the_150th_and_225th_of_300_epochs(steps_per_epoch):
    """The paper's "divided by 10 at the 150th and 225th epoch", as the authors' code does it:
    epochs 1-149 at 0.1, 150-224 at 0.01, 225-300 at 0.001 (counting from 1)."""
    lrs = lr_per_epoch(300, steps_per_epoch, ScheduleConfig(kind="step"))
    for e, lr in lrs.items():
        want = BASE if e <= 149 else BASE / 10 if e <= 224 else BASE / 100
        assert lr == pytest.approx(want, rel=1e-12), e
        assert lr == pytest.approx(BASE * 0.1 ** authors_decays(e, 300), rel=1e-12), e
    # The exact epochs of the drops (1-based): the last at 0.1 and the first at 0.01, ...
    assert (lrs[149], lrs[150]) == (pytest.approx(BASE), pytest.approx(BASE / 10))
    assert (lrs[224], lrs[225]) == (pytest.approx(BASE / 10), pytest.approx(BASE / 100))
    # ... so the first drop comes after 149 full epochs: at step 149 * steps_per_epoch.
    first = 149 * steps_per_epoch
    cfg, total = ScheduleConfig(kind="step"), 300 * steps_per_epoch
    assert lr_at(first - 1, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE)
    assert lr_at(first, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE / 10)


@pytest.mark.parametrize("n_epochs,drops", [
    (10, (5, 8)),   # 0.5 * 10 = 5, 0.75 * 10 = 7.5
    (4, (2, 3)),
    (3, (2, 3)),    # 1.5, 2.25
    (2, (1, 2)),    # 0.5 * 2 = 1: the first epoch already trains at lr / 10
    (1, (1, 1)),
    (30, (15, 23)),  # the bundled spaces' trials: 15, 22.5
])
def test_step_drops_at_the_authors_epochs_for_short_runs(n_epochs, drops):
    lrs = lr_per_epoch(n_epochs, 4, ScheduleConfig(kind="step"))
    first, second = drops
    for e, lr in lrs.items():
        want = BASE if e < first else BASE / 10 if e < second else BASE / 100
        assert lr == pytest.approx(want, rel=1e-12), e
        assert lr == pytest.approx(BASE * 0.1 ** authors_decays(e, n_epochs), rel=1e-12), e


def test_step_custom_milestones_and_gamma():
    cfg = ScheduleConfig(kind="step", milestones=[0.25], gamma=0.5)
    # 10 epochs of 10 steps: 0.25 * 10 = 2.5, so epoch 3 (steps 20-29) is the first at lr / 2.
    assert lr_at(19, 100, BASE, cfg, 10) == pytest.approx(BASE)
    assert lr_at(20, 100, BASE, cfg, 10) == pytest.approx(BASE * 0.5)
    assert lr_at(99, 100, BASE, cfg, 10) == pytest.approx(BASE * 0.5)
    three = ScheduleConfig(kind="step", milestones=[0.2, 0.5, 0.9], gamma=0.1)
    assert lr_per_epoch(10, 2, three) == pytest.approx(
        {1: BASE, 2: BASE / 10, 3: BASE / 10, 4: BASE / 10, 5: BASE / 100, 6: BASE / 100,
         7: BASE / 100, 8: BASE / 100, 9: BASE / 1000, 10: BASE / 1000}, rel=1e-12)


def test_cosine_from_base_to_zero_monotonically():
    total = 200
    values = lrs("cosine", total, 20)
    assert values[0] == pytest.approx(BASE)
    assert values[-1] < 1e-3 * BASE
    assert values[-1] >= 0.0
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert any(b < a for a, b in zip(values, values[1:]))
    # Half-way through it is at half the base rate (a half cosine, not linear elsewhere).
    assert values[total // 2] == pytest.approx(BASE / 2, rel=1e-9)
    assert values[total // 4] == pytest.approx(BASE * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-9)
    # At (and past) the end it is exactly 0.
    assert lr_at(total, total, BASE, ScheduleConfig(kind="cosine"), 20) == pytest.approx(0.0, abs=1e-15)


def test_constant():
    values = lrs("constant", 50, 5)
    assert values == [BASE] * 50


def test_warmup_ramps_linearly_then_follows_schedule():
    spe, warm_epochs = 10, 2
    warm = spe * warm_epochs
    values = lrs("constant", 100, spe, warmup_epochs=warm_epochs)
    ramp = values[:warm]
    # lr = base * (s + 1) / warm: equal increments, ending at the base rate.
    assert ramp[0] == pytest.approx(BASE / warm)
    diffs = [b - a for a, b in zip(ramp, ramp[1:])]
    assert all(d == pytest.approx(BASE / warm, rel=1e-9) for d in diffs)
    assert ramp[-1] == pytest.approx(BASE)
    assert all(v == pytest.approx(BASE) for v in values[warm:])


def test_warmup_with_cosine_starts_the_cosine_after_warmup():
    spe, total = 10, 100
    cfg = ScheduleConfig(kind="cosine", warmup_epochs=1)
    values = [lr_at(s, total, BASE, cfg, spe) for s in range(total)]
    assert values[0] == pytest.approx(BASE / spe)
    assert all(b > a for a, b in zip(values[:spe], values[1:spe]))  # ramp up
    assert values[spe] == pytest.approx(BASE)  # the cosine begins at the base rate after warm-up
    tail = values[spe:]
    assert all(b <= a for a, b in zip(tail, tail[1:]))
    assert tail[-1] < 1e-3 * BASE


def test_warmup_with_step_schedule():
    cfg = ScheduleConfig(kind="step", warmup_epochs=0.5)  # 5 of 10 steps per epoch
    assert lr_at(0, 100, BASE, cfg, 10) == pytest.approx(BASE / 5)
    assert lr_at(4, 100, BASE, cfg, 10) == pytest.approx(BASE)
    assert lr_at(39, 100, BASE, cfg, 10) == pytest.approx(BASE)  # epoch 4 of 10
    assert lr_at(40, 100, BASE, cfg, 10) == pytest.approx(BASE / 10)  # epoch 5 >= 0.5 * 10


def test_schedule_is_a_pure_function_of_the_step():
    cfg = ScheduleConfig(kind="cosine", warmup_epochs=1)
    first = [lr_at(s, 60, BASE, cfg, 6) for s in range(60)]
    again = [lr_at(s, 60, BASE, cfg, 6) for s in reversed(range(60))][::-1]
    assert first == again
