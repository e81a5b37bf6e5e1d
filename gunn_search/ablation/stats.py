"""The statistics of a paired ablation, as pure functions: no Ray, MLflow or torch.

Every variant trains once per seed, and a seed gives every variant the same initial weights and
data order, so two variants are compared seed by seed: the paired difference d_s = a_s - b_s has
mean d̄ and sample standard deviation s_d (n - 1 in the denominator), and its confidence interval
is d̄ ± t_{(1+c)/2, n-1} · s_d / √n (Student's t with n - 1 degrees of freedom), which is what
`scipy.stats.ttest_rel(a, b).confidence_interval(c)` gives. Pairing removes the seed-to-seed
variation the variants share, so the interval is narrower than an unpaired one on the same runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

# Two-sided 95 % quantiles of Student's t, t_{0.975, dof}, for dof 1..30 (the usual table); used
# only where scipy cannot be imported. Beyond 30 the quantile is interpolated in 1/dof toward the
# normal's 1.959964 (error < 0.002).
T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
        2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
        2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
        2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
Z975 = 1.959964


def t_quantile(q: float, dof: int) -> float:
    """The q-quantile of Student's t with `dof` degrees of freedom.

    scipy's when it can be imported (a dependency of scikit-learn, so normally); otherwise the
    table above, which has q = 0.975 only.
    """
    if dof < 1:
        raise ValueError(f"dof must be >= 1 (got {dof})")
    try:
        from scipy.stats import t
    except ImportError:
        return t975_table(dof) if math.isclose(q, 0.975) else _no_scipy(q)
    return float(t.ppf(q, dof))


def t975_table(dof: int) -> float:
    """t_{0.975, dof} from the table (no scipy)."""
    if dof <= len(T975):
        return T975[dof - 1]
    last = len(T975)
    return Z975 + (T975[-1] - Z975) * last / dof  # t - z shrinks about as 1/dof


def _no_scipy(q: float) -> float:
    raise RuntimeError(f"the {q} quantile of Student's t needs scipy (the table has 0.975 only)")


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
    sem = s.std / math.sqrt(s.n)
    half = t_quantile((1 + confidence) / 2, s.n - 1) * sem
    return PairedDifference(s.n, s.mean, s.std, sem, s.mean - half, s.mean + half, confidence,
                            diffs)


def _by_seed(values: Mapping | Sequence[float]) -> dict:
    if isinstance(values, Mapping):
        return {k: v for k, v in values.items() if v is not None and not _nan(v)}
    return {i: v for i, v in enumerate(values)}


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
