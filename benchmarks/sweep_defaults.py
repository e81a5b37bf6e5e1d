"""Candidate defaults of gunn-search, each against Optuna TPE + HyperbandPruner and every peer, on
the simulator at several budgets and concurrencies (issue: "Defaults that win").

What it measures
    For every table (`--tables`), budget (`--budgets`, in full trainings) and concurrency
    (`--concurrency`): the same paired searches (`--search-seeds`) of every candidate
    (`--candidates`: `default` or a variant `default:NAME=VALUE,...` of `simulate.py`) and every
    peer (`--peers`). Per candidate: the median epochs to the target (the median best of the
    random + FIFO searches at that budget; never = past the budget), the share reaching it, the
    median best_final, the median share of random + FIFO's epochs where the free oracle shows a
    third is possible, and the one-sided Wilcoxon signed-rank p-values that it needs fewer epochs
    than Optuna TPE + HyperbandPruner (never counted as budget + 1) and that it finds a better
    best_final; then the smallest p that some peer finds a better best_final than it (the goal
    asks for none below 0.05) and which peer. The goal of the issue, per candidate and setting:
    fewer epochs than optuna_hyperband (p < 0.05), reaching at least as often, and no peer better
    on best_final (p < 0.05).

Usage
    python benchmarks/sweep_defaults.py --candidates default "default:grace_period=6,branch_epochs=0" \\
        --budgets 10 30 --concurrency 2 8 --search-seeds 0-199 --json sweep.json

Search seeds >= 1000 are kept for independent checks. Machine and result: benchmarks/RESULTS.md,
"Defaults chosen on the simulator".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "optuna_hyperband"
PEERS = ["random_fifo", "optuna_hyperband", "optuna_sha", "topk_1epoch", "dehb",
         "synetune_asha", "synetune_bohb"]


def compare(rows: list[dict], candidates: list[str], peers: list[str], budget: float) -> list[dict]:
    """Per candidate, the figures of the module's docstring (rows carry `epochs_to_target`)."""
    from scipy.stats import wilcoxon

    import simulate

    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["search_seed"]] = r

    def cost(r):
        return r["epochs_to_target"] if r["epochs_to_target"] is not None else budget + 1

    def final(r):
        return r["best_final"] or 0.0

    def p_less(a, b):  # one-sided Wilcoxon: a < b; 1 where the pairs never differ
        if not any(x != y for x, y in zip(a, b)):
            return 1.0
        return float(wilcoxon(a, b, alternative="less").pvalue)

    fifo = by["random_fifo"]
    third = list(simulate.oracle_third(rows))
    out = []
    for c in candidates:
        mine = by[c]
        seeds = sorted(set(mine) & set(by[REFERENCE]))
        ref = by[REFERENCE]
        shares = [cost(mine[s]) / fifo[s]["epochs_to_target"] for s in third if s in mine]
        worst_peer, worst_p = None, 1.0
        for p in peers:
            if p not in by or p == c:
                continue
            ss = sorted(set(mine) & set(by[p]))
            pv = p_less([final(mine[s]) for s in ss], [final(by[p][s]) for s in ss])
            if pv < worst_p:
                worst_peer, worst_p = p, pv
        reached = sum(mine[s]["epochs_to_target"] is not None for s in seeds) / len(seeds)
        ref_reached = sum(ref[s]["epochs_to_target"] is not None for s in seeds) / len(seeds)
        med = statistics.median(cost(mine[s]) for s in seeds)
        out.append({
            "candidate": c, "searches": len(seeds),
            "median_epochs_to_target": None if med > budget else med,
            "reached": reached, "reference_reached": ref_reached,
            "median_best_final": statistics.median(final(mine[s]) for s in seeds),
            "oracle_third_searches": len(third),
            "median_share_where_third_possible": statistics.median(shares) if shares else None,
            "p_fewer_epochs_than_reference": p_less([cost(mine[s]) for s in seeds],
                                                    [cost(ref[s]) for s in seeds]),
            "p_better_final_than_reference": p_less([final(ref[s]) for s in seeds],
                                                    [final(mine[s]) for s in seeds]),
            "peer_most_likely_better_final": worst_peer, "p_peer_better_final": worst_p})
        r = out[-1]
        r["goal_met"] = bool(r["p_fewer_epochs_than_reference"] < 0.05 and reached >= ref_reached
                         and worst_p >= 0.05)
    return out


def markdown(setting: str, target: float, results: list[dict], budget: float) -> list[str]:
    from harness import table_head, table_row

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = [f"**{setting}**, target {target:.4f}", "",
             table_head(["candidate", "median epochs to target", "reached (Optuna's)",
                         "median best_final", "median share of random + FIFO's epochs where a "
                         "third is possible", f"p (fewer epochs than {REFERENCE})",
                         f"p (better best_final than {REFERENCE})", "smallest p (a peer better "
                         "best_final)", "goal"])]
    for r in results:
        e = r["median_epochs_to_target"]
        lines.append(table_row([
            f"`{r['candidate']}`", "never" if e is None else f"{e:g}",
            f"{r['reached']:.2f} ({r['reference_reached']:.2f})", f"{r['median_best_final']:.4f}",
            f(r["median_share_where_third_possible"], ".3f"),
            f"{r['p_fewer_epochs_than_reference']:.3g}", f"{r['p_better_final_than_reference']:.3g}",
            f"{r['p_peer_better_final']:.3g} ({r['peer_most_likely_better_final'] or '–'})",
            "met" if r["goal_met"] else "not met"]))
    return lines


def main(argv: list[str] | None = None) -> int:
    import simulate

    from harness import spawn_pool, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", nargs="+", default=[str(simulate.DEFAULT_TABLE)])
    ap.add_argument("--candidates", nargs="+", default=["default"])
    ap.add_argument("--peers", nargs="+", default=PEERS)
    ap.add_argument("--budgets", nargs="+", type=float, default=[10, 30])
    ap.add_argument("--concurrency", nargs="+", type=int, default=[2, 8])
    ap.add_argument("--search-seeds", type=simulate.seed_range, default=simulate.seed_range("0-199"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    bad = [c for c in args.candidates if simulate.split_variant(c)[0] != "default"]
    bad += [p for p in args.peers if p not in simulate.METHODS]
    if bad:
        print(f"sweep_defaults: {bad[0]!r} is no candidate (default or default:NAME=VALUE,...) "
              f"or peer ({', '.join(simulate.METHODS)})", file=sys.stderr)
        return 2
    peers = list(dict.fromkeys(["random_fifo", REFERENCE, *args.peers]))
    methods = list(dict.fromkeys([*args.candidates, *peers]))
    out, lines = [], []
    for folder in args.tables:
        for budget in args.budgets:
            for k in args.concurrency:
                t = time.time()
                jobs = [(folder, m, s, budget, k) for m in methods for s in args.search_seeds]
                with spawn_pool(args.workers) as pool:
                    rows = list(pool.map(simulate.run_one, jobs, chunksize=4))
                target = statistics.median(r["best_final"] or 0.0 for r in rows
                                           if r["method"] == "random_fifo")
                simulate.with_target(rows, target)
                epochs = budget * simulate.table_of(folder).epochs
                results = compare(rows, args.candidates, peers, epochs)
                setting = (f"{Path(folder).name}, budget {budget:g} trainings ({epochs:g} epochs), "
                           f"{k} at a time, {len(args.search_seeds)} searches")
                lines += [*markdown(setting, target, results, epochs), ""]
                print(f"sweep_defaults: {setting}: {time.time() - t:.0f} s", file=sys.stderr,
                      flush=True)
                out.append({"table": folder, "budget_trainings": budget, "concurrency": k,
                            "target": target, "results": results,
                            "rows": [{k2: v for k2, v in r.items() if k2 != "events"}
                                     for r in rows]})
                if args.json:
                    write_json(args.json, {"settings": out})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    sys.exit(main())
