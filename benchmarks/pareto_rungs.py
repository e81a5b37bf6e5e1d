"""Multi-objective rungs: promoting by Pareto order against promoting by val_acc alone.

What it measures
    On the recorded digits problem (`rank_correlation.py`'s 24 configurations, 12 epochs, step
    schedule; rung results of the search's default annealing branch, `tail_2`, from
    `rank_candidates.csv`, so the training seeds that have them), searches for the front of
    (val_acc max, cost.params min) replayed with `rung_replay.replay_search` on the same draws
    (a training seed and an order of the configurations; a draw stands for a search seed):

        FIFO               every trial to the end, 2 at a time, until the budget is spent
        ASHA, val_acc      the search's default rungs (grace 2, rf 3, a 2-epoch branch at each),
                           cut by Tune's rule on the rung's annealed val_acc
        ASHA, Pareto       the same rungs, cut by `gunn_search.run.scheduler.promoted`: the rung's
                           points (annealed val_acc, cost.params) in non-dominated rank and
                           crowding order (what a search with two `search.objectives` does)

    Each search's front is that of its trials trained to the end (as `pareto.front_rows`
    counts them): final val_acc against cost.params. Its hypervolume is measured in the unit
    square (val_acc as it is, cost.params over the pool's largest, reference point (0, 1)):
    the area the front dominates, 1 the unreachable best. Budgets in epochs, branch epochs
    counted.

Usage
    python benchmarks/pareto_rungs.py [--budgets 72 144] [--repeats 400]

Machine and result: benchmarks/RESULTS.md, "Multi-objective rungs".
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data"
GRACE, RF, METHOD = 2, 3, "tail_2"
PLAIN_GRACE = 6  # the lr drop: the first rung without branches


def config_params() -> dict[int, int]:
    """cost.params of each recorded configuration, from the cost model (as a search logs it)."""
    from digits_problem import problem_space

    from gunn_search.space import trial_config
    from gunn_search.space.budget import config_cost

    space = problem_space(0)
    out = {}
    with (DATA / "rank_configs.csv").open() as f:
        for row in csv.DictReader(f):
            values = {k: (float(v) if "." in v or "e" in v else int(v))
                      for k, v in row.items() if k != "config"}
            out[int(row["config"])] = config_cost(trial_config(space, values)).params
    return out


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (acc max, cost min) points in [0, 1]^2, reference (acc 0, cost 1).
    Two objectives: a sweep along cost (Optuna's hypervolume is private API)."""
    area, best_acc = 0.0, 0.0
    for acc, cost in sorted(points, key=lambda p: (p[1], -p[0])):
        if acc > best_acc:
            area += (acc - best_acc) * (1.0 - cost)
            best_acc = acc
    return area


def run(budgets: list[float], repeats: int) -> str:
    import rung_replay

    from gunn_search.results.pareto import Objective, front
    from gunn_search.run.scheduler import promoted

    curves, methods = rung_replay.load_candidates(DATA / "rank_candidates.csv")
    table = methods[METHOD]
    curves = {s: curves[s] for s in table}
    params = config_params()
    top = max(params.values())
    objectives = [Objective("val_acc", "max"), Objective("cost.params", "min")]
    draws = rung_replay.draws(curves, repeats)

    def rung_of(s, kind: str, pareto: bool):
        """The rung result of a trial: the `tail_2` branch or its own val_acc (`plain`), as a
        point with its cost.params where the rung compares points."""
        at = rung_replay.method(METHOD, table).at(s) if kind == METHOD else (lambda c, e: None)

        def rung(c, e):
            value, cost = at(c, e) or (curves[s][c][e - 1], 0.0)
            return ([value, params[c]] if pareto else value), cost
        return rung

    def pareto_promote(recorded, point, rf):
        return promoted(recorded, point, rf, objectives)

    def asha(grace: int, kind: str, pareto: bool):
        return lambda s, o, b, done: rung_replay.replay_search(
            curves[s], o, b, grace, RF, rung=rung_of(s, kind, pareto),
            promote=pareto_promote if pareto else rung_replay.asha_promoted, finished=done)

    searches = {
        "FIFO": lambda s, o, b, done: rung_replay.replay_search(curves[s], o, b, None, 2,
                                                                finished=done),
        # the search's default rungs: a branch at epochs 2 and 6
        f"ASHA, val_acc ({METHOD}, grace {GRACE})": asha(GRACE, METHOD, False),
        f"ASHA, Pareto ({METHOD}, grace {GRACE})": asha(GRACE, METHOD, True),
        # `branch_epochs: 0`: the trial's own val_acc at the lr drop (its default grace)
        f"ASHA, val_acc (plain, grace {PLAIN_GRACE})": asha(PLAIN_GRACE, "plain", False),
        f"ASHA, Pareto (plain, grace {PLAIN_GRACE})": asha(PLAIN_GRACE, "plain", True),
        # the cost is known before training: a free rung at the first epoch
        "ASHA, Pareto (plain, grace 1)": asha(1, "plain", True),
    }
    acc_only = f"ASHA, val_acc ({METHOD}, grace {GRACE})"
    lines = [f"Training seeds {', '.join(map(str, sorted(curves)))}, {repeats} draws, rung "
             f"results {METHOD} (grace {GRACE}, rf {RF}); hypervolume of the front of "
             "(final val_acc, cost.params / the pool's largest), reference (0, 1).", "",
             "| budget (epochs) | search | hypervolume, mean ± sd | front size, mean | trained "
             "to the end, mean | draws with a hypervolume >= the default's on val_acc | ... >= "
             "FIFO's |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for budget in budgets:
        hv: dict[str, list[float]] = {}
        size: dict[str, list[int]] = {}
        ends: dict[str, list[int]] = {}
        for s, order in draws:
            for name, search in searches.items():
                done: list[int] = []
                search(s, order, budget, done)
                pts = [[curves[s][c][-1], params[c] / top] for c in done]
                on = [pts[i] for i in front(pts, objectives)]
                hv.setdefault(name, []).append(hypervolume([tuple(p) for p in on]))
                size.setdefault(name, []).append(len(on))
                ends.setdefault(name, []).append(len(done))
        for name in searches:
            h = hv[name]
            vs_acc = statistics.mean(a >= b - 1e-12 for a, b in zip(h, hv[acc_only]))
            vs_fifo = statistics.mean(a >= b - 1e-12 for a, b in zip(h, hv["FIFO"]))
            lines.append(f"| {budget:g} | {name} | {statistics.mean(h):.4f} ± "
                         f"{statistics.stdev(h):.4f} | {statistics.mean(size[name]):.1f} | "
                         f"{statistics.mean(ends[name]):.1f} | {vs_acc:.0%} | {vs_fifo:.0%} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[72, 144])
    ap.add_argument("--repeats", type=int, default=400)
    args = ap.parse_args()
    print(run(args.budgets, args.repeats))


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
