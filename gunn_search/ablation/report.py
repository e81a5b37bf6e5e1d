"""An ablation's outcome: every cell's final error, the per-variant statistics and the paired
differences (`gunn_search.ablation.stats`), as the Table-5-style markdown and as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from gunn_search.ablation.stats import PairedDifference, Summary, paired_difference, summarize
from gunn_search.ablation.variants import LABELS

if TYPE_CHECKING:
    from gunn_search.run import interrupts

CONFIDENCE = 0.95


@dataclass
class AblationResult:
    """Every cell's final error (%) by variant and seed; None where the run gave no result."""

    experiment: str
    source_run_id: str
    search_run_id: str
    data: str
    split: str  # search (validation error) or final (test error)
    epochs: int
    variants: list[str]
    seeds: list[int]
    errors: dict[str, dict[int, float | None]]
    statuses: dict[str, dict[int, str]] = field(default_factory=dict)
    run_ids: dict[str, dict[int, str]] = field(default_factory=dict)
    parent_run_id: str = ""
    # Set when Ctrl-C or SIGTERM stopped it (gunn_search.run.interrupts): nothing is summarised,
    # `--resume` continues it.
    interrupted: "interrupts.Interrupt | None" = None

    @property
    def metric(self) -> str:
        return "test error" if self.split == "final" else "validation error"

    def summaries(self) -> dict[str, Summary]:
        return {v: summarize([e for e in self.errors[v].values() if e is not None])
                for v in self.variants}

    def pairs(self) -> list[tuple[str, str, PairedDifference]]:
        return [(a, b, paired_difference(self.errors[a], self.errors[b], CONFIDENCE))
                for a, b in pairs_of(self.variants)]

    def failed(self) -> list[tuple[str, int, str]]:
        return [(v, s, self.statuses.get(v, {}).get(s, "no result")) for v in self.variants
                for s in self.seeds if self.errors[v].get(s) is None]


def pairs_of(variants: Sequence[str]) -> list[tuple[str, str]]:
    """The comparisons: GUNN (else the first variant) against each other variant."""
    ref = "gunn" if "gunn" in variants else variants[0]
    return [(ref, v) for v in variants if v != ref]


def final_error(metrics: dict, split: str) -> float | None:
    """The error (%) of a run's last epoch, from its last reported metrics."""
    acc = metrics.get("test_acc" if split == "final" else "val_acc")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc):
        return None
    return 100.0 * (1.0 - float(acc))


def _num(x: float, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def to_markdown(r: AblationResult) -> str:
    """The Table-5-style table: per variant mean ± std, per pair the paired difference."""
    seeds = r.seeds

    def head(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [f"Paired ablation of trial run `{r.source_run_id}` (experiment {r.experiment}): "
             f"{r.data}, {r.epochs} epoch{'s' if r.epochs != 1 else ''}, final {r.metric} (%), "
             f"seeds {', '.join(map(str, seeds))}", ""]
    cols = ["variant", "error % (mean ± std)", *[f"seed {s}" for s in seeds]]
    lines += [head(cols), head(["---"] * len(cols))]
    for v, s in r.summaries().items():
        lines.append(head([LABELS[v], f"{_num(s.mean)} ± {_num(s.std)}",
                           *[_num(r.errors[v].get(seed)) for seed in seeds]]))
    lines.append("")
    pct = int(round(CONFIDENCE * 100))
    cols = ["pair", "paired mean difference (pp)", f"{pct} % CI (t, n-1 dof)",
            *[f"seed {s}" for s in seeds]]
    lines += [head(cols), head(["---"] * len(cols))]
    for a, b, d in r.pairs():
        ci = "n/a" if math.isnan(d.ci_low) else f"[{_num(d.ci_low, sign=True)}, " \
                                               f"{_num(d.ci_high, sign=True)}]"
        lines.append(head([f"{LABELS[a]} - {LABELS[b]}", f"{_num(d.mean, sign=True)} (n={d.n})",
                           ci, *[_num(d.diffs.get(s), sign=True) if s in d.diffs else "n/a"
                                 for s in seeds]]))
    lines += ["", "A negative difference: the first variant has the lower error. Same seed = same "
                  "initial weights and data order for every variant."]
    failed = r.failed()
    if failed:
        lines.append("No result (left out of the statistics): " + ", ".join(
            f"{LABELS[v]} seed {s} ({st})" for v, s, st in failed) + ".")
    return "\n".join(lines)


def to_json(r: AblationResult) -> dict:
    out = {k: getattr(r, k) for k in ("experiment", "source_run_id", "search_run_id",
                                      "parent_run_id", "data", "split", "epochs", "variants",
                                      "seeds")}
    out.update(metric=f"final {r.metric} (%)", confidence=CONFIDENCE, variant_stats={}, pairs=[])
    for v, s in r.summaries().items():
        out["variant_stats"][v] = {
            "label": LABELS[v], "n": s.n, "mean": _nan_none(s.mean), "std": _nan_none(s.std),
            "per_seed": {str(k): e for k, e in r.errors[v].items()},
            "status": {str(k): st for k, st in r.statuses.get(v, {}).items()},
            "run_ids": {str(k): rid for k, rid in r.run_ids.get(v, {}).items()}}
    for a, b, d in r.pairs():
        out["pairs"].append({"a": a, "b": b, "label": f"{LABELS[a]} - {LABELS[b]}", "n": d.n,
                             "mean": _nan_none(d.mean), "std": _nan_none(d.std),
                             "sem": _nan_none(d.sem), "ci_low": _nan_none(d.ci_low),
                             "ci_high": _nan_none(d.ci_high),
                             "per_seed": {str(k): x for k, x in d.diffs.items()}})
    return out


def _nan_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x
