"""Learning-rate schedules (trainers.schedule.lr_at): stepped per iteration, pure functions."""

from __future__ import annotations

import math

import pytest

from trainers.config import ScheduleConfig
from trainers.schedule import lr_at

BASE = 0.1


def lrs(kind: str, total: int, steps_per_epoch: int, **kw) -> list[float]:
    cfg = ScheduleConfig(kind=kind, **kw)
    return [lr_at(s, total, BASE, cfg, steps_per_epoch) for s in range(total)]


@pytest.mark.parametrize("total,steps_per_epoch", [(100, 10), (40, 8), (12, 3)])
def test_step_divides_by_10_at_exactly_50_and_75_percent(total, steps_per_epoch):
    cfg = ScheduleConfig(kind="step")
    half, three_q = total // 2, (3 * total) // 4
    assert half * 2 == total and three_q * 4 == 3 * total  # the milestones fall on whole steps
    for s in range(total):
        lr = lr_at(s, total, BASE, cfg, steps_per_epoch)
        want = BASE if s < half else BASE / 10 if s < three_q else BASE / 100
        assert lr == pytest.approx(want, rel=1e-12), s
    # The drop happens at the exact iteration, not at an epoch boundary.
    assert lr_at(half - 1, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE)
    assert lr_at(half, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE / 10)
    assert lr_at(three_q - 1, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE / 10)
    assert lr_at(three_q, total, BASE, cfg, steps_per_epoch) == pytest.approx(BASE / 100)


def test_step_changes_mid_epoch_per_iteration():
    # 30 steps of 10 per epoch: 50% is step 15, the middle of the second epoch.
    cfg = ScheduleConfig(kind="step")
    assert lr_at(14, 30, BASE, cfg, 10) == pytest.approx(BASE)
    assert lr_at(15, 30, BASE, cfg, 10) == pytest.approx(BASE / 10)
    # 75% of 30 is 22.5: step 22 is still before it, step 23 after.
    assert lr_at(22, 30, BASE, cfg, 10) == pytest.approx(BASE / 10)
    assert lr_at(23, 30, BASE, cfg, 10) == pytest.approx(BASE / 100)


def test_step_custom_milestones_and_gamma():
    cfg = ScheduleConfig(kind="step", milestones=[0.25], gamma=0.5)
    assert lr_at(24, 100, BASE, cfg, 10) == pytest.approx(BASE)
    assert lr_at(25, 100, BASE, cfg, 10) == pytest.approx(BASE * 0.5)
    assert lr_at(99, 100, BASE, cfg, 10) == pytest.approx(BASE * 0.5)


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
    assert lr_at(49, 100, BASE, cfg, 10) == pytest.approx(BASE)
    assert lr_at(50, 100, BASE, cfg, 10) == pytest.approx(BASE / 10)


def test_schedule_is_a_pure_function_of_the_step():
    cfg = ScheduleConfig(kind="cosine", warmup_epochs=1)
    first = [lr_at(s, 60, BASE, cfg, 6) for s in range(60)]
    again = [lr_at(s, 60, BASE, cfg, 6) for s in reversed(range(60))][::-1]
    assert first == again
