"""The two ways a value of a space file can vary: a choice among values, or a numeric range.

    {choice: [8, 12, 16]}                  any value the key accepts
    {low: 0.02, high: 0.3, log: true}      a number between low and high (log-uniform with log)
    {low: 10, high: 30, step: 5}           integers (or floats) on a grid

What the values may be is the key's business (the training config's schema); this module parses
the two forms, enumerates and describes them and asks Optuna for a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

CHOICE_KEYS = {"choice"}
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Choice:
    values: tuple

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False


Distribution = Choice | Range


def looks_like_distribution(v: Any) -> bool:
    """Whether a YAML value is written as a distribution (a mapping with choice or low/high)."""
    return isinstance(v, dict) and bool(set(v) & (CHOICE_KEYS | {"low", "high"}))


def parse(v: dict, kind: str, coerce: Callable[[Any], Any]) -> Distribution:
    """A distribution from its YAML mapping; ValueError (a one-line problem) when it is invalid.

    ``kind`` is what the key holds ("int", "float" or "other"); ``coerce`` validates one value as
    the key would (raising ValueError) and returns it typed.
    """
    keys = set(v)
    if "choice" in keys:
        if keys - CHOICE_KEYS:
            raise ValueError(f"a choice takes no other keys (got {', '.join(sorted(keys - CHOICE_KEYS))})")
        values = v["choice"]
        if not isinstance(values, list):
            raise ValueError(f"choice must be a list of values (got {values!r})")
        if not values:
            raise ValueError("choice must not be empty")
        typed = []
        for x in values:
            if isinstance(x, (dict, list)):
                raise ValueError(f"choice values must be single values (got {x!r})")
            x = _coerce(coerce, x, "choice")
            if x in typed:
                raise ValueError(f"duplicate choice {x!r}")
            typed.append(x)
        return Choice(tuple(typed))
    if keys - RANGE_KEYS:
        raise ValueError(f"unknown key {sorted(keys - RANGE_KEYS)[0]!r} in a range "
                         "(a range has low, high, and optionally log or step)")
    if "low" not in v or "high" not in v:
        raise ValueError("a range needs both low and high")
    if kind not in ("int", "float"):
        raise ValueError("a range needs a numeric key; use {choice: [...]} here")
    low, high = _coerce(coerce, v["low"], "low"), _coerce(coerce, v["high"], "high")
    log, step = v.get("log", False), v.get("step")
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false (got {log!r})")
    if low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0 (got low={low})")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise ValueError(f"step must be a positive number (got {step!r})")
        if kind == "int" and not isinstance(step, int):
            raise ValueError(f"step of an integer range must be an integer (got {step!r})")
        if log:
            raise ValueError("a log range cannot have a step")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"high - low ({high - low:g}) must be a multiple of step ({step:g})")
    return Range(low, high, log=log, step=step, integer=kind == "int")


def _coerce(coerce, x, what: str):
    try:
        return coerce(x)
    except ValueError as e:
        raise ValueError(f"{what} {x!r}: {e}") from None


def values(d: Distribution) -> list:
    """Every value allowed: a choice's values, an integer range's integers; a float range gives
    its end points only (with a step: its grid)."""
    if isinstance(d, Choice):
        return list(d.values)
    if d.integer:
        return list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
    if d.step is not None:
        n = round((d.high - d.low) / d.step)
        return [d.low + i * d.step for i in range(n + 1)]
    return [d.low] if d.low == d.high else [d.low, d.high]


def size(d: Distribution) -> float:
    """How many values are allowed (inf for a continuous range)."""
    if isinstance(d, Choice):
        return len(d.values)
    if d.integer or d.step is not None:
        return round((d.high - d.low) / (d.step or 1)) + 1
    return 1 if d.low == d.high else math.inf


def is_searched(d: Distribution) -> bool:
    return size(d) > 1


def first(d: Distribution):
    return d.values[0] if isinstance(d, Choice) else d.low


def allows(d: Distribution, v) -> bool:
    if isinstance(d, Choice):  # True == 1 in Python; a flag is not a number here
        return any(v == x and isinstance(v, bool) == isinstance(x, bool) for x in d.values)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if not d.low <= v <= d.high:
        return False
    if d.integer and v != int(v):
        return False
    if d.step is not None:
        n = (v - d.low) / d.step
        return abs(n - round(n)) < 1e-9
    return True


def describe(d: Distribution) -> str:
    if isinstance(d, Choice):
        return "{" + ", ".join(fmt(v) for v in d.values) + "}"
    s = f"[{fmt(d.low)}, {fmt(d.high)}]"
    if d.step is not None:
        s += f" step {fmt(d.step)}"
    if d.integer:
        return s + (" log" if d.log else "")
    return s + (" log-uniform" if d.log else " uniform")


def fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def suggest(trial, name: str, d: Distribution):
    """Optuna's value for ``name`` (not asked at all when only one value is allowed)."""
    if not is_searched(d):
        return first(d)
    if isinstance(d, Choice):
        return trial.suggest_categorical(name, list(d.values))
    if d.integer:
        return trial.suggest_int(name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
    return trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)


def to_optuna(d: Distribution):
    """The Optuna distribution (plots and importances use its type, bounds and log scale)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(d, Choice):
        return CategoricalDistribution(list(d.values))
    if d.integer:
        return IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
    return FloatDistribution(d.low, d.high, log=d.log, step=d.step)
