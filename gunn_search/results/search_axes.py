"""A finished search's trials as plot data: `TrialRecord`, and the searched parameters as axes.

An axis puts each trial's value of one searched parameter onto [0, 1]: its type, bounds and log
scale come from the Optuna distribution the parameter was sampled from (numbers stay numbers, a
log-sampled lr is a log axis), or are inferred from the observed values when there are none.
The importances (`gunn_search.results.importances`) and the drawing
(`gunn_search.results.plots`) both read them; nothing here imports matplotlib.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

# derived parameters (functions of the architecture), never plotted as searched params
DERIVED_PREFIXES = ("cost.",)


@dataclass
class TrialRecord:
    trial_id: str
    params: dict = field(default_factory=dict)  # searched values by path: {"optim.lr": 0.1, ...}
    history: list[dict] = field(default_factory=list)  # per-epoch metric dicts with "epoch"
    status: str = "completed"  # a TrialStatus ("completed", "stopped by ASHA", "errored", ...)
    value: float | None = None  # the trial's best metric value, or None


def finite(x: Any) -> float | None:
    """`x` as a float when it is a finite real number (not a bool), else None."""
    if x is None or isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


@dataclass
class Axis:
    """One searched parameter as an axis: how to put each observed value onto [0, 1]."""
    name: str
    kind: str                      # "int", "float" or "categorical"
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: list[str] = field(default_factory=list)
    observed: list[float] = field(default_factory=list)  # distinct numeric values, sorted

    def position(self, v: Any) -> float:
        """Normalised [0, 1] position of a raw value, NaN when missing / not representable."""
        if self.kind == "categorical":
            if v is None:
                return math.nan
            s = str(v)
            if s not in self.choices:
                return math.nan
            return self.choices.index(s) / (len(self.choices) - 1)
        x = finite(v)
        if x is None:
            return math.nan
        if self.log:
            return (math.log10(x) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        return (x - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        if self.kind == "categorical":
            return [(i / (len(self.choices) - 1), c) for i, c in enumerate(self.choices)]
        if 2 <= len(self.observed) <= 5:  # few distinct values (batch size, depth): label each
            return [(self.position(x), _fmt(x)) for x in self.observed]
        if self.log:
            mid = 10 ** ((math.log10(self.low) + math.log10(self.high)) / 2)
        else:
            mid = (self.low + self.high) / 2
        return [(0.0, _fmt(self.low)), (0.5, _fmt(mid)), (1.0, _fmt(self.high))]


def searched_axes(records: list[TrialRecord], distributions: dict | None = None) -> list[Axis]:
    """The searched parameters as axes.

    With ``distributions`` (Optuna's, by parameter name) each axis follows its distribution: a
    float or int range is a numeric axis over its bounds, log-scaled when it is sampled on a log
    scale; a choice of numbers is a numeric axis over the choices; any other choice is
    categorical, in the order written. Without them they are inferred from the observed values:
    numeric when all are numbers (log-scaled when the positive range spans more than one
    decade), else categorical over the observed values as strings. Parameters with fewer than
    two distinct observed values are dropped either way.
    """
    if distributions:
        axes = [_axis_of(name, d, records) for name, d in distributions.items()]
        return [a for a in axes if a is not None]
    names: list[str] = []
    for r in records:
        for k in (r.params or {}):
            if k not in names and not k.startswith(DERIVED_PREFIXES):
                names.append(k)
    axes = []
    for name in names:
        observed = [r.params[name] for r in records
                    if name in (r.params or {}) and r.params[name] is not None
                    and not (isinstance(r.params[name], float) and not math.isfinite(r.params[name]))]
        if not observed:
            continue
        if all(_is_number(v) for v in observed):
            xs = [float(v) for v in observed]
            low, high = min(xs), max(xs)
            if not high > low:
                continue
            axes.append(Axis(name, "int" if all(_is_int(v) for v in observed) else "float",
                              low, high, log=low > 0 and high / low > 10,
                              observed=sorted(set(xs))))
        else:
            choices = sorted({str(v) for v in observed})
            if len(choices) < 2:
                continue
            axes.append(Axis(name, "categorical", choices=choices))
    return axes


def _axis_of(name: str, d, records: list[TrialRecord]) -> Axis | None:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    observed = [r.params[name] for r in records if (r.params or {}).get(name) is not None]
    if len({str(v) for v in observed}) < 2:
        return None
    if isinstance(d, CategoricalDistribution):
        if all(_is_number(c) for c in d.choices):
            xs = [float(c) for c in d.choices]
            return Axis(name, "int" if all(_is_int(c) for c in d.choices) else "float",
                         min(xs), max(xs), observed=sorted(set(xs)))
        return Axis(name, "categorical", choices=[str(c) for c in d.choices])
    kind = "int" if isinstance(d, IntDistribution) else "float"
    xs = sorted({float(v) for v in observed if finite(v) is not None})
    return Axis(name, kind, float(d.low), float(d.high), log=bool(d.log), observed=xs)

