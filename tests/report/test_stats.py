"""Intervals over seeds against hand-computed values; pairing by seed; NaN safety."""

from __future__ import annotations

import math

import pytest

from musicvae.report import final_and_best, paired_difference, t_interval

T_975_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom (statistical tables)
T_95_1 = 6.313752  # Student-t 95% quantile, 1 degree of freedom


def test_t_interval_matches_the_hand_values():
    mean, std, n, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert std == pytest.approx(1.0, rel=1e-12)
    half = T_975_2 * 1.0 / math.sqrt(3)  # = 2.4841
    assert half == pytest.approx(2.4841, abs=1e-4)
    assert lo == pytest.approx(2.0 - half, rel=1e-6) and hi == pytest.approx(2.0 + half, rel=1e-6)
    # another level and n: [2, 4] at 90%: mean 3, std √2, half-width t_{0.95,1}·√2/√2
    mean, std, n, lo, hi = t_interval([4.0, 2.0], level=0.9)
    assert (mean, n) == (3.0, 2) and std == pytest.approx(math.sqrt(2), rel=1e-12)
    assert (lo, hi) == (pytest.approx(3.0 - T_95_1, rel=1e-6), pytest.approx(3.0 + T_95_1, rel=1e-6))


def test_t_interval_edge_cases_and_nan_safety():
    one = t_interval([0.7])
    assert (one.mean, one.n) == (0.7, 1) and all(math.isnan(x) for x in (one.std, one.lo, one.hi))
    empty = t_interval([])
    assert empty.n == 0 and math.isnan(empty.mean)
    equal = t_interval([0.1, 0.1, 0.1])  # float noise must not move the bounds off the value
    assert (equal.mean, equal.std, equal.lo, equal.hi) == (0.1, 0.0, 0.1, 0.1)
    assert t_interval([1.0, math.nan, 2.0, None, 3.0, math.inf]) == t_interval([1.0, 2.0, 3.0])
    assert t_interval([math.nan, 5.0]).n == 1


def test_paired_difference_pairs_by_seed_and_ignores_unmatched_seeds():
    a = {0: 5.0, 1: 7.0, 2: 9.0, 3: 100.0, None: 1.0}  # seed 3 has no partner; None is no seed
    b = {2: 3.0, 0: 1.0, 1: 2.0, 5: -1.0, None: 0.0}  # order differs: pairing is by key
    diff = paired_difference(a, b)  # differences 4, 5, 6
    assert diff == t_interval([4.0, 5.0, 6.0])
    assert (diff.mean, diff.n) == (5.0, 3)
    assert diff.hi - diff.mean == pytest.approx(T_975_2 / math.sqrt(3), rel=1e-6)
    # a non-finite value drops its seed's pair only
    assert paired_difference({0: 1.0, 1: math.nan, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0}).n == 2
    assert paired_difference({0: 1.0}, {1: 1.0}).n == 0


def test_final_and_best():
    assert final_and_best({1: 3.0, 5: 1.0, 9: 2.0}, higher_is_better=True) == (2.0, 3.0)
    assert final_and_best({1: 3.0, 5: 1.0, 9: 2.0}, higher_is_better=False) == (2.0, 1.0)
    final, best = final_and_best({1: 3.0, 9: math.nan}, higher_is_better=True)
    assert math.isnan(final) and best == 3.0
    assert all(math.isnan(x) for x in final_and_best({}, True))
