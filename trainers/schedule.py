"""Learning-rate schedules as pure functions of the iteration.

Stepped per iteration. Being a pure function of the step count, a schedule needs no state of
its own in a checkpoint: resuming at step s gives the same lr as running straight through.
"""

from __future__ import annotations

import math

from trainers.config import ScheduleConfig


def lr_at(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig,
          steps_per_epoch: int) -> float:
    """Learning rate for iteration `step` (0-based) of `total_steps`.

    step: multiply by gamma at each milestone (fractions of training; the paper divides by 10
    at 50% and 75%). cosine: half-cosine from base_lr to 0. Optional linear warm-up from
    base_lr / steps_to_warm up to the schedule's value, over `warmup_epochs`.
    """
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.kind == "step":
        lr = base_lr * cfg.gamma ** sum(step >= m * total_steps for m in cfg.milestones)
    elif cfg.kind == "cosine":
        t = (step - warmup) / max(1, total_steps - warmup)
        lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    else:
        lr = base_lr
    if step < warmup:
        lr = lr * (step + 1) / warmup
    return lr
