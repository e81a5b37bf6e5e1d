"""ASHA's rungs as plain arithmetic, without Ray: where they fall, what a space's search gets
when it sets no first rung or branch length (the defaults), and how they are described.

The space's schema resolves the defaults when a space is read (`gunn_search.space.schema`), the
trainable places its annealing branches at the rungs and `scheduler.ResumableASHA` is Tune's side
of the same rungs; none of that needs Ray here, so the driver validates a space without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunn_search.space.schema import Space

# Measured on the digits problem of benchmarks/rank_correlation.py (12 epochs, step schedule):
# a branch of 2 epochs (a sixth) at the schedule's lower rates after epoch 2 (a sixth) ranked
# configurations as their final val_acc does (Spearman 0.94; the trial's own val_acc there:
# -0.27), and in the replay of ASHA it was the cheapest first rung that kept the best
# configurations (benchmarks/RESULTS.md, "Rung results that predict the end").
BRANCH_SHARE = 1 / 6


def default_branch_epochs(space: Space) -> float:
    """The annealing branch's length when the space sets none: a sixth of the epochs; none in a
    multi-objective search. There a rung compares points whose costs are exact from the start,
    and a branch's epochs are trials not trained to the end: in the replay of the digits
    problem, Pareto rungs at the lr drop on the trial's own val_acc left a larger front
    (hypervolume 0.607 at 72 epochs, 0.680 at 144) than at a sixth with 2-epoch branches
    (0.580, 0.643). RESULTS.md, "Multi-objective rungs"."""
    if len(space.search.objective_list) > 1:
        return 0.0
    return round(space.max_epochs * BRANCH_SHARE, 2)


def default_grace_period(space: Space) -> int:
    """ASHA's first rung when the space sets none.

    With annealing branches at the rungs (`search.branch_epochs` > 0): a sixth of the epochs,
    where a branch's result already ranks configurations (see BRANCH_SHARE). Without them, the
    trial's own val_acc is what a rung compares, and under a step schedule: the first epoch trained at the lower lr (epoch e of E is when
    e >= milestones[0] * E; the latest over the space's samples). Before it, val_acc ranked
    configurations backwards in benchmarks/rank_correlation.py (Spearman -0.44 at epoch 2 of
    12, 0.88 at the drop, epoch 6). Under any other schedule: half of the epochs. Under
    cosine, val_acc ranked by chance until epoch 5 of 12 (Spearman 0.51 at 6, 0.86 at 9), and
    in the replay of ASHA on those curves a rung at half the epochs lost least to no early
    stopping (mean best 0.902 against 0.893 at epoch 2 and FIFO's 0.908); a constant lr was not
    measured. RESULTS.md, "Rank correlation".
    """
    if space.search.scheduler == "asha" and space.search.branch_epochs:
        return max(1, math.ceil(space.max_epochs * BRANCH_SHARE - 1e-9))
    half = max(1, math.ceil(space.max_epochs / 2))
    if "step" not in space.values_at("schedule.kind"):
        return half
    firsts = [m[0] for m in space.values_at("schedule.milestones") if m]
    if not firsts:
        return half
    return min(max(1, math.ceil(max(firsts) * space.max_epochs - 1e-9)), space.max_epochs)



def rung_epochs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace, grace*rf, ... below max_t (Tune's
    `_Bracket` milestones for one bracket)."""
    out, t = [], grace_period
    while t < max_t:
        out.append(t)
        t *= reduction_factor
    return out


def branch_epochs_per_trial(search, max_epochs: int) -> float:
    """The epochs a trial trained to the end spends in annealing branches (one per rung), as
    `search.branch_epochs` asks them (the trainer rounds a branch to whole steps)."""
    if search.scheduler != "asha" or not search.branch_epochs:
        return 0.0
    return search.branch_epochs * len(rung_epochs(search.grace_period, search.reduction_factor,
                                                  max_epochs))


def expected_epochs(grace: int, rf: int, max_t: int, branch: float = 0.0) -> float:
    """Expected epochs of one trial under ASHA: all reach the first rung, 1/rf of a rung the
    next one; each rung reached costs `branch` epochs more (its annealing branch). What a
    compute budget is expected to buy (trials = budget / this)."""
    epochs, share, t = 0.0, 1.0, 0
    rung = grace
    while True:
        top = min(rung, max_t)
        epochs += share * (top - t)
        if top >= max_t:
            return epochs
        epochs += share * branch
        t, share, rung = top, share / rf, rung * rf


def expected_trial_epochs(search, max_epochs: int) -> float:
    """`expected_epochs` for a search's settings (FIFO: every trial trains to the end)."""
    if search.scheduler != "asha":
        return float(max_epochs)
    return expected_epochs(search.grace_period, search.reduction_factor, max_epochs,
                           search.branch_epochs or 0.0)


def describe(search, max_epochs: int) -> str:
    """How long trials train, for the search's first line: "ASHA rungs at epochs 2, 6 (1/3 goes
    on), each comparing a 2-epoch annealing branch"."""
    if search.scheduler != "asha":
        return "every trial trains to the end (fifo)"
    at = rung_epochs(search.grace_period, search.reduction_factor, max_epochs)
    if not at:
        return "ASHA has no rung below the last epoch"
    out = (f"ASHA rungs at epoch{'s' if len(at) > 1 else ''} {', '.join(map(str, at))} "
           f"(1/{search.reduction_factor} goes on)")
    if search.branch_epochs:
        out += f", each comparing a {search.branch_epochs:g}-epoch annealing branch"
    return out
