"""gunn_search.ablation.stats: exact numbers on a small example, and scipy's paired t-test."""

import math

import pytest

from gunn_search.ablation import stats as ps

# Three seeds; GUNN's and SUNN's errors (%). d = a - b = (-0.9, -0.5, -0.8).
GUNN = [5.1, 4.8, 5.6]
SUNN = [6.0, 5.3, 6.4]


def test_summary_is_the_mean_and_the_sample_std():
    s = ps.summarize(GUNN)
    assert s.n == 3
    assert s.mean == pytest.approx(15.5 / 3, abs=1e-12)
    # deviations -0.0667, -0.3667, 0.4333: sum of squares 0.32667, / (n - 1) = 0.16333
    assert s.std == pytest.approx(math.sqrt(0.49 / 3), abs=1e-12)
    assert ps.summarize([2.0]).n == 1 and math.isnan(ps.summarize([2.0]).std)
    assert ps.summarize([]).n == 0


def test_paired_difference_by_hand():
    d = ps.paired_difference(GUNN, SUNN)
    assert d.n == 3 and d.confidence == 0.95
    assert d.diffs == pytest.approx({0: -0.9, 1: -0.5, 2: -0.8})
    assert d.mean == pytest.approx(-2.2 / 3, abs=1e-12)
    sd = math.sqrt(((-0.9 + 2.2 / 3) ** 2 + (-0.5 + 2.2 / 3) ** 2 + (-0.8 + 2.2 / 3) ** 2) / 2)
    assert d.std == pytest.approx(sd, abs=1e-12)  # 0.208167
    assert d.sem == pytest.approx(sd / math.sqrt(3), abs=1e-12)
    half = 4.302652729749462 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert (d.ci_low, d.ci_high) == pytest.approx((d.mean - half, d.mean + half), abs=1e-9)
    assert (d.ci_low, d.ci_high) == pytest.approx((-1.250448, -0.216219), abs=1e-6)
    assert d.excludes_zero


def test_the_interval_is_scipys_paired_t_test():
    stats = pytest.importorskip("scipy.stats")
    cases = [(GUNN, SUNN, 0.95), ([1.0, 2.0, 4.0, 3.5], [1.5, 1.0, 4.5, 3.0], 0.95),
             ([20.1, 21.0], [20.6, 21.2], 0.9), ([3.0, 2.5, 2.0, 2.2, 2.9], [3.1, 2.9, 2.8, 2.5, 3.0], 0.99)]
    for a, b, c in cases:
        d = ps.paired_difference(a, b, c)
        ci = stats.ttest_rel(a, b).confidence_interval(c)
        assert (d.ci_low, d.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_seeds_missing_from_either_side_are_left_out():
    a = {0: 5.0, 1: 4.0, 2: 6.0, 3: None}
    b = {0: 6.0, 1: 5.5, 3: 7.0, 4: 1.0}
    d = ps.paired_difference(a, b)
    assert d.diffs == {0: -1.0, 1: -1.5} and d.n == 2
    assert d.mean == pytest.approx(-1.25)
    # n = 2: t_{0.975, 1} = 12.706; sd = 0.35355, sem = 0.25
    assert (d.ci_low, d.ci_high) == pytest.approx((-1.25 - 12.706205 * 0.25, -1.25 + 12.706205 * 0.25),
                                                  abs=1e-5)
    one = ps.paired_difference({0: 1.0}, {0: 2.0})
    assert one.n == 1 and one.mean == -1.0 and math.isnan(one.ci_low) and not one.excludes_zero
    with pytest.raises(ValueError, match="same length"):
        ps.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        ps.paired_difference(GUNN, SUNN, 1.5)


