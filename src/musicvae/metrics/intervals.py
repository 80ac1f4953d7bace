"""Intervals of a mean: Student-t intervals and paired differences (over seeds in a study's report, over
pieces in a checkpoint's whole-piece fidelity). Non-finite values are dropped first; each reports its n."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats


class Interval(NamedTuple):
    """Mean over seeds (or pieces), sample std (n-1), n, and the bounds of the confidence interval of the mean."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float


def finite_values(values: Iterable[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def t_interval(values: Iterable[float | None], level: float = 0.95) -> Interval:
    """Mean with its Student-t interval: mean ± t_{(1+level)/2, n-1} · std/√n.

    n = 0: all NaN; n = 1: the value, no std and no interval (NaN bounds); equal values: lo = hi = mean.
    """
    x = finite_values(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1, math.nan, math.nan)
    if np.all(x == x[0]):  # exact: the float noise of mean/std would give a zero-width interval off x[0]
        return Interval(float(x[0]), 0.0, n, float(x[0]), float(x[0]))
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half)


def paired_difference(a: Mapping[object, float], b: Mapping[object, float], level: float = 0.95) -> Interval:
    """t_interval of a[seed] - b[seed] over the seeds both have (finite in both); other seeds are ignored.

    Pairing by seed removes what two runs of one seed share (data order, initialisation draws) from the
    comparison, so a consistent difference is resolved with fewer seeds than two independent means.
    """
    diffs = [a[s] - b[s] for s in a if s is not None and s in b]
    return t_interval(diffs, level)


def excludes_zero(iv: Interval) -> bool:
    """True when an interval exists and lies entirely on one side of 0."""
    return iv.n >= 2 and math.isfinite(iv.lo) and (iv.lo > 0 or iv.hi < 0)
