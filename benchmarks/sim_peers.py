"""Other packages' multi-fidelity searches as simulator methods (`sim_methods.py` says how each
is set up): DEHB through its ask/tell interface, Syne Tune's ASHA and BOHB through their
TrialScheduler interface. Each decides with its package's own code; only the calls are here."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from datetime import datetime

import numpy as np
from sim_engine import Job

from gunn_search.status import METRIC


def _values(space, decode, config) -> dict:
    """A peer's configuration as a sampler's values (what the engine looks up): the space's
    own sampling function answered with the decoded values (`sample`, an Optuna FixedTrial)."""
    from optuna.trial import FixedTrial

    from gunn_search.space.sample import sample

    return sample(FixedTrial(decode(config)), space)


def _val_acc(metrics: dict) -> float:
    """An epoch's val_acc as the peers are told it: 0 for a non-finite loss, as the search
    tells it."""
    return 0.0 if metrics.get("status") else metrics["val_acc"]


class DehbPeer:
    """DEHB as `peer_dehb.py` sets it up (`config_space`, `make_dehb`): every evaluation trains
    from scratch to its fidelity and is told as it ends."""

    def __init__(self, space, seed: int):
        from peer_dehb import config_space, flat_space, make_dehb

        self.space = space
        cs, _ = config_space(space, seed)
        self.decode = flat_space(space)[1]
        out = tempfile.mkdtemp(prefix="gunn-dehb-sim-")
        try:  # its folder holds its log file only: with save_freq "end", tell writes nothing
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.dehb = make_dehb(cs, seed, space.max_epochs, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        self.jobs: dict[int, tuple[dict, int]] = {}

    def ask(self):
        with warnings.catch_warnings():  # dehb 0.1.2 calls ConfigSpace's deprecated names
            warnings.simplefilter("ignore", DeprecationWarning)
            job = self.dehb.ask()
        fidelity = max(1, int(round(job["fidelity"])))
        n = len(self.jobs)
        self.jobs[n] = (job, fidelity)
        return Job(_values(self.space, self.decode, job["config"]), stop_at=fidelity, handle=n)

    def report(self, n: int, epoch: int, metrics: dict) -> bool:
        return True  # the engine stops it at its fidelity (or at a non-finite loss)

    def end(self, n: int, metrics: dict, completed: bool) -> None:
        job, fidelity = self.jobs[n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.dehb.tell(job, {"fitness": 1.0 - _val_acc(metrics), "cost": float(fidelity)})


class SyneTunePeer:
    """Syne Tune's ASHA or BOHB (asynchronous successive halving, stopping), driven as its
    Tuner drives a scheduler (`Tuner._update_running_trials`, 0.16): each result to
    `on_trial_result`; a STOP to `on_trial_remove`; a trial that ends on its own (a non-finite
    loss) to `on_trial_complete` with its last result."""

    def __init__(self, space, seed: int, kind: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hugging Face hub
        from syne_tune.optimizer.baselines import ASHA, BOHB
        from syne_tune.optimizer.scheduler import SchedulerDecision

        # 0.16's baselines pass points_to_evaluate twice and its searcher warns of it each time
        logging.getLogger("syne_tune.optimizer.schedulers.searchers."
                          "last_value_multi_fidelity_searcher").setLevel(logging.ERROR)

        self.space = space
        # 0.16's random searcher (ASHA's, BOHB's before its KDE fits and its random fraction)
        # and the bracket draw sample from numpy's global generator, not the scheduler's seeded
        # one: each peer has that generator's state of its own, seeded, swapped in for its calls
        self.rng_state = np.random.RandomState(seed).get_state()
        config, self.decode = synetune_space(space)
        cls = {"asha": ASHA, "bohb": BOHB}[kind]
        self.scheduler = cls(config, metric=METRIC, do_minimize=False,
                             time_attr="epoch", max_t=space.max_epochs, grace_period=1,
                             reduction_factor=3, random_seed=seed)
        self.decision = SchedulerDecision
        self.trials: dict[int, object] = {}
        self.last: dict[int, dict] = {}
        self.removed: set[int] = set()

    def _call(self, method: str, *args):
        """The scheduler's `method`, with this peer's state of numpy's global generator."""
        outer = np.random.get_state()
        np.random.set_state(self.rng_state)
        try:
            with warnings.catch_warnings():  # statsmodels' KDE (BOHB) on the global generator
                warnings.simplefilter("ignore", FutureWarning)
                # and its bandwidth on a choice of one level (a dimension every good point
                # shares) divides by zero: BOHB goes on with the other dimensions' kernels
                warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
                return getattr(self.scheduler, method)(*args)
        finally:
            self.rng_state = np.random.get_state()
            np.random.set_state(outer)

    def ask(self):
        from syne_tune.backend.trial_status import Trial

        suggestion = self._call("suggest")
        if suggestion is None:
            return None
        n = len(self.trials)
        trial = Trial(trial_id=n, config=suggestion.config, creation_time=datetime.now())
        self.trials[n] = trial
        self._call("on_trial_add", trial)
        return Job(_values(self.space, self.decode, trial.config), handle=n)

    def report(self, n: int, epoch: int, metrics: dict) -> bool:
        trial = self.trials[n]
        result = {"epoch": epoch, METRIC: _val_acc(metrics)}
        decision = self._call("on_trial_result", trial, result)
        self.last[n] = result
        if decision == self.decision.PAUSE:
            raise RuntimeError("sim_peers: a stopping scheduler paused a trial")
        if decision == self.decision.STOP:
            self._call("on_trial_remove", trial)
            self.removed.add(n)
            return False
        return True

    def end(self, n: int, metrics: dict, completed: bool) -> None:
        if n not in self.removed:
            self._call("on_trial_complete", self.trials[n], self.last[n])


def synetune_space(space):
    """Syne Tune's config space of `space`'s searched dimensions, from the flat list
    `peer_dehb.flat_space` makes (a choice a `choice` of its labels, a stepped range an
    `ordinal` of its grid's, an integer range `randint` or `lograndint`, a float range
    `uniform` or `loguniform`), and the function turning a configuration back into the space's
    values (`flat_space`'s `decode`, clipped to the ranges)."""
    from peer_dehb import flat_space
    from syne_tune import config_space as st

    dims, decode = flat_space(space, "sim_peers")
    ranges = {path: spec[:2] for path, kind, spec in dims if kind in ("int", "float")}
    config = {}
    for path, kind, spec in dims:
        if kind == "choice":
            config[path] = st.choice(spec)
        elif kind == "ordinal":
            config[path] = st.ordinal(spec, kind="equal")
        elif kind == "int":
            config[path] = (st.lograndint if spec[2] else st.randint)(spec[0], spec[1])
        else:
            config[path] = (st.loguniform if spec[2] else st.uniform)(spec[0], spec[1])

    def clipped(suggested) -> dict:
        """0.16's KDE (BOHB) can suggest an integer below its range (its integer encoding's
        offset ignores the lower bound): looked up at the range's end, as the nearest recorded
        configuration would be; the scheduler keeps the trial's config as it suggested it."""
        values = decode(suggested)
        for path, (low, high) in ranges.items():
            values[path] = min(max(values[path], low), high)
        return values

    return config, clipped
