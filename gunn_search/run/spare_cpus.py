"""Lend the CPUs a search's ending leaves idle to the trials still training.

At the end of an ASHA search the last promoted trial often trains alone: every trial has been
started, the other slots have nothing left to run, and their cores idle (28 s of a 12-minute
search's 45 s of overhead, benchmarks/RESULTS.md). Tune's `ResourceChangingScheduler` would
hand them over but refuses `reuse_actors=True`, and a cold worker costs more than the tail.
So the driver computes the spare threads (`SpareCPUs`, a Tune callback) and a trial reads them
every couple of seconds of training (`LentThreads`, a step hook) and raises its torch thread
count: same worker, same trial, and the epoch that is running when the tail starts already
gets them.

The spare count lives in a named Ray actor (no CPU of its own) rather than a file, so that any
worker can read it; it is only handed out on a one-node cluster, where a trial's spare threads
are the node's (on several nodes an idle slot may be on another machine).
"""

from __future__ import annotations

import time

import ray
from ray import tune

ACTOR_PREFIX = "gunn_search_spare_cpus:"


@ray.remote(num_cpus=0)
class _Spare:
    """The extra threads each running trial of one experiment may use now."""

    def __init__(self):
        self.extra = 0

    def set(self, extra: int) -> None:
        self.extra = extra

    def get(self) -> int:
        return self.extra


def _name(experiment: str) -> str:
    return ACTOR_PREFIX + experiment


def spare_threads(total: int, created: int, live: int, max_concurrent: int,
                  cpus_per_trial: int) -> int:
    """Extra threads per live trial: the CPUs of the slots the search no longer fills, shared.

    Zero while trials are still to be created (a free slot is about to get a new trial).
    """
    if created < total or live <= 0:
        return 0
    return (max(max_concurrent - live, 0) * cpus_per_trial) // live


class SpareCPUs(tune.Callback):
    """Driver side: after each trial start and end, publish the extra threads per trial."""

    def __init__(self, experiment: str, max_concurrent: int, cpus_per_trial: float):
        self.experiment = experiment
        self.max_concurrent = max_concurrent
        self.cpus_per_trial = max(int(cpus_per_trial), 1)
        self.total: int | None = None
        self._actor = None
        self._published = 0

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.total = total_num_samples
        alive = [n for n in ray.nodes() if n.get("Alive")]
        if len(alive) == 1:  # see the module docstring
            self._actor = _Spare.options(name=_name(self.experiment), get_if_exists=True).remote()

    def _publish(self, trials, ended=None) -> None:
        if self._actor is None or self.total is None:
            return
        live = sum(1 for t in trials if t is not ended and t.status in ("RUNNING", "PENDING"))
        extra = spare_threads(self.total, len(trials), live, self.max_concurrent,
                              self.cpus_per_trial)
        if extra != self._published:
            self._actor.set.remote(extra)
            self._published = extra

    def on_trial_start(self, iteration, trials, trial, **info):
        self._publish(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._publish(trials, ended=trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._publish(trials, ended=trial)

    def __getstate__(self):  # Tune pickles its callbacks into the experiment state
        return {**self.__dict__, "_actor": None, "_published": 0}


class ExtraThreads:
    """Trial side: the extra threads the driver offers now (0 when it offers none)."""

    def __init__(self, experiment: str):
        try:
            self._actor = ray.get_actor(_name(experiment))
        except ValueError:  # no such actor: a cluster of several nodes, or an older driver
            self._actor = None

    def __call__(self) -> int:
        if self._actor is None:
            return 0
        try:
            return int(ray.get(self._actor.get.remote(), timeout=5))
        except Exception:  # the driver is going away; training goes on as it was
            return 0


class LentThreads:
    """Trial side, as a step hook: torch's thread count follows the trial's own CPUs plus what
    the driver lends, looked up at most every `every` seconds (one small actor call)."""

    def __init__(self, experiment: str, own: int, every: float = 2.0):
        self.extra = ExtraThreads(experiment)
        self.own = own
        self.every = every
        self._next = 0.0

    def __call__(self, *step) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        import torch  # trial side only: the driver imports this module without torch

        threads = self.own + self.extra()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
