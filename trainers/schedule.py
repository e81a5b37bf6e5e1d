"""Learning-rate schedules as pure functions of the iteration.

Set before every iteration. Being a pure function of the step count, a schedule needs no state
of its own in a checkpoint: resuming at step s gives the same lr as running straight through.
The step schedule changes once per epoch, as the authors' `train.lua` does; cosine and warm-up
change every iteration.
"""

from __future__ import annotations

import math

from trainers.config import ScheduleConfig


def lr_at(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig,
          steps_per_epoch: int) -> float:
    """Learning rate for iteration `step` (0-based) of `total_steps`.

    step: multiply by gamma once per milestone m (a fraction of training) passed, per epoch as
    the authors' `train.lua` does: epoch e, counted from 1, of E trains at the lower rate when
    e >= m * E. The paper's 300 epochs at 50% and 75% train epochs 1-149 at base_lr, 150-224 at
    base_lr / 10 and 225-300 at base_lr / 100 ("the 150th and 225th epoch"); with m * E <= 1 the
    drop applies from the first epoch. cosine: half-cosine from base_lr to 0. Optional linear
    warm-up from base_lr / steps_to_warm up to the schedule's value, over `warmup_epochs`.
    """
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.kind == "step":
        epoch, epochs = step // steps_per_epoch + 1, total_steps / steps_per_epoch
        lr = base_lr * cfg.gamma ** sum(epoch >= m * epochs for m in cfg.milestones)
    elif cfg.kind == "cosine":
        t = (step - warmup) / max(1, total_steps - warmup)
        lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    else:
        lr = base_lr
    if step < warmup:
        lr = lr * (step + 1) / warmup
    return lr
