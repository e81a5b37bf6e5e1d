"""ASHA's rungs as plain arithmetic, without Ray: where they fall, what a space's search gets
when it sets no first rung or branch length (the defaults), and how they are described.

The space's schema resolves the defaults when a space is read (`gunn_search.space.schema`), the
trainable places its annealing branches at the rungs and `scheduler.ResumableASHA` is Tune's side
of the same rungs; none of that needs Ray here, so the driver validates a space without it.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunn_search.space.schema import Space

# Where a branch is the default (schedules other than step): its length and the first rung, a
# sixth of the epochs each. Measured on the digits problem of benchmarks/rank_correlation.py (12
# epochs, step schedule): a branch of 2 epochs at the schedule's lower rates after epoch 2 ranked
# configurations as their final val_acc does (Spearman 0.94; the trial's own val_acc there:
# -0.27) (benchmarks/RESULTS.md, "Rung results that predict the end").
BRANCH_SHARE = 1 / 6


def default_branch_epochs(space: Space) -> float:
    """The annealing branch's length when the space sets none.

    None under a step schedule: the first rung then falls on the first epoch at the lower lr,
    where the trial's own val_acc ranks configurations well (Spearman 0.88 at epoch 6 of 12),
    and no branch epochs are spent. On the simulator's 200 paired searches of the recorded
    table (benchmarks/RESULTS.md, "Defaults chosen on the simulator"), at budgets of 10 and 30
    full trainings with 2 and 8 trials at a time, these plain rungs at the lr drop reached the
    target in fewer epochs than Optuna TPE + HyperbandPruner in all four (p <= 6e-5), the
    2-epoch branches at epochs 2 and 6 at 30 trainings only, and at 10 trainings with 8 at a
    time the branches found a worse best than random search (p 8e-14): every trial pays 2
    epochs more at its first rung.

    None in a multi-objective search either: there a rung compares points whose costs are exact
    from the start, and a branch's epochs are trials not trained to the end: in the replay of
    the digits problem, Pareto rungs at the lr drop on the trial's own val_acc left a larger
    front (hypervolume 0.607 at 72 epochs, 0.680 at 144) than at a sixth with 2-epoch branches
    (0.580, 0.643). RESULTS.md, "Multi-objective rungs".

    Under other schedules, a sixth of the epochs: under cosine the trial's own val_acc ranked by
    chance until epoch 5 of 12, and no budgeted comparison has been recorded for it yet."""
    if len(space.search.objective_list) > 1:
        return 0.0
    kinds = space.values_at("schedule.kind")
    if kinds and all(k == "step" for k in kinds):
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


def bracket_rungs(grace_period: int, reduction_factor: int, max_t: int, bracket: int) -> list[int]:
    """The rungs of Hyperband bracket `bracket` (0: ASHA's own): its first rung is
    grace * rf**bracket, as Tune's `_Bracket` places them for `brackets` > 1."""
    return rung_epochs(grace_period * reduction_factor ** bracket, reduction_factor, max_t)


def bracket_shares(search, max_epochs: int) -> list[float]:
    """The share of new trials each bracket gets: Tune's weighting (e to the power of the
    bracket's number of rungs, normalised), so the most aggressive bracket gets most."""
    sizes = [len(bracket_rungs(search.grace_period, search.reduction_factor, max_epochs, b))
             for b in range(search.brackets)]
    w = [math.exp(n - max(sizes)) for n in sizes]
    return [x / sum(w) for x in w]


def bracket_of(trial_id: str, search, max_epochs: int) -> int:
    """The bracket of a trial: drawn by `bracket_shares` from a hash of its id, so that the
    scheduler (when the trial is added, and again when a restore re-adds it) and the trainable
    (which places the trial's branches at its bracket's rungs) agree without talking. Tune's
    own choice draws from numpy's global generator, which neither a restore nor a trial's
    process shares."""
    if search.brackets <= 1:
        return 0
    u = int(hashlib.sha256(trial_id.encode()).hexdigest()[:12], 16) / 16 ** 12
    acc = 0.0
    for b, share in enumerate(bracket_shares(search, max_epochs)):
        acc += share
        if u < acc:
            return b
    return search.brackets - 1


def branching_rungs(search, max_epochs: int, bracket: int = 0) -> list[int]:
    """The rungs of `bracket` at which a trial runs an annealing branch (`search.branch_rungs`):
    every rung, or the first only (later rungs then compare the trial's own val_acc); none
    under FIFO or with `search.branch_epochs` 0."""
    if search.scheduler != "asha" or not search.branch_epochs:
        return []
    at = bracket_rungs(search.grace_period, search.reduction_factor, max_epochs, bracket)
    return at[:1] if search.branch_rungs == "first" else at


def branch_epochs_per_trial(search, max_epochs: int, bracket: int = 0) -> float:
    """The epochs a trial of `bracket` trained to the end spends in annealing branches (one per
    branching rung), as `search.branch_epochs` asks them (the trainer rounds a branch to whole
    steps)."""
    return (search.branch_epochs or 0.0) * len(branching_rungs(search, max_epochs, bracket))


def expected_epochs(grace: int, rf: int, max_t: int, branch: float = 0.0,
                    branches: int | None = None) -> float:
    """Expected epochs of one trial under ASHA: all reach the first rung, 1/rf of a rung the
    next one; each of the first `branches` rungs reached (all: None) costs `branch` epochs more
    (its annealing branch). What a compute budget is expected to buy (trials = budget / this)."""
    epochs, share, t, k = 0.0, 1.0, 0, 0
    rung = grace
    while True:
        top = min(rung, max_t)
        epochs += share * (top - t)
        if top >= max_t:
            return epochs
        if branches is None or k < branches:
            epochs += share * branch
        t, share, rung, k = top, share / rf, rung * rf, k + 1


def expected_trial_epochs(search, max_epochs: int) -> float:
    """`expected_epochs` for a search's settings, over its brackets by their shares (FIFO:
    every trial trains to the end)."""
    if search.scheduler != "asha":
        return float(max_epochs)
    rf = search.reduction_factor
    return sum(share * expected_epochs(search.grace_period * rf ** b, rf, max_epochs,
                                       search.branch_epochs or 0.0,
                                       1 if search.branch_rungs == "first" else None)
               for b, share in enumerate(bracket_shares(search, max_epochs)))


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
    if search.brackets > 1:
        parts = []
        for b, share in enumerate(bracket_shares(search, max_epochs)):
            first = bracket_rungs(search.grace_period, search.reduction_factor, max_epochs, b)
            parts.append(f"{round(100 * share)}% " + (f"from rung {first[0]}" if first
                                                        else "trained to the end"))
        out += f" in {search.brackets} Hyperband brackets, " + ", ".join(parts)
    if search.branch_epochs and search.branch_rungs == "first" and len(at) > 1:
        out += (f", the first comparing a {search.branch_epochs:g}-epoch annealing branch, "
                "the others the trial's own val_acc")
    elif search.branch_epochs:
        out += f", each comparing a {search.branch_epochs:g}-epoch annealing branch"
    return out
