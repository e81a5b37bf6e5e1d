"""Search progress on stderr: trials by state, epochs done of the budget, best so far, time.

On a terminal it is one live line, redrawn in place (at most twice a second); in a pipe or a
log file, plain lines when something changes (at most every `every` seconds), so a log stays
readable.
"""

from __future__ import annotations

import sys
import time

from ray import tune

from trainers.metric_names import BRANCH_EPOCHS

from gunn_search.space.compute_limits import fmt_duration
from gunn_search.status import METRIC, Kind, status_of


class ProgressCallback(tune.Callback):
    """Counts trials and epochs as Tune reports them and draws the status line."""

    def __init__(self, num_samples: int, max_epochs: int = 1, every: float = 5.0,
                 stream=None, branch_epochs: float = 0.0, budget: tuple | None = None):
        self.num_samples = num_samples
        # (experiment folder, compute_budget.Limits): the line counts down the budget's ledger
        self.budget = budget
        self.max_epochs = max_epochs
        # The epochs a trial that goes all the way spends in annealing branches at its rungs:
        # they count in the epochs done and in the budget (gunn_search/run/scheduler.py).
        self.branch_epochs = branch_epochs
        self.every = every
        self.stream = stream
        self._reset()

    def _reset(self):
        self.start = time.time()
        self.last = 0.0
        self.best: tuple[float, str] | None = None
        self.done = self.stopped = self.failed = 0
        self.running: dict[str, int] = {}  # trial id -> epochs it has trained
        self.epochs = 0.0  # epochs trained so far (branches included), all trials
        self.started: set[str] = set()
        self._drawn = False

    def __getstate__(self):
        return {"num_samples": self.num_samples, "max_epochs": self.max_epochs,
                "every": self.every, "branch_epochs": self.branch_epochs,
                "budget": self.budget}

    def __setstate__(self, state):
        state.setdefault("budget", None)  # pickled before budgets existed
        self.__dict__.update(state)
        self.stream = None
        self._reset()

    @property
    def out(self):
        return self.stream if self.stream is not None else sys.stderr

    @property
    def live(self) -> bool:
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False

    # --- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.setdefault(trial.trial_id, 0)
        self.started.add(trial.trial_id)
        self._print(force=False)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        status = status_of(result)
        epoch = int(result.get("epoch", 0))
        if status.has_result and epoch > self.running.get(trial.trial_id, 0):
            self.epochs += epoch - self.running.get(trial.trial_id, 0)
            self.epochs += float(result.get(BRANCH_EPOCHS) or 0.0)
            self.running[trial.trial_id] = epoch
        v = result.get(METRIC)
        if status.has_result and isinstance(v, (int, float)) and (
                self.best is None or v > self.best[0]):
            self.best = (float(v), trial.trial_id)
        self._print(force=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.pop(trial.trial_id, None)
        last = status_of(trial.last_result, ended=True)
        if last.kind is Kind.STOPPED:
            self.stopped += 1
        elif last.kind in (Kind.FAILED, Kind.REJECTED):
            self.failed += 1
        else:
            self.done += 1
        self._print(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.pop(trial.trial_id, None)
        self.failed += 1
        self._print(force=True)

    def on_experiment_end(self, trials, **info):
        if self._drawn:
            self.out.write("\n")  # leave the last live line in place
            self.out.flush()

    # --- the line --------------------------------------------------------------------------
    @property
    def trial_epochs(self) -> float:
        """The most a trial costs: its epochs and its branches."""
        return self.max_epochs + self.branch_epochs

    def remaining_epochs(self) -> float:
        """At most this many epochs are left: unstarted trials in full, running ones' rest
        (a running trial's branches counted as if none had run yet: an upper bound)."""
        unstarted = max(0, self.num_samples - len(self.started))
        return unstarted * self.trial_epochs + sum(self.trial_epochs - e
                                                   for e in self.running.values())

    def budget_parts(self, elapsed: float) -> list[str]:
        """The budget's part of the line: what is spent of each limit, and when it runs out at
        this session's pace."""
        from gunn_search.run.compute_budget import UNBOUNDED, ledger

        folder, limits = self.budget
        book = ledger(folder)
        of = "" if self.num_samples >= UNBOUNDED else f" of at most {self.num_samples}"
        parts = [f"trials {len(self.running)} running, {self.done} done, {self.stopped} stopped "
                 f"early, {self.failed} failed{of}", f"budget {book.describe(limits)}",
                 f"best {METRIC} {self.best[0]:.4f} ({self.best[1]})" if self.best
                 else "no result yet", fmt_duration(elapsed)]
        etas = []
        if limits.epochs is not None and self.epochs:
            etas.append(max(0.0, limits.epochs - book.epochs) * elapsed / self.epochs)
        if limits.seconds is not None:
            etas.append(max(0.0, limits.seconds - book.seconds))
        if limits.gpu_seconds is not None and book.gpu_seconds and elapsed:
            etas.append(max(0.0, limits.gpu_seconds - book.gpu_seconds) * elapsed
                        / book.gpu_seconds)
        if etas:
            parts.append(f"ETA <= {fmt_duration(min(etas))}")
        return parts

    def line(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        elapsed = now - self.start
        if self.budget is not None:
            return " | ".join(self.budget_parts(elapsed))
        budget = self.num_samples * self.trial_epochs
        parts = [f"trials {len(self.running)} running, {self.done} done, {self.stopped} stopped "
                 f"early, {self.failed} failed of {self.num_samples}",
                 f"epochs {self.epochs:g}/{budget:g}",
                 f"best {METRIC} {self.best[0]:.4f} ({self.best[1]})" if self.best
                 else "no result yet",
                 fmt_duration(elapsed)]
        left = self.remaining_epochs()
        if self.epochs and left:
            # ASHA stops trials early, so the budget's rest is an upper bound
            parts.append(f"ETA <= {fmt_duration(left * elapsed / self.epochs)}")
        return " | ".join(parts)

    def _print(self, force: bool):
        now = time.time()
        if self.live:
            if not force and now - self.last < 0.5:
                return
            self.last = now
            self.out.write(f"\r\x1b[2Kgunn-search: {self.line(now)}")
            self._drawn = True
        else:
            if not force and now - self.last < self.every:
                return
            self.last = now
            self.out.write(f"gunn-search: [{now - self.start:6.0f}s] {self.line(now)}\n")
        self.out.flush()
