"""Search progress on stderr: trials running / done / stopped early / failed, best so far."""

from __future__ import annotations

import sys
import time

from ray import tune

from gunn_search.trial_status import METRIC, Kind, TrialStatus


class ProgressCallback(tune.Callback):
    """Prints a status line when something changes, at most every `every` seconds."""

    def __init__(self, num_samples: int, every: float = 5.0):
        self.num_samples = num_samples
        self.every = every
        self._reset()

    def _reset(self):
        self.start = time.time()
        self.last = 0.0
        self.best: tuple[float, str] | None = None
        self.done = self.stopped = self.failed = 0
        self.running: set[str] = set()

    def __getstate__(self):
        return {"num_samples": self.num_samples, "every": self.every}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._print(force=False)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        v = result.get(METRIC)
        if isinstance(v, (int, float)) and (self.best is None or v > self.best[0]):
            self.best = (float(v), trial.trial_id)
        self._print(force=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        last = TrialStatus((trial.last_result or {}).get("trial_status", TrialStatus.RUNNING))
        if last.kind is Kind.RUNNING:  # epochs left: ASHA stopped it
            self.stopped += 1
        else:
            self.done += 1
        self._print(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._print(force=True)

    def _print(self, force: bool):
        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        best = f"best {METRIC} {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        print(f"gunn-search: [{now - self.start:6.0f}s] trials {len(self.running)} running, "
              f"{self.done} finished, {self.stopped} stopped early, {self.failed} errored "
              f"of {self.num_samples} | {best}", file=sys.stderr, flush=True)
