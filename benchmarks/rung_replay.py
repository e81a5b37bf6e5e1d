"""ASHA replayed on recorded curves, with rung results of any kind and what they cost.

`rank_correlation.py --replay` uses it for the plain val_acc curves (`rank_curves*.csv`) and for
the rung candidates `rung_candidates.py` records (`rank_candidates.csv`): a trial's own val_acc
(`plain`), an average of its weights (`ema`), an annealing branch of L epochs (`anneal_<L>`) and
a schedule compressed to the rung and trained from scratch (`compressed_<r>`).

A replayed search: random search over the configurations of one training seed in a random
order, 2 trials at a time, each epoch one time step, the slots reporting in turn, until the
budget is spent (branch epochs and restarts count). At a rung epoch (grace * rf**k < max_t)
Tune's ASHA rule (`ray.tune.schedulers.async_hyperband._Bracket`) stops a trial whose rung
result is below the (1 - 1/rf) percentile of the results that rung recorded before it. What a
search found is the best of its trials' own val_acc (as `gunn-search` reports it), never a rung
result.
"""

from __future__ import annotations

import csv
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from search_efficiency import epochs_to  # a curve of (epochs used, running best), as here


@dataclass(frozen=True)
class Method:
    """How a rung is measured: `at(seed)(config, epoch)` -> (result, extra epochs), or None
    where it has no result (the trial's own val_acc is compared then, at no cost). `restart`:
    the rung result comes from a separate run of `restart` epochs; a promoted trial then trains
    from scratch (successive halving with restarts)."""

    name: str
    table: dict  # {seed: {config: {epoch: (value, cost)}}}
    restart: int = 0

    def at(self, seed: int) -> Callable[[int, int], tuple[float, float] | None]:
        t = self.table.get(seed, {})
        return lambda c, e: t.get(c, {}).get(e)


def asha_promoted(recorded: list[float], value: float, rf: int) -> bool:
    """Tune's ASHA rule: below the (1 - 1/rf) percentile of the rung's earlier results stops."""
    import numpy as np

    return not recorded or value >= np.nanpercentile(recorded, (1 - 1 / rf) * 100)


def replay_search(curves: dict[int, list[float]], order: list[int], budget: float,
                  grace: int | None, rf: int, rung=None, restart: int = 0,
                  slots: int = 2, promote=asha_promoted,
                  finished: list | None = None) -> tuple[float, list[tuple[float, float]]]:
    """One search (see the module's docstring); `rung(config, epoch)` -> (result, cost) or None
    (then the trial's own val_acc, free). Returns the best val_acc found and the running best
    after each step, as (epochs used, best). `promote(recorded, result, rf)`: the rung's rule
    (results may be points of several objectives then); `finished` gets the configurations
    trained to the end."""
    from gunn_search.space.rungs import rung_epochs  # the search's own rule for where rungs are

    max_t = len(next(iter(curves.values())))
    recorded: dict[int, list[float]] = {r: [] for r in (rung_epochs(grace, rf, max_t)
                                                        if grace else [])}
    if restart and restart not in recorded:
        raise ValueError(f"a restart rung at epoch {restart} needs a rung there (grace {grace})")
    queue = list(order)
    # [config, epochs done]; a restart trial first runs its short schedule (phase "short")
    running = [[queue.pop(0), 0, "short" if restart else "long"]
               for _ in range(min(slots, len(queue)))]
    best, used, curve = 0.0, 0.0, []
    while running and used < budget:
        for slot in list(running):
            if used >= budget:
                break
            cfg, done, phase = slot
            if phase == "short":  # the whole compressed run at once, then its rung decision
                value, cost = rung(cfg, restart)
                used += cost
                curve.append((used, best))
                rec = recorded[restart]
                stop = not promote(rec, value, rf)
                rec.append(value)
                if stop:
                    running.remove(slot)
                    if queue:
                        running.append([queue.pop(0), 0, "short"])
                else:
                    slot[2] = "long"
                continue
            done += 1
            slot[1] = done
            used += 1
            v = curves[cfg][done - 1]
            best = max(best, v)
            stop = done >= max_t
            if done in recorded and not (restart and done == restart):
                r = rung(cfg, done) if rung is not None else None
                value, cost = (v, 0.0) if r is None else r
                used += cost
                rec = recorded[done]
                if not promote(rec, value, rf):
                    stop = True
                rec.append(value)
            curve.append((used, best))
            if done >= max_t and finished is not None:
                finished.append(cfg)
            if stop:
                running.remove(slot)
                if queue:
                    running.append([queue.pop(0), 0, "short" if restart else "long"])
    return best, curve


def draws(curves: dict[int, dict[int, list[float]]], repeats: int, seed: int = 0):
    """`repeats` (training seed, order of the configurations) pairs, the same for every method."""
    rnd = random.Random(seed)
    seeds = sorted(curves)
    out = []
    for _ in range(repeats):
        s = rnd.choice(seeds)
        order = list(curves[s])
        rnd.shuffle(order)
        out.append((s, order))
    return out


def evaluate(curves, budget, draws_, grace, rf, method: Method | None, fifo):
    """Per draw: (best found, curve), and the summary numbers against FIFO's best."""
    res = []
    for s, o in draws_:
        if grace is None:
            res.append(replay_search(curves[s], o, budget, None, 2))
        else:
            res.append(replay_search(curves[s], o, budget, grace, rf,
                                     rung=method.at(s) if method else None,
                                     restart=method.restart if method else 0))
    pool_best = {s: max(max(c) for c in curves[s].values()) for s in curves}
    hits, within, tos, top = 0, 0, [], 0
    for (s, _), (b, curve), (target, _) in zip(draws_, res, fifo):
        top += b >= pool_best[s] - 1e-12
        to = epochs_to(curve, target)
        if to is not None:
            hits += 1
            tos.append(to)
            within += to <= budget / 3
    n = len(draws_)
    return {"best": statistics.mean(b for b, _ in res), "top": top / n, "hits": hits / n,
            "median_to": statistics.median(tos) if tos else None, "within": within / n,
            "used": statistics.mean(c[-1][0] if c else 0 for _, c in res),
            # epochs to FIFO's best, a draw that never reaches it counted as never (inf)
            "median_to_all": statistics.median(tos + [float("inf")] * (n - len(tos)))}


def replay_table(curves, budget: float, settings: list[tuple[int | None, int]],
                 repeats: int = 2000, method: Method | None = None) -> tuple[str, dict]:
    """The table of `rank_correlation.py`: FIFO and ASHA settings on the same draws."""
    ds = draws(curves, repeats)
    fifo = [replay_search(curves[s], o, budget, None, 2) for s, o in ds]
    rows, out = [], {}
    for grace, rf in settings:
        r = evaluate(curves, budget, ds, grace, rf, method, fifo)
        out[(grace, rf)] = r
        name = "FIFO" if grace is None else f"ASHA grace {grace}, rf {rf}"
        rows.append(f"| {name} | {r['best']:.4f} | {r['top']:.0%} | {r['hits']:.0%} | "
                    f"{_num(r['median_to'])} | {_num(r['median_to_all'])} | {r['within']:.0%} "
                    f"| {r['used']:.1f} |")
    head = [f"Replay{' (' + method.name + ')' if method else ''}: random search on the recorded "
            f"curves, 2 trials at a time, a budget of {budget:g} epochs (branch epochs and "
            f"restarts counted), {repeats} draws (a training seed, an order of the "
            f"{len(next(iter(curves.values())))} configurations); target = random+FIFO's best in "
            "the same draw.", "",
            "| scheduler | best val_acc, mean | best of the pool found | target reached | "
            "epochs to target, median of those reaching it | ... median of all draws | "
            "reached within a third of the budget | epochs used, mean |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(head + rows), out


def _num(x) -> str:
    if x is None:
        return "–"
    return "never" if x == float("inf") else f"{x:.1f}"


# --- the recorded candidates --------------------------------------------------------------------

def load_candidates(path: Path) -> tuple[dict, dict]:
    """(plain curves {seed: {config: [val_acc per epoch]}}, {method: {seed: {config: {epoch:
    (val_acc, cost)}}}}) from `rank_candidates.csv`. A seed counts where every configuration has
    its whole plain curve; a method's seed where it has every configuration (a recording cut
    short leaves the rest out)."""
    plain: dict[int, dict[int, dict[int, float]]] = {}
    methods: dict[str, dict] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            s, c, e = int(r["seed"]), int(r["config"]), int(r["epoch"])
            if r["method"] == "plain":
                plain.setdefault(s, {}).setdefault(c, {})[e] = float(r["val_acc"])
            else:
                methods.setdefault(r["method"], {}).setdefault(s, {}).setdefault(c, {})[e] = (
                    float(r["val_acc"]), float(r["cost_epochs"]))
    n_cfg = max(len(v) for v in plain.values())
    n_ep = max(len(c) for v in plain.values() for c in v.values())
    done = {s for s, v in plain.items()
            if len(v) == n_cfg and all(len(c) == n_ep for c in v.values())}
    curves = {s: {c: [v[e] for e in sorted(v)] for c, v in plain[s].items()} for s in done}
    return curves, {m: {s: t[s] for s in sorted(done) if len(t.get(s, {})) == n_cfg}
                    for m, t in methods.items()}


def candidates_table(curves: dict, methods: dict) -> str:
    """Spearman's rho between each candidate's result at epoch e and the final val_acc, per
    epoch (mean ± sd over seeds), with what it cost."""
    from scipy.stats import spearmanr

    epochs = len(next(iter(next(iter(curves.values())).values())))
    names = ["plain", *sorted(methods)]
    seeds_of = {m: sorted(curves) if m == "plain" else sorted(methods[m]) for m in names}
    lines = ["| epoch | " + " | ".join(f"{m} (seeds {', '.join(map(str, seeds_of[m]))})"
                                       for m in names) + " |", "|---:|" + "---|" * len(names)]
    for e in range(1, epochs):
        cells = []
        for m in names:
            seeds = seeds_of[m]
            rho, cost = [], []
            for s in seeds:
                cfgs = sorted(curves[s])
                if m == "plain":
                    early = [curves[s][c][e - 1] for c in cfgs]
                    cost.append(0.0)
                else:
                    got = [methods[m][s][c].get(e) for c in cfgs]
                    if any(g is None for g in got):
                        break
                    early = [g[0] for g in got]
                    cost.append(statistics.mean(g[1] for g in got))
                rho.append(spearmanr(early, [curves[s][c][-1] for c in cfgs]).statistic)
            if len(rho) < len(seeds):
                cells.append("")
                continue
            sd = statistics.stdev(rho) if len(rho) > 1 else 0.0
            extra = f" (+{statistics.mean(cost):g} ep)" if any(cost) else ""
            cells.append(f"{statistics.mean(rho):.2f} ± {sd:.2f}{extra}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def method(name: str, table: dict) -> Method:
    restart = int(name.rsplit("_", 1)[1]) if name.startswith("compressed_") else 0
    return Method(name, table, restart)
