"""Simulated searches on a recorded-curve table: hundreds of searches per method in minutes,
paired by search seed, each method deciding with its own code (`sim_methods.py`) on the table's
clock (`sim_engine.py`).

What it measures
    For each method and search seed, one search of `--concurrency` trials at a time with a
    compute budget of `--budget-trainings` full trainings (that many times the table's epochs,
    branch epochs counted) on the table of `--table` (`record_curves.py`), with the training seed
    `search seed mod the table's seeds`. Target: the median, over the random + FIFO searches at
    that budget (run for the target whether asked or not), of their best val_acc at the end. Per
    search: `epochs_to_target` (the budget spent when a trial trained to the end first reached
    the target; null when never), `seconds_to_target` on the table's clock, `best_final` (the
    best val_acc among trials trained to the end), `trials`, `spent`.

    A search under a budget: gunn-search's searcher is built with `search.num_samples` set to the
    trials the budget is expected to buy (`gunn_search.space.rungs.expected_trial_epochs`), which
    sets TPE's start-up trials as a search of that many would; it may start more while budget
    is left.

    On stdout, a Markdown table: per method, the median epochs to target (never = past the
    budget), the share of searches reaching it, the median best_final, its median share of
    random + FIFO's epochs over the searches where the free oracle (each configuration's final
    val_acc known at no cost: only the first of random + FIFO's draws that reaches the target is
    trained) needs at most a third of them, and, against `default`,
    the one-sided Wilcoxon signed-rank p-values that the default needs fewer epochs (never counted
    as budget + 1) and that it finds a better best_final. `--check-mapping`: random search's
    finals on the table against the table's own finals (two-sample Kolmogorov-Smirnov).

Usage
    python benchmarks/simulate.py --methods default random_fifo optuna_hyperband optuna_sha \\
        topk_1epoch --budget-trainings 10 --concurrency 2 --search-seeds 0-199 --json out.json
    python benchmarks/simulate.py --methods default dehb synetune_asha synetune_bohb ...
    python benchmarks/simulate.py --check-mapping

Other packages' searches (`dehb`, `synetune_asha`, `synetune_bohb`: `sim_peers.py`) need the
`bench` extra (see pyproject.toml) and run only when named in --methods.

Search seeds >= 1000 are kept for independent checks: tune and report on smaller ones.
Machine and result: benchmarks/RESULTS.md, "Simulated searches".
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = REPO / "benchmarks" / "data" / "curves" / "digits_step"
# Other packages' searches (sim_peers.py): installed by the `bench` extra, not run by default.
PEERS = ["dehb", "synetune_asha", "synetune_bohb"]
METHODS = ["default", "random_fifo", "optuna_hyperband", "optuna_sha", "topk_1epoch", *PEERS]

_TABLES: dict = {}


def table_of(folder: str):
    import curve_table as ct

    if folder not in _TABLES:
        _TABLES[folder] = ct.load_table(folder)
    return _TABLES[folder]


def table_space(meta: dict, train_seed: int, search_seed: int, **search):
    """The table's problem as a parsed space, its search section updated with `search`."""
    from digits_problem import problem_data

    from gunn_search.space import parse_space

    data = problem_data(train_seed, meta["epochs"], meta["schedule"], meta["space"],
                        meta["train_fraction"], meta["val_fraction"], meta["batch_size"])
    data["search"].update(seed=search_seed, **search)
    return parse_space(data, meta["space"])


def split_variant(key: str) -> tuple[str, dict]:
    """A method key and its search settings: `default:grace_period=1,reduction_factor=2` is
    gunn-search with those `search.` settings (each value read as YAML, as `--set` reads it);
    a plain key has none."""
    import yaml

    base, _, rest = key.partition(":")
    settings = {}
    for part in filter(None, rest.split(",")):
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"method {key!r}: {part!r} is not NAME=VALUE")
        settings[name.strip()] = yaml.safe_load(value)
    if settings and base not in ("default", "random_fifo"):
        raise ValueError(f"method {key!r}: only default and random_fifo take search settings")
    return base, settings


def make_method(key: str, meta: dict, train_seed: int, search_seed: int, budget: float,
                concurrency: int):
    from sim_methods import OptunaPruned, TopKOneEpoch, TuneSearch

    from gunn_search.space.rungs import expected_trial_epochs

    base, settings = split_variant(key)
    if base in ("default", "random_fifo"):
        over = {"max_concurrent": concurrency, **settings}
        if base == "random_fifo":
            over.update(sampler="random", scheduler="fifo")
        space = table_space(meta, train_seed, search_seed, **over)
        trials = math.ceil(budget / expected_trial_epochs(space.search, space.max_epochs) - 1e-9)
        space = table_space(meta, train_seed, search_seed, num_samples=max(1, trials), **over)
        return TuneSearch(space, capped=False)
    space = table_space(meta, train_seed, search_seed)
    if key in ("optuna_hyperband", "optuna_sha"):
        return OptunaPruned(space, search_seed, key.split("_")[1])
    if key == "topk_1epoch":
        return TopKOneEpoch(space, search_seed, budget)
    if key == "dehb":
        from sim_peers import DehbPeer

        return DehbPeer(space, search_seed)
    if key in ("synetune_asha", "synetune_bohb"):
        from sim_peers import SyneTunePeer

        return SyneTunePeer(space, search_seed, key.split("_")[1])
    raise ValueError(f"unknown method {key!r} (known: {', '.join(METHODS)})")


def run_one(job: tuple) -> dict:
    """One simulated search: its row."""
    folder, key, search_seed, budget_trainings, concurrency = job
    import sim_engine

    table = table_of(folder)
    seeds = table.seeds
    train_seed = seeds[search_seed % len(seeds)]
    budget = budget_trainings * table.epochs
    method = make_method(key, table.meta, train_seed, search_seed, budget, concurrency)
    lookup = sim_engine.Lookup(table, train_seed, method.space)
    t = time.perf_counter()
    rec = sim_engine.simulate(method, lookup, concurrency, budget)
    return {"method": key, "search_seed": search_seed, "train_seed": train_seed,
            "best_final": rec.best_final, "budget_epochs": budget,
            "budget_trainings": budget_trainings, "spent": round(rec.spent, 3),
            "trials": rec.trials, "sim_seconds": round(time.perf_counter() - t, 3),
            "events": [[round(e[0], 3), round(e[1], 3), e[3], e[4], e[5]] for e in rec.events]}


def seed_range(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def with_target(rows: list[dict], target: float) -> None:
    """Put `epochs_to_target` and `seconds_to_target` on every row (events: spent, seconds,
    epoch, val_acc, trained to the end)."""
    for r in rows:
        r["epochs_to_target"] = r["seconds_to_target"] = None
        for spent, secs, _, acc, final in r["events"]:
            if final and acc >= target - 1e-12:
                r["epochs_to_target"], r["seconds_to_target"] = spent, secs
                break


def oracle_third(rows: list[dict]) -> dict[int, float]:
    """The free oracle's share of random + FIFO's epochs, by search seed, where it is at most a
    third: the oracle trains only the first of random + FIFO's draws that reaches the target,
    one full training (rows carry `epochs_to_target`)."""
    fifo = [r for r in rows if r["method"] == "random_fifo"]
    if not fifo:
        return {}
    epochs = fifo[0]["budget_epochs"] / fifo[0]["budget_trainings"]  # one full training
    return {r["search_seed"]: epochs / r["epochs_to_target"] for r in fifo
            if r["epochs_to_target"] and epochs / r["epochs_to_target"] <= 1 / 3}


def summary(rows: list[dict], methods: list[str], budget: float,
            reference: str = "default") -> list[str]:
    from scipy.stats import wilcoxon

    from harness import table_head, table_row

    by = {m: {r["search_seed"]: r for r in rows if r["method"] == m}
          for m in {*methods, *(r["method"] for r in rows)}}

    def cost(r):
        return r["epochs_to_target"] if r["epochs_to_target"] is not None else budget + 1

    # The free oracle knows every configuration's final val_acc at no cost: of random +
    # FIFO's draws it trains only the first that reaches the target, one full training. Where
    # that is at most a third of random + FIFO's epochs, a third is possible; a method's share
    # of random + FIFO's epochs is reported over those searches.
    fifo = by.get("random_fifo", {})
    third = oracle_third(rows)
    out = [f"free oracle: a third of random + FIFO's epochs is possible in {len(third)} of "
           f"{len(fifo)} searches (its median share there "
           f"{statistics.median(third.values()) if third else float('nan'):.3f})", "",
           table_head(["method", "searches", "median epochs to target", "reached",
                       "median best_final", "median share of random + FIFO's epochs where a "
                       "third is possible", f"p ({reference} fewer epochs)",
                       f"p ({reference} better best_final)"])]
    for m in methods:
        rs = list(by[m].values())
        p1 = p2 = "–"
        if m != reference and reference in by:
            seeds = sorted(set(by[m]) & set(by[reference]))
            a = [cost(by[reference][s]) for s in seeds]
            b = [cost(by[m][s]) for s in seeds]
            if any(x != y for x, y in zip(a, b)):
                p1 = f"{wilcoxon(a, b, alternative='less').pvalue:.3g}"
            fa = [by[reference][s]["best_final"] or 0.0 for s in seeds]
            fb = [by[m][s]["best_final"] or 0.0 for s in seeds]
            if any(x != y for x, y in zip(fa, fb)):
                p2 = f"{wilcoxon(fa, fb, alternative='greater').pvalue:.3g}"
        med = statistics.median(cost(r) for r in rs)
        reached = sum(r["epochs_to_target"] is not None for r in rs)
        finals = [r["best_final"] or 0.0 for r in rs]
        shares = [cost(by[m][s]) / fifo[s]["epochs_to_target"] for s in third if s in by[m]]
        out.append(table_row([m, str(len(rs)), "never" if med > budget else f"{med:g}",
                              f"{reached / len(rs):.2f}", f"{statistics.median(finals):.4f}",
                              f"{statistics.median(shares):.3f}" if shares else "–", p1, p2]))
    return out


def check_mapping(folder: str, searches: int, trials: int) -> list[str]:
    """Random search's finals drawn through the nearest-configuration mapping against the
    table's own finals, per training seed."""
    import optuna
    from scipy.stats import ks_2samp
    from sim_engine import Lookup

    from gunn_search.space.sample import sample

    table = table_of(folder)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for seed in table.seeds:
        space = table_space(table.meta, seed, 0)
        lookup = Lookup(table, seed, space)
        own = [table.final(c, seed) for c in lookup.ids]
        drawn = []
        for s in range(searches):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=s))
            drawn += [table.final(lookup.nearest(sample(study.ask(), space)), seed)
                      for _ in range(trials)]
        ks = ks_2samp(own, drawn)
        out.append(f"training seed {seed}: {len(own)} configurations, mean final "
                   f"{statistics.mean(own):.4f} (drawn {statistics.mean(drawn):.4f}), median "
                   f"{statistics.median(own):.4f} (drawn {statistics.median(drawn):.4f}); KS "
                   f"statistic {ks.statistic:.3f}, p {ks.pvalue:.3g} ({len(drawn)} draws)")
    return out


def main(argv: list[str] | None = None) -> int:
    from harness import spawn_pool

    from trainers.errors import ConfigError, first_line

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--methods", nargs="+", default=[m for m in METHODS if m not in PEERS])
    ap.add_argument("--budget-trainings", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--search-seeds", type=seed_range, default=seed_range("0-199"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", default="default",
                    help="the method the p-value columns test against each other (default: "
                         "default); a variant key such as default:grace_period=1")
    ap.add_argument("--check-mapping", action="store_true")
    args = ap.parse_args(argv)
    try:
        unknown = [m for m in args.methods if split_variant(m)[0] not in METHODS]
        for m in args.methods:  # a variant's settings are the schema's to check, before the run
            if split_variant(m)[1]:
                table_space(table_of(args.table).meta, 0, 0, **split_variant(m)[1])
    except (ValueError, FileNotFoundError, ConfigError) as e:
        print(f"simulate: {first_line(e)}", file=sys.stderr)
        return 2
    if unknown:
        print(f"simulate: unknown method {unknown[0]!r} (known: {', '.join(METHODS)}; "
              "default and random_fifo take search settings: default:grace_period=1,...)",
              file=sys.stderr)
        return 2
    try:
        table = table_of(args.table)
    except (FileNotFoundError, ValueError) as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    if args.check_mapping:
        print("\n".join(check_mapping(args.table, 50, 20)))
        return 0
    methods = list(dict.fromkeys(["random_fifo", *args.methods]))
    jobs = [(args.table, m, s, args.budget_trainings, args.concurrency)
            for m in methods for s in args.search_seeds]
    t = time.time()
    rows = []
    print(f"simulate: {len(jobs)} searches on {table.folder} ({len(table.runs)} runs, training "
          f"seeds {table.seeds})", file=sys.stderr, flush=True)
    if args.workers > 1:
        with spawn_pool(args.workers) as pool:
            for i, row in enumerate(pool.map(run_one, jobs, chunksize=4)):
                rows.append(row)
                if (i + 1) % 50 == 0:
                    print(f"simulate: {i + 1}/{len(jobs)} ({time.time() - t:.0f} s)",
                          file=sys.stderr, flush=True)
    else:
        rows = [run_one(j) for j in jobs]
    budget = args.budget_trainings * table.epochs
    fifo = [r["best_final"] or 0.0 for r in rows if r["method"] == "random_fifo"]
    target = statistics.median(fifo)
    with_target(rows, target)
    lines = [f"target {target:.4f} (median best of {len(fifo)} random + FIFO searches); budget "
             f"{budget:g} epochs, {args.concurrency} at a time; {time.time() - t:.0f} s", "",
             *summary(rows, [m for m in methods if m in args.methods] or methods, budget,
                     args.reference)]
    print("\n".join(lines))
    if args.json:
        from harness import write_json

        write_json(args.json, {"target": target, "table": str(args.table),
                               "budget_epochs": budget, "concurrency": args.concurrency,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    sys.exit(main())
