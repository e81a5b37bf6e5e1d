"""The statistics of a paired ablation, as pure functions: no Ray, MLflow or torch.

Every variant trains once per seed, and a seed gives every variant the same initial weights and
data order, so two variants are compared seed by seed: the paired difference d_s = a_s - b_s has
mean d̄ and sample standard deviation s_d (n - 1 in the denominator), and its confidence interval
is d̄ ± t_{(1+c)/2, n-1} · s_d / √n (Student's t with n - 1 degrees of freedom), which is what
`scipy.stats.ttest_rel(a, b).confidence_interval(c)` gives, and is: the interval is scipy's.
Pairing removes the seed-to-seed
variation the variants share, so the interval is narrower than an unpaired one on the same runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n - 1) of one variant's values."""

    n: int
    mean: float
    std: float  # nan for one value


def summarize(values: Sequence[float]) -> Summary:
    vs = [float(v) for v in values]
    if not vs:
        return Summary(0, math.nan, math.nan)
    mean = math.fsum(vs) / len(vs)
    if len(vs) < 2:
        return Summary(len(vs), mean, math.nan)
    var = math.fsum((v - mean) ** 2 for v in vs) / (len(vs) - 1)
    return Summary(len(vs), mean, math.sqrt(var))


@dataclass(frozen=True)
class PairedDifference:
    """a - b, seed by seed: mean, its standard error and confidence interval (t, n - 1 dof)."""

    n: int
    mean: float
    std: float  # of the per-seed differences (n - 1)
    sem: float  # std / sqrt(n)
    ci_low: float
    ci_high: float
    confidence: float
    diffs: dict = field(default_factory=dict)  # seed -> a_seed - b_seed

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies on one side of zero (a difference at this confidence)."""
        return self.ci_low > 0 or self.ci_high < 0


def paired_difference(a: Mapping | Sequence[float], b: Mapping | Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """The paired difference a - b over the seeds both have.

    `a` and `b` map seed -> value (a seed missing from either, e.g. a failed run, is left out)
    or are sequences in the same seed order. With fewer than two pairs the interval is nan.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    if not isinstance(a, Mapping) and not isinstance(b, Mapping) and len(a) != len(b):
        raise ValueError(f"paired values need the same length (got {len(a)} and {len(b)})")
    a, b = _by_seed(a), _by_seed(b)
    seeds = [s for s in a if s in b]
    diffs = {s: float(a[s]) - float(b[s]) for s in seeds}
    s = summarize(list(diffs.values()))
    if s.n < 2:
        return PairedDifference(s.n, s.mean, math.nan, math.nan, math.nan, math.nan, confidence,
                                diffs)
    from scipy.stats import ttest_rel

    sem = s.std / math.sqrt(s.n)
    if sem == 0:  # every seed differs alike: scipy's interval is nan, the difference is exact
        return PairedDifference(s.n, s.mean, s.std, sem, s.mean, s.mean, confidence, diffs)
    ci = ttest_rel([float(a[k]) for k in seeds], [float(b[k]) for k in seeds]).confidence_interval(
        confidence)
    return PairedDifference(s.n, s.mean, s.std, sem, float(ci.low), float(ci.high), confidence,
                            diffs)


def _by_seed(values: Mapping | Sequence[float]) -> dict:
    if isinstance(values, Mapping):
        return {k: v for k, v in values.items() if v is not None and not _nan(v)}
    return {i: v for i, v in enumerate(values)}


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
