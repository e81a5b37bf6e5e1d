"""Plots of a finished hyperparameter search, written as PNG files.

`write_search_plots(records, out_dir)` draws whatever the trial records support:

- ``optimization_history.png`` -- each trial's value in the order given, the running best, and
  colour/marker by status kind (completed / stopped early / failed or rejected);
- ``param_importances.png`` -- Optuna fANOVA importances of the searched parameters (on at most
  `IMPORTANCE_TRIALS` trials, a seeded random sample of a larger search);
- ``parallel_coordinates.png`` -- one polyline per trial with a value over the varying parameters;
- ``learning_curves.png`` -- the metric against epoch for every trial with a history.

A plot the records cannot support (e.g. fewer than two trials with a value for the importances)
is skipped, never raised. This module draws; what it draws comes from
`gunn_search.results.search_axes` (the trial records, the searched parameters as axes) and
`gunn_search.results.importances` (Optuna's fANOVA). All drawing is plain matplotlib. (Optuna's
`optuna.visualization.matplotlib` works without plotly, but every function in it emits an
`ExperimentalWarning`, its history plot drops non-complete trials and cannot colour by our status
kinds, and its parallel-coordinate plot neither normalises nor log-scales the axes.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from gunn_search.results.importances import (  # noqa: E402
    importance_sample, importance_trials, param_importances)
from gunn_search.results.search_axes import (  # noqa: E402
    TrialRecord,
    finite,
    searched_axes,
)
from gunn_search.status import Kind, parse_status  # noqa: E402

logger = logging.getLogger(__name__)

DPI = 100
HISTORY_FILE = "optimization_history.png"
IMPORTANCES_FILE = "param_importances.png"
PARALLEL_FILE = "parallel_coordinates.png"
CURVES_FILE = "learning_curves.png"

COMPLETED, STOPPED, FAILED = "completed", "stopped early", "failed / rejected"
_KIND_STYLE = {  # colour, marker, line style
    COMPLETED: ("tab:blue", "o", "-"),
    STOPPED: ("tab:orange", "v", "--"),
    FAILED: ("tab:red", "X", ":"),
}


# --------------------------------------------------------------------------- helpers


def status_kind(status) -> str:
    """The plot style of a trial status (a `TrialStatus` or its text): COMPLETED / STOPPED / FAILED."""
    st = parse_status(str(status) if status is not None else None)
    if st is None:
        return FAILED
    return {Kind.COMPLETED: COMPLETED, Kind.STOPPED: STOPPED}.get(st.kind, FAILED)


def _infer_maximize(metric: str) -> bool:
    m = metric.lower()
    return not any(w in m for w in ("loss", "err", "perplexity"))


def _best_index(values: list[float | None], maximize: bool) -> int | None:
    idx = [i for i, v in enumerate(values) if v is not None]
    if not idx:
        return None
    return (max if maximize else min)(idx, key=lambda i: values[i])


def _save(fig, path: Path) -> Path:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------- plots


def plot_optimization_history(records: list[TrialRecord], path: Path, metric: str = "val_acc",
                              maximize: bool = True) -> Path | None:
    if not records:
        return None
    kinds = [status_kind(r.status) for r in records]
    values = [finite(r.value) for r in records]
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, (color, marker, _) in _KIND_STYLE.items():
        xs = [i for i, (k, v) in enumerate(zip(kinds, values)) if k == kind and v is not None]
        ys = [values[i] for i in xs]
        if xs:
            what = f"{kind}, at the epoch it stopped" if kind == STOPPED else kind
            ax.scatter(xs, ys, c=color, marker=marker, s=40, zorder=3,
                       label=f"{what} ({len(xs)})", edgecolors="none" if marker != "X" else None)
    # trials without a value: hollow markers in a shaded band along the bottom edge
    # (x in data, y in axes coordinates), kept clear of the data by lowering the y limit
    missing = [i for i, v in enumerate(values) if v is None]
    band = 0.07
    if missing:
        if any(v is not None for v in values):
            lo, hi = ax.get_ylim()
            ax.set_ylim((lo - (band + 0.02) * hi) / (1 - band - 0.02), hi)
        trans = ax.get_xaxis_transform()
        ax.add_patch(Rectangle((0, 0), 1, band, transform=ax.transAxes, color="0.92", zorder=0,
                               lw=0))
        ax.text(1.005, band / 2, "no\nvalue", transform=ax.transAxes, fontsize=7, color="0.4",
                va="center", ha="left")
        for kind, (color, marker, _) in _KIND_STYLE.items():
            xs = [i for i in missing if kinds[i] == kind]
            if xs:
                ax.scatter(xs, [band / 2] * len(xs), transform=trans, facecolors="none",
                           edgecolors=color, marker=marker if marker != "X" else "s", s=40,
                           zorder=3, label=f"{kind}, no value ({len(xs)})")
    # running best over the trials that did not fail
    best, xs, ys = None, [], []
    for i, (k, v) in enumerate(zip(kinds, values)):
        if v is not None and k != FAILED:
            best = v if best is None else (max(best, v) if maximize else min(best, v))
        if best is not None:
            xs.append(i)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", lw=1.5, zorder=2, label="best so far")
    if all(v is None for v in values):
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "no trial reported a value", transform=ax.transAxes,
                ha="center", va="center", color="gray")
    ax.set_xlim(-0.5, len(records) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (in order)")
    ax.set_ylabel(metric)
    ax.set_title(f"Optimization history ({len(records)} trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_param_importances(records: list[TrialRecord], path: Path, metric: str = "val_acc",
                           maximize: bool = True, distributions: dict | None = None,
                           importances: dict | None = None) -> Path | None:
    """`importances`: `param_importances` of these records already computed (the search logs
    them too), else computed here."""
    imp = (importances if importances is not None else
           param_importances(records, maximize=maximize, distributions=distributions))
    if not imp:
        return None
    items = sorted(imp.items(), key=lambda kv: kv[1])  # least important at the bottom
    names, vals = [k for k, _ in items], [v for _, v in items]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.45 * len(items) + 1.5)))
    bars = ax.barh(range(len(items)), vals, color="tab:blue")
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(names)
    for b, v in zip(bars, vals):
        ax.text(b.get_width() + 0.01 * max(vals), b.get_y() + b.get_height() / 2, f"{v:.2f}",
                va="center", fontsize=8)
    ax.set_xlim(0, max(vals) * 1.15)
    ax.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
    ax.set_ylabel("hyperparameter")
    fid = importance_trials(records)
    n = len(fid.valued)
    used = len(importance_sample(list(range(n))))
    ax.set_title(f"Hyperparameter importances ({fid.label})" if used == n else
                 f"Hyperparameter importances ({fid.label}; a random sample of {used})")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_parallel_coordinates(records: list[TrialRecord], path: Path, metric: str = "val_acc",
                              maximize: bool = True, distributions: dict | None = None) -> Path | None:
    # The trials of one fidelity, as the importances (a stopped trial's mid-schedule value is
    # never coloured as a final one).
    fid = importance_trials(records, min_trials=2)
    if fid is None:
        return None
    valued = fid.valued
    axes = searched_axes([r for r, _ in valued], distributions)
    if not axes:
        return None
    n = len(axes)
    vals = np.array([v for _, v in valued])
    vmin, vmax = float(vals.min()), float(vals.max())
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5 * (abs(vmin) or 1), vmax + 0.5 * (abs(vmax) or 1)
    norm = Normalize(vmin, vmax)
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")

    fig, ax = plt.subplots(figsize=(max(6.0, 1.7 * n + 2.5), 5))
    xs = np.arange(n)
    # worst first so the best lines are drawn on top
    order = sorted(range(len(valued)), key=lambda i: valued[i][1], reverse=not maximize)
    best_i = order[-1]
    # All but the best line as one LineCollection and one scatter: an artist per trial made the
    # plot's time grow with the search (3.5 s for 1536 trials), one artist keeps it well under.
    lines, colors = [], []
    for i in order:
        r, v = valued[i]
        ys = [a.position((r.params or {}).get(a.name)) for a in axes]
        if i == best_i:
            ax.plot(xs, ys, color=cmap(norm(v)), lw=2.5, marker="o", ms=3, zorder=3)
        else:
            lines.append(np.column_stack([xs, ys]))
            colors.append(cmap(norm(v)))
    if lines:
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=1.2, alpha=0.75,
                                         zorder=2))
        pts = np.concatenate(lines)
        ax.scatter(pts[:, 0], pts[:, 1], c=np.repeat(colors, n, axis=0), s=9, alpha=0.75,
                   zorder=2, edgecolors="none")
    for x, a in zip(xs, axes):
        ax.axvline(x, color="black", lw=1, zorder=1)
        for y, label in a.ticks():
            ax.text(x + 0.04, y, label, fontsize=7, va="center", ha="left", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    ax.set_xticks(xs)
    ax.set_xticklabels([a.name + (" (log)" if a.log else "") for a in axes],
                       rotation=20 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks([])
    ax.set_xlim(-0.3, n - 0.4)
    ax.set_ylim(-0.06, 1.06)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel("normalised value (per axis)")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    fig.colorbar(sm, ax=ax, label=metric, pad=0.02)
    ax.set_title(f"Parallel coordinates ({fid.label})")
    return _save(fig, path)


def _curve(r: TrialRecord, metric: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for j, h in enumerate(r.history or []):
        if not isinstance(h, dict):
            continue
        y = finite(h.get(metric))
        if y is None:
            continue
        x = finite(h.get("epoch"))
        xs.append(x if x is not None else float(j + 1))
        ys.append(y)
    return xs, ys


def plot_learning_curves(records: list[TrialRecord], path: Path, metric: str = "val_acc",
                         maximize: bool = True) -> Path | None:
    curves = [(r, *_curve(r, metric)) for r in records]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    # best: the best value among trials that did not fail, else among all, else the best epoch
    kinds = [status_kind(r.status) for r, _, _ in curves]
    ok_vals = [finite(r.value) if k != FAILED else None for (r, _, _), k in zip(curves, kinds)]
    best_i = _best_index(ok_vals, maximize)
    if best_i is None:
        best_i = _best_index([finite(r.value) for r, _, _ in curves], maximize)
    if best_i is None:
        best_i = _best_index([(max if maximize else min)(ys) for _, _, ys in curves], maximize)

    fig, ax = plt.subplots(figsize=(8, 5))
    # One LineCollection per status kind (and one scatter for one-epoch curves), not an artist
    # per trial: that grew with the search (3 s for 1536 trials).
    by_kind: dict[str, tuple[list, list]] = {}
    for i, ((r, xs, ys), k) in enumerate(zip(curves, kinds)):
        if i == best_i:
            continue
        lines, points = by_kind.setdefault(k, ([], []))
        (points if len(xs) == 1 else lines).append(np.column_stack([xs, ys]))
    for k, (lines, points) in by_kind.items():
        color, _, ls = _KIND_STYLE[k]
        if lines:
            ax.add_collection(LineCollection(lines, colors=color, linestyles=ls, linewidths=1,
                                             alpha=0.6))
        if points:
            pts = np.concatenate(points)
            ax.scatter(pts[:, 0], pts[:, 1], color=color, s=9, alpha=0.6, edgecolors="none")
    used = set(by_kind)
    r, xs, ys = curves[best_i]
    best_val = finite(r.value)
    best_val = best_val if best_val is not None else (max if maximize else min)(ys)
    ax.plot(xs, ys, color="black", lw=2.5, marker="o", ms=3, zorder=5)
    handles = [Line2D([], [], color=_KIND_STYLE[k][0], ls=_KIND_STYLE[k][2], label=k)
               for k in _KIND_STYLE if k in used]
    handles.append(Line2D([], [], color="black", lw=2.5,
                          label=f"best: {r.trial_id} ({metric}={best_val:.4g})"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves ({len(curves)} trials with history)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- entry point


def write_search_plots(records: list[TrialRecord], out_dir: str | Path, metric: str = "val_acc",
                       *, maximize: bool | None = None,
                       distributions: dict | None = None,
                       importances: dict | None = None) -> list[Path]:
    """Write the search plots that `records` support into `out_dir`; return their paths.

    `maximize` defaults to True unless `metric` looks like a loss/error. A plot the records
    cannot support is skipped; an unexpected failure in one plot is logged and skipped too, so
    the others are still written. ``distributions`` (Optuna's, by parameter name) give the
    searched parameters' axes their type, bounds and log scale.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = list(records or [])
    if maximize is None:
        maximize = _infer_maximize(metric)
    written: list[Path] = []
    for fn, name in ((plot_optimization_history, HISTORY_FILE),
                     (plot_param_importances, IMPORTANCES_FILE),
                     (plot_parallel_coordinates, PARALLEL_FILE),
                     (plot_learning_curves, CURVES_FILE)):
        before = set(plt.get_fignums())
        extra = ({"distributions": distributions}
                 if fn in (plot_param_importances, plot_parallel_coordinates) else {})
        if fn is plot_param_importances:
            extra["importances"] = importances
        try:
            p = fn(records, out / name, metric=metric, maximize=maximize, **extra)
        except Exception:  # a plot is a by-product; never lose the others to one
            logger.warning("search plot %s failed", name, exc_info=True)
            for num in set(plt.get_fignums()) - before:  # only the figure(s) it left open
                plt.close(num)
            continue
        if p is not None:
            written.append(p)
    return written
