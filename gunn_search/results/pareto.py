"""The accuracy-against-cost trade-off of a search: which trials are on the Pareto front.

A trial dominates another when it is at least as good in every objective and better in one.
The front is the trials no other trial dominates. Only trials that trained to the end count:
a trial ASHA stopped after a few epochs has an early accuracy, not comparable with a finished
one, so it is drawn but never on the front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# What an objective may name: the trial's metric and its price from the cost model (logged as
# metrics of the trial's run), or a measured cost.
OBJECTIVE_METRICS = ("val_acc", "cost.params", "cost.macs", "cost.activation_bytes",
                     "epoch_seconds")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" or "min"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


def dominates(a: list[float], b: list[float], objectives: list[Objective]) -> bool:
    """Whether point ``a`` dominates point ``b``."""
    no_worse = all(not o.better(y, x) for x, y, o in zip(a, b, objectives))
    return no_worse and any(o.better(x, y) for x, y, o in zip(a, b, objectives))


def front(points: list[list[float]], objectives: list[Objective]) -> list[int]:
    """Indices of the non-dominated points, in the order given (O(n^2): searches are small)."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, objectives) for j, q in enumerate(points) if j != i)]


def pareto_order(points: list[list[float]], objectives: list[Objective]) -> list[int]:
    """Indices of ``points``, best first, as NSGA-II selects: by non-dominated rank (the front,
    then the front of what is left, ...), within a rank by crowding distance (the extremes of
    each objective first, then the points with the most room around them), so a cut keeps the
    spread of the front and not only one end of it."""
    keys = pareto_keys(points, objectives)
    return sorted(range(len(points)), key=lambda i: keys[i])


def pareto_keys(points: list[list[float]], objectives: list[Objective]) -> list[tuple]:
    """Per point, (non-dominated rank, -crowding distance within its rank): smaller is better.
    Written out (O(n^2) per rank) because Optuna's non-dominated sort and crowding distance are
    private to its NSGA-II sampler."""
    keys: list[tuple] = [()] * len(points)
    left, rank = list(range(len(points))), 0
    while left:
        layer = [i for i in left if not any(dominates(points[j], points[i], objectives)
                                            for j in left if j != i)]
        for i, d in zip(layer, crowding([points[i] for i in layer])):
            keys[i] = (rank, -d)
        left, rank = [i for i in left if i not in layer], rank + 1
    return keys


def crowding(points: list[list[float]]) -> list[float]:
    """NSGA-II's crowding distance: per objective, the gap between a point's two neighbours
    along it over the objective's range, summed; the extremes get infinity."""
    n = len(points)
    dist = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for m in range(len(points[0])):
        idx = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[idx[0]][m], points[idx[-1]][m]
        dist[idx[0]] = dist[idx[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, n - 1):
            dist[idx[k]] += (points[idx[k + 1]][m] - points[idx[k - 1]][m]) / (hi - lo)
    return dist


def table(rows: list[dict], objectives: list[Objective]) -> str:
    """A Markdown table of the front: trial, then each objective, first objective best first."""
    first = objectives[0]
    rows = sorted(rows, key=lambda r: r[first.metric], reverse=first.mode == "max")
    header = ["trial"] + [f"{o.metric} ({o.mode})" for o in objectives]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join([str(r["trial"])] + [_fmt(r[o.metric]) for o in objectives])
                     + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.4g}"
    return f"{int(v):,}"


def plot(rows: list[dict], on_front: set, objectives: list[Objective], path: Path) -> Path:
    """All trials in the plane of the first two objectives, the front highlighted and joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_obj, x_obj = objectives[0], objectives[1]
    fig, ax = plt.subplots(figsize=(7, 5))
    others = [r for r in rows if r["trial"] not in on_front]
    ax.scatter([r[x_obj.metric] for r in others], [r[y_obj.metric] for r in others], c="0.6",
               s=30, label=f"other trials ({len(others)})")
    best = sorted((r for r in rows if r["trial"] in on_front), key=lambda r: r[x_obj.metric])
    ax.plot([r[x_obj.metric] for r in best], [r[y_obj.metric] for r in best], "o-",
            c="tab:red", label=f"Pareto front ({len(best)})", zorder=3)
    for r in best:
        ax.annotate(str(r["trial"]), (r[x_obj.metric], r[y_obj.metric]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    if x_obj.metric.startswith("cost.") and all(r[x_obj.metric] > 0 for r in rows):
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short spans
    ax.set_xlabel(f"{x_obj.metric} ({x_obj.mode})")
    ax.set_ylabel(f"{y_obj.metric} ({y_obj.mode})")
    title = "Pareto front of the finished trials"
    if len(objectives) > 2:
        title += f" (first two of {len(objectives)} objectives)"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def front_rows(rows: list[dict], objectives: list[Objective]) -> list[dict]:
    """The rows on the front among ``rows`` (dicts with "trial" and every objective's metric;
    rows missing an objective's value are left out)."""
    rows = [r for r in rows if all(isinstance(r.get(o.metric), (int, float)) for o in objectives)]
    idx = front([[float(r[o.metric]) for o in objectives] for r in rows], objectives)
    return [rows[i] for i in idx]


def objectives_of(search) -> list[Objective]:
    """The objectives of a space's `search` section."""
    return [Objective(o.metric, o.mode) for o in search.objective_list]
