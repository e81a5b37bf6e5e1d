"""The annealing branch: how good would this configuration be if its training ended here?

Mid-schedule, a run's val_acc says where it stands in its schedule, not how good it is: under a
step schedule a high lr looks bad while it lasts and ends best (benchmarks/RESULTS.md, "Rank
correlation"). A branch answers the question ASHA asks at a rung instead. It copies the model
and the optimizer state, trains the copy for a short tail at the lower rates the run's schedule
has yet to reach (the end of the schedule, compressed: under a step schedule half the branch at
lr/10 and half at lr/100; under others the lr falling linearly to zero, warmup-stable-decay's
decay put at the rung), evaluates the copy and throws it away. The run goes on from where it
was, its own schedule untouched: the branch draws its batches from a generator of its own and
leaves torch's global random state as it found it, so the run's next epoch is bit-identical
with and without a branch (tests/test_anneal.py). What a search exports is therefore the run's own full-length
training; the branch only decides which runs go on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from trainers.data import batches
from trainers.loop import EpochState, sgd_step
from trainers.metric_names import BRANCH_EPOCHS, annealed_key


def branch_steps(epochs: float, steps_per_epoch: int) -> int:
    """A branch of `epochs` (a fraction is fine) in optimizer steps, at least one."""
    return max(1, round(epochs * steps_per_epoch))


def linear_decay(lr: float, steps: int) -> Callable[[int], float]:
    """The lr of branch step k (0-based): from `lr` down towards zero in `steps` equal steps."""
    return lambda k: lr * (1.0 - k / steps)


def schedule_tail(state: EpochState, steps: int) -> Callable[[int], float] | None:
    """The lr of branch step k: the run's schedule from here to its end, its lower phases
    compressed into `steps`. A step schedule: equal shares at each lower rate it has yet to
    reach (lr·γ, lr·γ² for a run before its drops); None once it trains at its last rate
    (nothing is left to anneal: its own val_acc is the answer). Other schedules: from the
    current lr linearly to zero."""
    s = state.cfg.schedule
    if s.kind != "step":
        return linear_decay(state.lr, steps)
    passed = sum(state.epoch >= m * state.cfg.epochs for m in s.milestones)
    rates = [state.cfg.optim.lr * s.gamma ** j for j in range(passed + 1, len(s.milestones) + 1)]
    if not rates:
        return None
    return lambda k: rates[min(len(rates) - 1, k * len(rates) // steps)]


def branch_generator(seed: int, epoch: int) -> torch.Generator:
    """The branch's own data order and augmentation, fixed by the run's seed and the epoch (the
    run's own generator is never drawn from)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + 7919 * epoch + 17)


def run_branch(state: EpochState, steps: int, lr_of_step: Callable[[int], float],
               evaluate_after: Iterable[int] | None = None) -> list[tuple[int, float, float]]:
    """Train a copy of the run for `steps` steps at `lr_of_step(k)`; evaluate the copy after each
    step count in `evaluate_after` (default: the last). [(steps, eval loss, eval acc), ...].

    The run's model, optimizer and random state are not touched.
    """
    marks = sorted(set(evaluate_after or [steps]))
    model = copy.deepcopy(state.model)  # BatchNorm's running statistics move in the copy only
    model.train()
    opt = type(state.optimizer)(model.parameters(), **state.optimizer.defaults)
    # load_state_dict keeps a state tensor that already sits on the right device and dtype:
    # without the deep copy the branch's steps would move the run's momentum buffers.
    opt.load_state_dict(copy.deepcopy(state.optimizer.state_dict()))
    gen = branch_generator(state.cfg.seed, state.epoch)
    out: list[tuple[int, float, float]] = []
    devices = [state.device] if state.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=state.device.type):
        k = 0
        while k < steps:
            for idx in batches(state.data.train_x.shape[0], state.batch_size, gen, drop_last=True):
                if k >= steps:
                    break
                for g in opt.param_groups:
                    g["lr"] = lr_of_step(k)
                if state.on_step is not None:
                    state.on_step(state.epoch, -1 - k, model)
                x, y = state.batch(idx, gen)
                sgd_step(model, opt, x, y, state.amp)
                k += 1
                if k in marks:
                    loss, acc = state.evaluate(model)
                    out.append((k, loss, acc))
    return out


@dataclass(frozen=True)
class AnnealingBranch:
    """An `after_epoch` hook: a branch of `epochs` after each epoch in `at` (ASHA's rungs) where
    the schedule has a lower rate left to reach. No default length: the search's default is
    `gunn_search.space.rungs.default_branch_epochs`, the one place it is decided."""

    at: frozenset[int]
    epochs: float

    def __call__(self, state: EpochState) -> dict:
        if state.epoch not in self.at:
            return {}
        steps = branch_steps(self.epochs, state.steps_per_epoch)
        tail = schedule_tail(state, steps)
        if tail is None:
            return {}
        (_, loss, acc), = run_branch(state, steps, tail)
        name = state.data.eval_name
        return {annealed_key(name): acc, annealed_key(name, "loss"): loss,
                BRANCH_EPOCHS: steps / state.steps_per_epoch}
