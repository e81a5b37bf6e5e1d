"""Does the simulator decide as the real search does? A real search's results, fed to the
simulator's `TuneSearch` in the order the real driver handled them, must give the same
decisions: the same configuration suggested next, the same trials stopped at the same rungs.

What it checks
    One real search (`build_tuner`, the real trainable and Ray Tune, as `gunn-search` runs it) on
    the digits problem of `digits_problem.py` shortened to `--epochs` epochs, with ASHA rungs at
    1, 2, 4 and half-epoch branches so that several rungs decide. Its searcher logs every call the
    driver makes on it (suggest, on_trial_complete) and a Tune callback every result, in order.
    The log is then replayed into a fresh `sim_methods.TuneSearch` built from the same space:
    each suggestion is compared with the real one (every config value), each result's decision
    (go on, or not) with what the real trial did next.

Usage
    python benchmarks/sim_check.py [--epochs 6] [--samples 8] [--seed 0]

Machine and result: benchmarks/RESULTS.md, "Simulated searches".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
from pathlib import Path

from gunn_search.run.searcher import StoppedAsPrunedOptunaSearch

REPO = Path(__file__).resolve().parent.parent
LOG: list[tuple] = []  # the driver's calls, in order (the driver is this process)


class RecordingSearch(StoppedAsPrunedOptunaSearch):
    """The search's own searcher, logging what the driver asks of it."""

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if config is not None:
            LOG.append(("suggest", trial_id, dict(config)))
        return config

    def on_trial_complete(self, trial_id, result=None, error=False):
        LOG.append(("complete", trial_id, dict(result or {})))
        return super().on_trial_complete(trial_id, result, error)


def check_space(epochs: int, samples: int, seed: int):
    from digits_problem import problem_space

    return problem_space(seed, epochs=epochs, seed=seed, num_samples=samples, max_concurrent=2,
                         grace_period=1, reduction_factor=2, branch_epochs=0.5)


def run_real(space) -> list[tuple]:
    import ray
    from ray import tune

    class Results(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            LOG.append(("result", trial.trial_id, dict(result)))

    def recording(searcher):
        searcher.__class__ = RecordingSearch

    LOG.clear()
    started = not ray.is_initialized()  # Tuner.fit() starts Ray; stop it only if it did
    try:
        return _fit(space, Results, recording)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _fit(space, Results, recording) -> list[tuple]:
    from gunn_search.run.search import SearchOptions, build_tuner

    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(space_path="(in memory)", experiment="sim_check",
                             tracking_uri="unused", storage=tmp)
        tuner = build_tuner(space, opts, callbacks=[Results()], on_searcher=recording)
        with contextlib.redirect_stdout(sys.stderr):
            grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if errors:
            raise RuntimeError(f"the real search had errors: {errors[0]!r}"[:300])
    return list(LOG)


def same_values(a: dict, b: dict, paths) -> bool:
    for p in paths:
        x, y = a.get(p), b.get(p)
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None or not math.isclose(x, y, rel_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


def replay(space, log: list[tuple]) -> tuple[int, int, list[str]]:
    """(suggestions compared, decisions compared, mismatches) of `log` replayed."""
    from sim_methods import TuneSearch

    sim = TuneSearch(space)
    ids: dict[str, str] = {}
    later = {}  # real trial id -> epochs it reported, to tell what it did after each
    for kind, tid, data in log:
        if kind == "result":
            later.setdefault(tid, []).append(int(data["epoch"]))
    suggestions = decisions = 0
    bad: list[str] = []
    for kind, tid, data in log:
        if kind == "suggest":
            job = sim.ask()
            suggestions += 1
            if job is None or isinstance(job, str):
                bad.append(f"suggestion {suggestions}: the simulator gave {job!r}")
                continue
            ids[tid] = job.handle
            if not same_values(job.values, data, space.config_paths):
                bad.append(f"suggestion {suggestions}: {job.values} != {data}")
        elif kind == "result":
            epoch = int(data["epoch"])
            go_on = sim.report(ids[tid], epoch, data) and epoch < space.max_epochs
            real = any(e > epoch for e in later[tid])
            decisions += 1
            if go_on != real:
                bad.append(f"trial {tid} epoch {epoch}: simulator {'goes on' if go_on else 'stops'}"
                           f", the real search {'went on' if real else 'stopped'}")
        elif kind == "complete":
            sim.end(ids[tid], data, completed=True)
    return suggestions, decisions, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    space = check_space(args.epochs, args.samples, args.seed)
    log = run_real(space)
    n_s, n_d, bad = replay(space, log)
    stops = sum(1 for k, _, d in log if k == "complete" and int(d.get("epoch", 0)) < args.epochs)
    print(f"real search: {n_s} trials, {n_d} results, {stops} stopped at a rung; replayed: "
          f"{n_s - sum(b.startswith('suggestion') for b in bad)}/{n_s} suggestions and "
          f"{n_d - sum(not b.startswith('suggestion') for b in bad)}/{n_d} decisions the same")
    for b in bad:
        print("  " + b)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    sys.exit(main())
