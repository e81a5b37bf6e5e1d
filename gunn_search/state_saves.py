"""Tune's experiment-state saves: every second, yet never more than ~5 % of the driver's time.

The search has Tune save its experiment state every second (TUNE_GLOBAL_CHECKPOINT_S=1,
docs/runtime.md: a killed driver then loses at most about a second of finished trials). A save
writes the whole experiment, every trial's state (~22 KB each) and the pickled Optuna study, so
its time grows with the trial count: once a second, that made the driver's CPU per trial grow
with the search (0.095 s in the first quarter of a 384-trial search, 0.176 s in the last, on
the 2-core VM; benchmarks/search_growth.py). Tune's own "auto" period bounds the saves to 1/20 of
the time (the period is 19x the last save's time) but never goes under 10 s. `adapt_state_saves`
keeps the configured period (1 s) as the floor and stretches it to 19x the last save's time once
a save takes longer than 1/19 s: Tune's bound, with our floor.

It wraps a private method of Ray Tune (`_ExperimentCheckpointManager.sync_up_experiment_state`,
Ray 2.60); when that is not there, Tune's fixed period stays as it was.
"""

from __future__ import annotations

import functools
import time

from gunn_search import timing

SHARE = 19  # period / save time, as Tune's "auto" mode: saves take at most 1/20 of the time


def adapt_state_saves() -> bool:
    """Make Tune's save period max(configured, SHARE x last save's time); True if in place."""
    try:
        from ray.tune.execution import experiment_state as es
    except ImportError:
        return False
    cls = getattr(es, "_ExperimentCheckpointManager", None)
    orig = getattr(cls, "sync_up_experiment_state", None)
    if orig is None or getattr(orig, "_gunn_adaptive", False):
        return orig is not None
    if not {"_checkpoint_period", "_auto_checkpoint_enabled"} <= set(
            getattr(cls.__init__, "__code__", None) and cls.__init__.__code__.co_names or ()):
        return False  # not the Tune this was written against

    @functools.wraps(orig)
    def sync_up_experiment_state(self, save_fn, force=False, wait=False):
        floor = self.__dict__.setdefault("_gunn_floor", self._checkpoint_period)

        def timed_save():
            t0 = time.monotonic()
            try:
                save_fn()
            finally:
                took = time.monotonic() - t0
                if not self._auto_checkpoint_enabled:  # "auto" adapts on its own
                    self._checkpoint_period = max(floor, SHARE * took)
                timing.add("tune_state_save", took, self._checkpoint_period)

        return orig(self, timed_save, force=force, wait=wait)

    sync_up_experiment_state._gunn_adaptive = True
    cls.sync_up_experiment_state = sync_up_experiment_state
    return True
