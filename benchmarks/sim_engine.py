"""The simulator's clock: a search with k trials at a time on a recorded-curve table.

A method (`sim_methods.py`) starts trials (`ask`: a configuration's values, or None to wait, or
FINISHED) and hears each trial's epochs (`report`: go on or stop), then its end (`end`). The
engine looks each configuration up in the table (`Lookup`: the nearest recorded one), and lets
its epochs arrive in the order the table's clock says: an epoch takes its recorded seconds, and
where the trial runs an annealing branch after it (the epochs and length the method's `Job`
names), the branch's recorded seconds too. Results are handled one at a time in clock order, as
Tune's driver handles them; free slots are filled right after each.

The compute budget is counted here, in one place: every epoch trained is one, every branch its
length. When the budget is spent the search ends and the trials still training stop where they
are (as `gunn-search --budget-epochs` stops them).

What a search found: `best_final`, the best val_acc of trials trained to the end; `epochs_to_target`
(and `seconds_to_target`), the budget spent when a trial trained to the end first reached the
target. A trial stopped mid-schedule is no result a user could export as trained.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

import curve_table as ct

FINISHED = "finished"


@dataclass
class Job:
    """A trial to start: the configuration's values (config paths, as a sampler gives them),
    the epoch it stops at (`stop_at`, e.g. a restarted Hyperband rung; default the last), and the
    annealing branches it runs (`branch_at` epochs, `branch_length` epochs each)."""


    values: dict
    stop_at: int | None = None
    branch_at: frozenset = frozenset()
    branch_length: float = 0.0
    handle: object = None  # the method's own name for the trial
    resume_at: int = 0  # epochs already trained (and paid for) by an earlier job of this config


@dataclass
class Lookup:
    """The recorded configurations of one training seed, found by nearest coordinates."""

    table: ct.Table
    seed: int
    space: object
    ids: list[int] = field(init=False)
    points: np.ndarray = field(init=False)

    def __post_init__(self):
        self.ids = sorted(c for c, s in self.table.runs if s == self.seed)
        if not self.ids:
            raise ValueError(f"{self.table.folder}: no run of training seed {self.seed}")
        self.points = np.stack([ct.coordinates(self.space, self.table.configs[c])
                                for c in self.ids])

    def nearest(self, values: dict) -> int:
        d = ((self.points - ct.coordinates(self.space, values)) ** 2).sum(1)
        return self.ids[int(d.argmin())]

    def curve(self, config: int) -> list[dict]:
        return self.table.runs[(config, self.seed)]


@dataclass
class Running:
    job: Job
    config: int
    curve: list[dict]
    epoch: int = 0


@dataclass
class SearchRecord:
    """One simulated search: its events (budget spent after, seconds, trial, epoch, val_acc,
    whether the trial trained to the end there) and what it found."""

    events: list[tuple] = field(default_factory=list)
    spent: float = 0.0
    seconds: float = 0.0
    trials: int = 0
    finals: list[float] = field(default_factory=list)

    @property
    def best_final(self) -> float | None:
        return max(self.finals) if self.finals else None

    def to_target(self, target: float) -> tuple[float | None, float | None]:
        """(epochs, seconds) spent when a trial trained to the end first reached `target`."""
        for spent, secs, _, _, acc, final in self.events:
            if final and acc >= target - 1e-12:
                return spent, secs
        return None, None


def branch_result(row: dict, job: Job) -> tuple[float | None, float, float]:
    """(branch val_acc, branch epochs, branch seconds) of `row`'s epoch for `job`: none where
    the job runs no branch there or the table has none (the schedule had nothing left to
    anneal, as the trainer's branch skips it)."""
    if row["epoch"] not in job.branch_at or not job.branch_length:
        return None, 0.0, 0.0
    col = ct.anneal_col(job.branch_length)
    if col not in row:
        raise KeyError(f"the table has no branch of {job.branch_length:g} epochs ({col})")
    if row[col] is None:
        return None, 0.0, 0.0
    return row[col], job.branch_length, row[col + "_seconds"] or 0.0


def epoch_metrics(row: dict, job: Job) -> tuple[dict, float, float]:
    """The trainer's metrics for a recorded epoch (as `trainers.loop.train` gives them to the
    trainable's `on_epoch`), its cost in epochs and its seconds."""
    from gunn_search.run.compute_budget import result_epochs
    from trainers.metric_names import BRANCH_EPOCHS, annealed_key
    from trainers.loop import STATUS_NONFINITE

    m = {"epoch": row["epoch"], "val_acc": row["val_acc"],
         "train_loss": row["train_loss"] if row["train_loss"] is not None else float("nan")}
    if row.get("status") == ct.NONFINITE:
        m["status"] = STATUS_NONFINITE
        return m, 1.0, row["seconds"] or 0.0
    acc, cost, secs = branch_result(row, job)
    if acc is not None:
        m[annealed_key("val")] = acc
        m[BRANCH_EPOCHS] = cost
    # what the real search's ledger counts for this result (gunn-search's budget rule)
    return m, result_epochs(m, row["epoch"] - 1), (row["seconds"] or 0.0) + secs


def simulate(method, lookup: Lookup, concurrency: int, budget_epochs: float,
             max_trials: int = 100_000) -> SearchRecord:
    """Run one search of `method` on `lookup`'s table until the budget is spent or the method
    has finished."""
    rec = SearchRecord()
    heap: list[tuple[float, int, Running]] = []
    seq = 0
    finished = False
    now = 0.0
    max_epochs = lookup.table.epochs

    def fill():
        nonlocal finished
        while not finished and len(heap) < concurrency and rec.trials < max_trials:
            job = method.ask()
            if job == FINISHED:
                finished = True
                return
            if job is None:
                return
            config = lookup.nearest(job.values)
            r = Running(job, config, lookup.curve(config), epoch=job.resume_at)
            rec.trials += 1
            _schedule(r)

    def _schedule(r: Running):
        nonlocal seq
        row = r.curve[r.epoch]
        _, _, secs = epoch_metrics(row, r.job)
        seq += 1
        heapq.heappush(heap, (now + secs, seq, r))

    fill()
    while heap and rec.spent < budget_epochs:
        now, _, r = heapq.heappop(heap)
        row = r.curve[r.epoch]
        metrics, cost, _ = epoch_metrics(row, r.job)
        r.epoch += 1
        rec.spent += cost
        rec.seconds = now
        last = min(r.job.stop_at or max_epochs, max_epochs)
        diverged = metrics.get("status") is not None
        final = r.epoch >= max_epochs and not diverged
        rec.events.append((rec.spent, now, r.job.handle, r.epoch, metrics["val_acc"], final))
        if final:
            rec.finals.append(metrics["val_acc"])
        go_on = method.report(r.job.handle, r.epoch, metrics)
        if go_on and r.epoch < last and not diverged:
            _schedule(r)
        else:
            method.end(r.job.handle, metrics, completed=r.epoch >= last)
        if rec.spent < budget_epochs:
            fill()
    return rec
