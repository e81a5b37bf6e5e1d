"""Search efficiency: ASHA + Optuna TPE (gunn-search) vs random search + FIFO, same epoch budget.

What it measures
    On `digits` with a space derived from smoke.yaml (6 epochs per trial instead of 4, everything
    else as in smoke.yaml: two GUNN stages with n in {4,8}, P in [2,4], K in [1,2], log lr and
    weight decay, momentum fixed at 0.9 (smoke.yaml now searches it too); ASHA grace 1 (or
    --grace), reduction factor 2; 2 trials at a time, 1 CPU each), for each seed:

    1. ASHA+TPE: the Tuner that `gunn-search` runs, built by `gunn_search.search.build_tuner`
       (OptunaSearch(TPESampler(seed)) in a ConcurrencyLimiter, ASHAScheduler, the real
       `train_trial` trainable), `num_samples` 12. No MLflow callback (not needed here).
    2. random+FIFO: the same trainable, the same define-by-run sampler (`define_by_run(space)`)
       with optuna's RandomSampler(seed), the same ConcurrencyLimiter, FIFOScheduler (no early
       stopping, every trial runs its 6 epochs) and a Tune Stopper that ends the experiment once
       it has used as many epochs as ASHA+TPE used for that seed (a trial still running then may
       add one more epoch; the table shows the epochs actually used).

    The search seed is also the training seed of every trial (the space's `seed` is set to
    `search.seed`), so both methods train a given configuration identically. An "epoch used" is
    one per-epoch result received by the driver (a recording Tune callback, in arrival order),
    so "epochs to target" is the number of epochs the whole search had consumed, across its
    concurrent trials, when one of its trials first reported val_acc >= target. Target: per
    seed, the lower of the two methods' best val_acc (a level both reached), and also the fixed
    0.9 (reported where reached).
    The validation set is 10 % of the digits training split (144 images), so one image is 0.0069.

Usage
    python benchmarks/search_efficiency.py [--seeds 0 1 2] [--num-samples 12] [--epochs 6] [--grace G]
        [--reduction-factor R] [--schedule cosine|step]

Machine and result, session 3 (2026-11-23 18:06-18:35, 2-core x86-64 VM, no GPU, load 0.8-2.2):
the bundled CIFAR spaces' ASHA shape, `--num-samples 24 --epochs 12 --grace 2
--reduction-factor 3 --schedule step`, 4 seeds: mean best 0.9792 (ASHA+TPE) vs 0.9809
(random+FIFO), a quarter of one validation image apart; epochs to 0.9 summed over seeds 121 vs
142 (ASHA+TPE sooner on 3 seeds, equal on 1). A tie at the top on digits, where most
configurations trained to the end saturate near 0.98.

Session 2, smoke.yaml's own shape (12 trials, 6 epochs, cosine), 8 seeds each:

| ASHA grace | ASHA+TPE better / tie / worse | mean best ASHA+TPE vs random+FIFO | epochs to common target (sum) |
|---:|---|---|---|
| 1 | 1 / 3 / 4 | 0.792 vs 0.826 | 186 vs 136 |
| 2 | 2 / 2 / 4 | 0.828 vs 0.928 | 254 vs 170 |

There ASHA+TPE did not beat random+FIFO. Per-seed tables and the reasons seen in them are in
benchmarks/RESULTS.md ("Search efficiency").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_space(seed: int, num_samples: int, epochs: int, grace: int | None = None,
               reduction_factor: int | None = None, schedule: str | None = None):
    import copy

    from gunn_search.space import load_space, parse_space

    data = copy.deepcopy(load_space("smoke.yaml").data)
    data["name"] = f"efficiency_s{seed}"
    data["epochs"] = epochs
    data["seed"] = seed  # the trials' training seed = the searcher's, as when these were measured
    # The space these results were measured on searched lr and weight decay with the default
    # momentum; smoke.yaml now searches momentum as well: keep it fixed.
    data.setdefault("optim", {})["momentum"] = 0.9
    # 1 CPU and no GPU per trial, as measured (the random+FIFO Tuner below takes the numbers as is).
    data.setdefault("resources", {}).update(cpus_per_trial=1, gpus_per_trial=0)
    data["search"].update(num_samples=num_samples, seed=seed)
    if grace is not None:
        data["search"]["grace_period"] = grace
    if reduction_factor is not None:
        data["search"]["reduction_factor"] = reduction_factor
    if schedule is not None:
        data.setdefault("schedule", {})["kind"] = schedule
    return parse_space(data, "search_efficiency")


def recorder_cls():
    from ray import tune

    from gunn_search.trial_status import TrialStatus

    class Recorder(tune.Callback):
        """Every per-epoch result in the order the driver receives it."""

        def __init__(self):
            self.events: list[dict] = []
            self.t0 = time.time()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("trial_status") == TrialStatus.REJECTED:
                return
            self.events.append({"t": time.time() - self.t0, "trial": trial.trial_id,
                                "epoch": int(result.get("epoch", 0)),
                                "val_acc": float(result.get("val_acc", 0.0)),
                                "config": {k: v for k, v in result.get("config", {}).items()
                                           if k in ("optim.lr", "optim.weight_decay")
                                           or k.startswith("model.stages.")}})

    return Recorder


def budget_stopper_cls():
    from ray.tune.stopper import Stopper

    from gunn_search.trial_status import TrialStatus

    class EpochBudget(Stopper):
        """Stop the whole experiment once `budget` per-epoch results have come in."""

        def __init__(self, budget: int):
            self.budget, self.seen = budget, set()

        def __call__(self, trial_id, result):
            # Tune hands the stopper the last result of a finished trial a second time (its
            # "duplicate" done result is replaced by trial.last_result): count each epoch once.
            if result.get("trial_status") != TrialStatus.REJECTED:
                self.seen.add((trial_id, result.get("training_iteration")))
            return False

        def stop_all(self):
            return len(self.seen) >= self.budget

    return EpochBudget


def run_asha_tpe(space, storage: Path) -> tuple[list[dict], float]:
    from gunn_search.search import SearchOptions, build_tuner

    rec = recorder_cls()()
    opts = SearchOptions(space_path="(in memory)", experiment=space.name,
                         tracking_uri="unused", storage=str(storage))
    tuner = build_tuner(space, opts, callbacks=[rec])
    t = time.time()
    grid = fit(tuner)
    return rec.events, time.time() - t, grid


def fit(tuner):
    """tuner.fit() with Tune's banner on stderr (stdout is for the table); the trials' end states."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    states = {}
    for r in grid:
        tid = (r.metrics or {}).get("trial_id", "?")
        states[tid] = {"error": None if r.error is None else repr(r.error)[:300],
                       "epochs": (r.metrics or {}).get("epoch"),
                       "status": (r.metrics or {}).get("trial_status")}
    return states


def run_random_fifo(space, storage: Path, budget: int) -> tuple[list[dict], float]:
    import optuna
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from gunn_search.space import define_by_run
    from gunn_search.trainable import METRIC, train_trial

    s = space.search
    rec = recorder_cls()()
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, space=space),
        {"cpu": space.resources.cpus_per_trial, "gpu": space.resources.gpus_per_trial})
    searcher = ConcurrencyLimiter(
        OptunaSearch(space=define_by_run(space), metric=METRIC, mode=s.mode,
                     sampler=optuna.samplers.RandomSampler(seed=s.seed)),
        max_concurrent=s.max_concurrent)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=METRIC, mode=s.mode, search_alg=searcher,
                                    scheduler=FIFOScheduler(),
                                    num_samples=math.ceil(budget / space.max_epochs)),
        run_config=tune.RunConfig(name=f"{space.name}_random", storage_path=str(storage),
                                  callbacks=[rec], stop=budget_stopper_cls()(budget), verbose=0))
    t = time.time()
    grid = fit(tuner)
    return rec.events, time.time() - t, grid


def summarize(events: list[dict]) -> dict:
    best, curve = 0.0, []
    for e in events:
        best = max(best, e["val_acc"])
        curve.append(best)
    trials = {e["trial"] for e in events}
    full = {e["trial"] for e in events if e["epoch"] >= max(x["epoch"] for x in events)}
    return {"best": best, "epochs": len(events), "trials": len(trials),
            "full_trials": len(full), "curve": curve}


def epochs_to(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), None)


def fmt_n(n) -> str:
    return "not reached" if n is None else str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--num-samples", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--fixed-target", type=float, default=0.9)
    ap.add_argument("--grace", type=int, help="ASHA grace period (default: smoke.yaml's)")
    ap.add_argument("--reduction-factor", type=int,
                    help="ASHA reduction factor (default: smoke.yaml's, 2)")
    ap.add_argument("--schedule", choices=["cosine", "step"],
                    help="lr schedule (default: smoke.yaml's, cosine; the CIFAR spaces use step)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep Tune's storage directory")
    args = ap.parse_args()

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # as gunn-search does
    import ray

    storage = Path(tempfile.mkdtemp(prefix="gunn-efficiency-"))
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t_all = time.time()
    # "local": a fresh instance even if a `ray start` cluster is recorded in /tmp/ray.
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")
    rows = []
    try:
        for seed in args.seeds:
            space = make_space(seed, args.num_samples, args.epochs, args.grace,
                               args.reduction_factor, args.schedule)
            print(f"seed {seed}: ASHA+TPE ... (load {os.getloadavg()[0]:.1f})", file=sys.stderr,
                  flush=True)
            ev_a, wall_a, grid_a = run_asha_tpe(space, storage)
            a = summarize(ev_a)
            print(f"seed {seed}: ASHA+TPE best {a['best']:.4f} in {a['epochs']} epochs "
                  f"({wall_a:.0f} s); random+FIFO ...", file=sys.stderr, flush=True)
            ev_r, wall_r, grid_r = run_random_fifo(space, storage, budget=a["epochs"])
            r = summarize(ev_r)
            print(f"seed {seed}: random+FIFO best {r['best']:.4f} in {r['epochs']} epochs "
                  f"({wall_r:.0f} s)", file=sys.stderr, flush=True)
            common = min(a["best"], r["best"])
            rows.append({"seed": seed, "asha": a, "random": r, "wall_asha": wall_a,
                         "wall_random": wall_r, "common": common,
                         "asha_to_common": epochs_to(a["curve"], common),
                         "random_to_common": epochs_to(r["curve"], common),
                         "asha_to_fixed": epochs_to(a["curve"], args.fixed_target),
                         "random_to_fixed": epochs_to(r["curve"], args.fixed_target),
                         "events": {"asha": ev_a, "random": ev_r},
                         "trials": {"asha": grid_a, "random": grid_r}})
    finally:
        ray.shutdown()
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ft = args.fixed_target
    lines = [
        f"| seed | method | trials (run all {args.epochs} epochs) | epochs used | best val_acc | "
        f"target = lower best | epochs to target | epochs to {ft:g} | wall s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for key, name in (("asha", "ASHA+TPE"), ("random", "random+FIFO")):
            m = row[key]
            lines.append(f"| {row['seed']} | {name} | {m['trials']} ({m['full_trials']}) | "
                         f"{m['epochs']} | {m['best']:.4f} | {row['common']:.4f} | "
                         f"{fmt_n(row[f'{key}_to_common'])} | {fmt_n(row[f'{key}_to_fixed'])} | "
                         f"{row[f'wall_{key}']:.0f} |")
    wins = sum(1 for r in rows if r["asha"]["best"] > r["random"]["best"])
    ties = sum(1 for r in rows if r["asha"]["best"] == r["random"]["best"])
    lines.append("")
    lines.append(f"ASHA+TPE best > random+FIFO best in {wins} of {len(rows)} seeds "
                 f"({ties} ties); mean best {sum(r['asha']['best'] for r in rows) / len(rows):.4f} "
                 f"vs {sum(r['random']['best'] for r in rows) / len(rows):.4f}; mean epochs "
                 f"{sum(r['asha']['epochs'] for r in rows) / len(rows):.1f} vs "
                 f"{sum(r['random']['epochs'] for r in rows) / len(rows):.1f}. "
                 f"Total run time {time.time() - t_all:.0f} s, load average {load0} -> {load1}.")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    if args.keep:
        print(f"kept {storage}", file=sys.stderr)
    else:
        import shutil
        shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
