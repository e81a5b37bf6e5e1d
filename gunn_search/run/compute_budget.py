"""The search's compute budget: epochs (every trial's, annealing-branch epochs included), wall
time, and GPU-hours; counted in one place (`Ledger`), read by the stopper, the searcher, the
progress line, the summary and `--resume`.

Why not Tune's own: `TuneConfig(time_budget_s)` ends the experiment at once, leaving the trials
still training RUNNING in the Optuna study and in MLflow, and no Tune setting counts epochs.
Here, once the budget is spent, the searcher suggests no more trials (`Searcher.FINISHED`) and
every trial still training stops at its next result, recorded as `stopped by budget`
(`budget_stopper.BudgetStopper`, Tune's side). A trial is thus at most one epoch past the
budget. This module needs no Ray: the space's schema parses durations with it.

The spent budget lives in `<experiment>.budget.json` beside Tune's experiment folder (through the
state file's pyarrow file systems: a storage URI works too), written atomically after every
result, so a killed search (kill -9 too) resumes with what was left. The stopper and the
searcher are pickled apart by Tune; both find the one ledger of their experiment folder in
`_LEDGERS`, read from the file on first use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from trainers.metric_names import BRANCH_EPOCHS

from gunn_search.space.compute_limits import UNBOUNDED, fmt_duration, parse_duration

__all__ = ["UNBOUNDED", "parse_duration", "Limits", "Ledger", "ledger"]  # the first two: the space's

FILE = "budget.json"


def location(experiment_path: str) -> tuple[str, str]:
    """(folder, file name) of a search's ledger: `<storage>/<experiment>.budget.json`, beside
    its experiment folder, not in it. Tune syncs a resumed experiment's folder from the copy it
    downloaded at the restore, which would put back the ledger as it was then."""
    folder, _, name = experiment_path.rstrip("/").rpartition("/")
    return folder or ".", f"{name}.{FILE}"


@dataclass(frozen=True)
class Limits:
    """What a search may spend; None: no limit of that kind."""

    epochs: float | None = None
    seconds: float | None = None
    gpu_seconds: float | None = None

    @classmethod
    def of(cls, search) -> "Limits":
        return cls(search.budget_epochs,
                   parse_duration(search.time_budget) if search.time_budget else None,
                   search.budget_gpu_hours * 3600 if search.budget_gpu_hours else None)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.epochs, self.seconds, self.gpu_seconds))


def result_epochs(result: dict, trained_before: int) -> float:
    """What one result of a trial spent, in epochs: the epochs trained since the trial's
    previous result and the annealing branch after it (one rule for the search and the
    simulator)."""
    epoch = int(result.get("epoch", 0) or 0)
    if epoch <= trained_before:  # Tune's repeat of a last result, or an epoch counted already
        return 0.0
    return epoch - trained_before + float(result.get(BRANCH_EPOCHS) or 0.0)


@dataclass
class Ledger:
    """The budget spent by the search whose experiment folder is `folder` (`location`)."""

    folder: str
    epochs: float = 0.0
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    trials: dict[str, int] = field(default_factory=dict)  # trial id -> epochs it trained
    _tick: float = field(default_factory=lambda: time.monotonic(), repr=False)

    @classmethod
    def load(cls, folder: str) -> "Ledger":
        from gunn_search.run.state_file import read_state

        try:
            data = read_state(*location(folder)) or {}
        except (OSError, ValueError):  # unreadable: a search must not die of its ledger
            data = {}
        return cls(folder, float(data.get("epochs", 0)), float(data.get("seconds", 0)),
                   float(data.get("gpu_seconds", 0)), dict(data.get("trials", {})))

    def save(self) -> None:
        from gunn_search.run.state_file import write_state

        write_state(*location(self.folder)[:1], {
            "epochs": self.epochs, "seconds": self.seconds, "gpu_seconds": self.gpu_seconds,
            "trials": self.trials}, location(self.folder)[1])

    def clock(self) -> None:
        """Count the wall time since the last tick (the driver's: time it was dead is not)."""
        now = time.monotonic()
        self.seconds += now - self._tick
        self._tick = now

    def add(self, trial_id: str, result: dict, gpus: float) -> None:
        self.clock()
        before = self.trials.get(trial_id, 0)
        spent = result_epochs(result, before)
        self.epochs += spent
        if spent:  # a repeated result held no GPU again
            self.gpu_seconds += gpus * float(result.get("time_this_iter_s") or 0.0)
        self.trials[trial_id] = max(before, int(result.get("epoch", 0) or 0))
        self.save()

    def exhausted(self, limits: Limits) -> bool:
        self.clock()
        return ((limits.epochs is not None and self.epochs >= limits.epochs - 1e-9)
                or (limits.seconds is not None and self.seconds >= limits.seconds)
                or (limits.gpu_seconds is not None and self.gpu_seconds >= limits.gpu_seconds))

    def left(self, limits: Limits) -> float | None:
        """The share of the budget left (0 to 1), by the kind nearest its end; None without."""
        shares = [1 - spent / cap for spent, cap in ((self.epochs, limits.epochs),
                                                      (self.seconds, limits.seconds),
                                                      (self.gpu_seconds, limits.gpu_seconds))
                  if cap]
        return max(0.0, min(shares)) if shares else None

    def describe(self, limits: Limits) -> str:
        """"52/120 epochs, 0h41m/2h00m": what is spent of each limit."""
        parts = []
        if limits.epochs is not None:
            parts.append(f"{self.epochs:g}/{limits.epochs:g} epochs")
        if limits.seconds is not None:
            parts.append(f"{fmt_duration(self.seconds)}/{fmt_duration(limits.seconds)}")
        if limits.gpu_seconds is not None:
            parts.append(f"{self.gpu_seconds / 3600:.2f}/{limits.gpu_seconds / 3600:g} GPU-hours")
        return ", ".join(parts)


_LEDGERS: dict[str, Ledger] = {}


def ledger(folder: str) -> Ledger:
    """The one ledger of the search in `folder` in this process."""
    if folder not in _LEDGERS:
        _LEDGERS[folder] = Ledger.load(folder)
    return _LEDGERS[folder]


def forget(folder: str) -> None:
    """Drop the in-process ledger (a search that ended, or a test's second driver)."""
    _LEDGERS.pop(folder, None)


def trials_text(s, path: str) -> str:
    """"32 trials", or with a budget "trials until 120 epochs are spent (at most 32; 40 spent
    already)": the first line's count."""
    if not s.has_budget:
        return f"{s.num_samples} trials"
    book, limits = ledger(path), Limits.of(s)
    out = f"trials until the budget is spent ({book.describe(limits)}"
    out += f"; at most {s.num_samples} trials)" if s.num_samples < UNBOUNDED else ")"
    return out


def summary(s, path: str, trials: int) -> str | None:
    """"spent 121/120 epochs on 17 trials": the summary's budget line; None without one."""
    if not s.has_budget:
        return None
    return f"spent {ledger(path).describe(Limits.of(s))} on {trials} trials"
