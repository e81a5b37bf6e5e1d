"""Search efficiency: ASHA + TPE against random + FIFO (and the two halves), same epoch budget.

What it measures
    On the problem in `digits_problem.py` (smoke.yaml's space on a reduced digits, 12 epochs,
    step schedule: configurations there differ by tens of points), for each seed four searches
    built by `gunn_search.run.search.build_tuner` exactly as `gunn-search` builds them (the real
    `train_trial` trainable, OptunaSearch with stopped trials told as PRUNED, a
    ConcurrencyLimiter of 2, one CPU per trial), differing only in `search.sampler` (tpe |
    random) and `search.scheduler` (asha | fifo):

        ASHA+TPE (gunn-search's default), TPE+FIFO, random+ASHA, random+FIFO

    Each gets the same budget of ``--budget`` epochs (a Tune stopper ends the experiment once
    that many per-epoch results have arrived; trials still running may add one epoch each).
    FIFO searches draw budget/12 trials; ASHA searches as many as ASHA's expected epochs per
    trial fit in the budget (`asha_trials`), which also sets TPE's start-up trials
    (`gunn_search.run.decisions.make_sampler`). The search seed is every trial's training seed, so the
    four train a given configuration identically. An "epoch used" is one per-epoch result
    received by the driver, in arrival order; "epochs to target" counts them until a trial first
    reports val_acc >= target. Target per seed: random+FIFO's best val_acc at the end of its
    budget. The goal (issue 14): ASHA+TPE reaches it with at most a third of the epochs.

Usage
    python benchmarks/search_efficiency.py [--seeds 0 1 ... 7] [--budget 96]
        [--methods asha_tpe fifo_tpe asha_random fifo_random] [--grace 2] [--reduction-factor 3]
        [--json out.json]
        [--tpe-startup K] [--record-as KEY]
    (a variant of one method, e.g. --methods asha_tpe --grace 6 --branch-epochs 0, is recorded
    under a key of its own, --record-as asha_tpe_plain, to join the default's rows)
    python benchmarks/search_efficiency.py --methods default random_fifo optuna_hyperband \
        --seeds 0 1 2 3 4 5 6 7 --budget 120 [--target 0.85] --json real.json
    (real searches under the compute budget, rows as simulate.py writes them:
    efficiency_budget.py)
    python benchmarks/search_efficiency.py --budget 72 --tables-from a.json b.json
        [--events-csv benchmarks/data/efficiency_events.csv]

Machine and result: benchmarks/RESULTS.md, "Real searches under the budget" (the runs without a
budget: HISTORY.md, "Search efficiency").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import REPO, loadavg, write_json

METHODS = {"asha_tpe": ("tpe", "asha", "ASHA+TPE"), "fifo_tpe": ("tpe", "fifo", "TPE+FIFO"),
           "asha_random": ("random", "asha", "random+ASHA"),
           "fifo_random": ("random", "fifo", "random+FIFO"),
           # variants (--record-as): --methods asha_tpe with --grace 6 --branch-epochs 0 (plain
           # rungs at the lr drop), and with --tpe-startup 5 (the default's 3 of ~8 trials)
           "asha_tpe_plain": (None, None, "ASHA+TPE, plain rungs (grace 6)"),
           "asha_tpe_startup5": (None, None, "ASHA+TPE, 5 random start-up trials"),
           # peers, run by peer_optuna.py and peer_dehb.py (their rows join these with
           # --tables-from)
           "optuna_hyperband": (None, None, "Optuna TPE+Hyperband"),
           "dehb": (None, None, "DEHB")}
SEARCHES = [m for m, (sampler, _, _) in METHODS.items() if sampler]  # what this script runs
# Under the compute budget, on the simulator's terms (efficiency_budget.py)
BUDGETED = ("default", "random_fifo", "optuna_hyperband")


def asha_epochs_per_trial(grace: int, rf: int, max_t: int, branch: float = 0.0) -> float:
    """Expected epochs of one trial under ASHA (`gunn_search.space.rungs.expected_epochs`)."""
    from gunn_search.space.rungs import expected_epochs

    return expected_epochs(grace, rf, max_t, branch)


def asha_trials(budget: int, grace: int, rf: int, max_t: int, branch: float = 0.0) -> int:
    return math.ceil(budget / asha_epochs_per_trial(grace, rf, max_t, branch) - 1e-9)


def recorder_cls():
    from ray import tune

    from gunn_search.status import TrialStatus, status_of

    class Recorder(tune.Callback):
        """Every per-epoch result in the order the driver receives it."""

        def __init__(self):
            self.events: list[dict] = []
            self.t0 = time.time()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if status_of(result) is TrialStatus.REJECTED:
                return
            self.events.append({"t": round(time.time() - self.t0, 2), "trial": trial.trial_id,
                                "epoch": int(result.get("epoch", 0)),
                                "val_acc": float(result.get("val_acc", 0.0)),
                                "branch_epochs": float(result.get("branch_epochs") or 0.0)})

    return Recorder


def budget_stopper_cls():
    from ray.tune.stopper import Stopper

    from gunn_search.status import TrialStatus, status_of

    class EpochBudget(Stopper):
        """Stop the whole experiment once `budget` epochs have been reported: one per per-epoch
        result, plus the annealing branch's epochs it carries."""

        def __init__(self, budget: int):
            self.budget, self.seen = budget, {}

        def __call__(self, trial_id, result):
            # Tune hands the stopper the last result of a finished trial a second time (its
            # "duplicate" done result is replaced by trial.last_result): count each epoch once.
            if status_of(result) is not TrialStatus.REJECTED:
                self.seen[(trial_id, result.get("training_iteration"))] = 1.0 + float(
                    result.get("branch_epochs") or 0.0)
            return False

        def stop_all(self):
            return sum(self.seen.values()) >= self.budget

    return EpochBudget


def run_method(method: str, seed: int, budget: int, grace: int | None, rf: int, storage: Path,
               branch: float | None = None):
    """One search; `grace` and `branch` None: the search's defaults (`search.grace_period`,
    `search.branch_epochs`)."""
    from digits_problem import EPOCHS, problem_space

    from gunn_search.run.search import SearchOptions, build_tuner

    sampler, scheduler, _ = METHODS[method]
    settings = {k: v for k, v in (("grace_period", grace), ("branch_epochs", branch))
                if v is not None}
    s = problem_space(seed, scheduler=scheduler, reduction_factor=rf, **settings).search
    n = (asha_trials(budget, s.grace_period, rf, EPOCHS, s.branch_epochs)
         if scheduler == "asha" else math.ceil(budget / EPOCHS))
    space = problem_space(seed, seed=seed, num_samples=n, sampler=sampler, scheduler=scheduler,
                          reduction_factor=rf, max_concurrent=2, **settings)
    rec = recorder_cls()()
    opts = SearchOptions(space_path="(in memory)", experiment=f"{method}_s{seed}",
                         tracking_uri="unused", storage=str(storage))
    tuner = build_tuner(space, opts, callbacks=[rec], stop=budget_stopper_cls()(budget))
    t = time.time()
    # Tune's banner goes to stderr: stdout is for the tables.
    with contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    errors = [repr(r.error)[:200] for r in grid if r.error is not None]
    return {"events": rec.events, "wall": time.time() - t, "num_samples": n, "errors": errors}


class EpochLog:
    """A peer's per-epoch results in arrival order, under an epoch budget shared by the threads
    that train its trials (`peer_optuna.py`, `peer_dehb.py`)."""

    def __init__(self, budget: int):
        self.budget, self.events, self.t0 = budget, [], time.time()
        self.lock = threading.Lock()

    def add(self, trial, m: dict, **extra) -> bool:
        """Record epoch result `m` of `trial`; False (nothing recorded) once the budget is spent."""
        with self.lock:
            if self.spent:
                return False
            self.events.append({"t": round(time.time() - self.t0, 2), "trial": str(trial),
                                "epoch": m["epoch"], "val_acc": m["val_acc"], **extra})
            return True

    @property
    def spent(self) -> bool:
        return len(self.events) >= self.budget


def peer_problem(seed: int):
    """(space, data) of the problem as a peer (`peer_optuna.py`, `peer_dehb.py`) trains it with
    training seed `seed`: one torch thread per process (two trials in threads, one core each),
    the data loaded once."""
    import torch
    from digits_problem import problem_space

    from trainers.loop import load_data

    torch.set_num_threads(1)
    space = problem_space(seed)
    return space, load_data(space.base.data)


def run_peer(description: str, method: str, run_seed, counts) -> None:
    """A peer's whole run (`peer_optuna.py`, `peer_dehb.py`): per seed of `--seeds`,
    `run_seed(seed, budget)` summarized as a row under `method`, a progress line (`counts(summary)`
    says what it trained), and the `--json` rows written again after each seed, so a long run
    that is stopped keeps what it did."""
    ap = argparse.ArgumentParser(description=description.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--budget", type=int, default=72)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        out = run_seed(seed, args.budget)
        s = summarize(out["events"])
        rows.append({"seed": seed, method: {**s, **out}})
        print(f"seed {seed} {METHODS[method][2]}: best {s['best']:.4f} in {s['epochs']:g} epochs, "
              f"{counts(s)} ({out['wall']:.0f} s, load {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
        write_json(args.json, rows)


def summarize(events: list[dict]) -> dict:
    """The best val_acc and the running best as (epochs used, best): one epoch per result,
    plus its branch epochs (results recorded before branches existed carry none)."""
    best, used, curve = 0.0, 0.0, []
    for e in events:
        best = max(best, e["val_acc"])
        used += 1.0 + e.get("branch_epochs", 0.0)
        curve.append((used, best))
    last = max((e["epoch"] for e in events), default=0)
    return {"best": best, "epochs": used, "trials": len({e["trial"] for e in events}),
            "full_trials": len({e["trial"] for e in events if e["epoch"] == last}),
            "curve": curve}


def epochs_to(curve: list, target: float) -> float | None:
    """Epochs used when the running best first reached `target` (a curve of (used, best))."""
    return next((used for used, best in curve if best >= target - 1e-12), None)


def spread(xs: list[float], fmt: str = ".4f", with_range: bool = False) -> str:
    """Mean ± standard deviation (and the range), "–" for no values."""
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    out = f"{statistics.mean(xs):{fmt}} ± {sd:{fmt}}"
    return out + (f" ({min(xs):{fmt}} to {max(xs):{fmt}})" if with_range else "")


def tables(rows: list[dict], methods: list[str], budget: int) -> str:
    names = [METHODS[m][2] for m in methods]
    lines = ["| seed | " + " | ".join(f"{n}: best (epochs to target)" for n in names)
             + " | target = random+FIFO's best |", "|---:|" + "---|" * (len(names) + 1)]
    for r in rows:
        target = r["target"]
        cells = []
        for m in methods:
            if m not in r:  # a peer not run on this seed (yet)
                cells.append("–")
                continue
            s = r[m]
            to = epochs_to(s["curve"], target) if target is not None else None
            cells.append(f"{s['best']:.4f} ({'–' if to is None else f'{to:g}'})")
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " | "
                     + ("–" if target is None else f"{target:.4f}") + " |")
    lines += ["", "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    has = {m: [r for r in rows if m in r] for m in methods}  # each method: its seeds only
    best = {m: [r[m]["best"] for r in has[m]] for m in methods}
    lines.append("| best val_acc, mean ± sd over seeds | " + " | ".join(spread(best[m]) for m in methods) + " |")
    if "fifo_random" in methods:
        third = budget / 3
        reach, within, median, share = [], [], [], []
        for m in methods:
            targeted = [r for r in has[m] if r["target"] is not None]
            tos = [epochs_to(r[m]["curve"], r["target"]) for r in targeted]
            got = [t for t in tos if t is not None]
            reach.append(f"{len(got)}/{len(targeted)}")
            within.append(f"{sum(t <= third for t in got)}/{len(targeted)}")
            median.append(f"{statistics.median(got):.1f}" if got else "–")
            every = statistics.median([t if t is not None else math.inf for t in tos])
            share.append("never" if every == math.inf else f"{every / budget:.2f}")
        lines.append("| seeds reaching random+FIFO's best at all | " + " | ".join(reach) + " |")
        lines.append(f"| ... within a third of the budget ({third:.0f} epochs) | " + " | ".join(within) + " |")
        lines.append("| epochs to it, median over the seeds that reach it | " + " | ".join(median) + " |")
        lines.append("| ... as a share of the budget, median of all seeds (not reached: never) | "
                     + " | ".join(share) + " |")
    lines.append("| epochs used, mean | " + " | ".join(
        f"{statistics.mean(r[m]['epochs'] for r in has[m]):.1f}" for m in methods) + " |")
    lines.append("| trials, mean (trained to the end) | " + " | ".join(
        f"{statistics.mean(r[m]['trials'] for r in has[m]):.1f} ({statistics.mean(r[m]['full_trials'] for r in has[m]):.1f})"
        for m in methods) + " |")
    lines.append("| wall s, mean | " + " | ".join(
        f"{statistics.mean(r[m]['wall'] for r in has[m]):.0f}" for m in methods) + " |")
    return "\n".join(lines)


def merge(paths: list[str]) -> list[dict]:
    """Rows of several --json files (e.g. two methods per process) joined by seed."""
    by_seed: dict[int, dict] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text()):
            by_seed.setdefault(row["seed"], {}).update(row)
    rows = [by_seed[s] for s in sorted(by_seed)]
    for row in rows:
        for m in METHODS:
            if "events" in row.get(m, {}):  # curves as (epochs used, best), whatever wrote them
                row[m].update(summarize(row[m]["events"]))
        row["target"] = row["fifo_random"]["best"] if "fifo_random" in row else None
    return rows


def write_events_csv(rows: list[dict], path: Path) -> None:
    """Every search's per-epoch results in arrival order, for later analyses."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "method", "n", "trial", "epoch", "val_acc", "branch_epochs"])
        for row in rows:
            for m in METHODS:
                for i, e in enumerate(row.get(m, {}).get("events", []), 1):
                    w.writerow([row["seed"], m, i, e["trial"], e["epoch"], e["val_acc"],
                                e.get("branch_epochs", 0.0)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--budget", type=int, default=96, help="epochs per search (default 96)")
    ap.add_argument("--methods", nargs="+", choices=SEARCHES + list(BUDGETED), default=SEARCHES,
                    help="the simulator's keys (default, random_fifo, optuna_hyperband): real "
                    "searches under the compute budget, rows as simulate.py writes them "
                    "(efficiency_budget.py)")
    ap.add_argument("--target", type=float, default=None,
                    help="with the simulator's keys: the val_acc to reach (default: the "
                    "simulated random + FIFO median at this budget)")
    ap.add_argument("--grace", type=int, default=None,
                    help="ASHA's first rung (default: the search's default for the problem)")
    ap.add_argument("--branch-epochs", type=float, default=None,
                    help="annealing branch at each rung (default: the search's default)")
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--tpe-startup", type=int, default=None, metavar="K",
                    help="TPE's random start-up trials (default: the search's, "
                    "gunn_search.run.decisions.tpe_startup_trials)")
    ap.add_argument("--record-as", choices=[m for m in METHODS if m not in SEARCHES],
                    metavar="KEY", help="with one method: record its rows under KEY (a variant)")
    ap.add_argument("--json", help="also write every search's per-epoch results here")
    ap.add_argument("--tables-from", nargs="+", metavar="JSON",
                    help="print the tables from earlier --json files (joined by seed) and exit")
    ap.add_argument("--events-csv", help="with --tables-from: also write every per-epoch "
                    "result here")
    args = ap.parse_args()
    if set(args.methods) & set(BUDGETED):
        if not set(args.methods) <= set(BUDGETED):
            ap.error("--methods: the simulator's keys and the old ones do not mix")
        import efficiency_budget
        return efficiency_budget.main(args)
    if args.record_as and len(args.methods) != 1:
        ap.error("--record-as: with one of --methods only")
    key = {m: args.record_as or m for m in args.methods}  # where each method's rows go
    if args.tables_from:
        rows = merge(args.tables_from)
        print(tables(rows, [m for m in METHODS if any(m in r for r in rows)], args.budget))
        if args.events_csv:
            write_events_csv(rows, Path(args.events_csv))
        return

    if args.tpe_startup is not None:
        # Not a setting of a space (the share is the search's rule); replaced for this process.
        from gunn_search.run import decisions
        decisions.tpe_startup_trials = lambda num_samples: args.tpe_startup
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # as gunn-search does
    import ray

    storage = Path(tempfile.mkdtemp(prefix="gunn-efficiency-"))
    load0 = loadavg()
    t_all = time.time()
    # "local": a fresh instance even if a `ray start` cluster is recorded in /tmp/ray.
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")
    rows = []
    try:
        for seed in args.seeds:
            row = {"seed": seed}
            for m in args.methods:
                out = run_method(m, seed, args.budget, args.grace, args.reduction_factor, storage,
                                 args.branch_epochs)
                r = row[key[m]] = {**summarize(out["events"]), "wall": out["wall"],
                                   "errors": out["errors"], "num_samples": out["num_samples"],
                                   "events": out["events"]}
                print(f"seed {seed} {METHODS[key[m]][2]}: best {r['best']:.4f} in "
                      f"{r['epochs']} epochs, {r['trials']} trials ({out['wall']:.0f} s, "
                      f"load {os.getloadavg()[0]:.1f})" + (f"; errors: {out['errors']}" if out["errors"] else ""),
                      file=sys.stderr, flush=True)
            row["target"] = row["fifo_random"]["best"] if "fifo_random" in row else None
            rows.append(row)
            if args.json:  # after every seed, so a long run that is stopped keeps what it did
                write_json(args.json, rows)
    finally:
        ray.shutdown()
        import shutil
        shutil.rmtree(storage, ignore_errors=True)
    print(tables(rows, list(key.values()), args.budget))
    print(f"\nbudget {args.budget} epochs, ASHA grace {args.grace}, reduction factor "
          f"{args.reduction_factor}; total {time.time() - t_all:.0f} s, load average {load0} -> "
          f"{loadavg()}.")


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
