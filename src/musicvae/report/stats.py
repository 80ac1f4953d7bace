"""Statistics over seeds: Student-t intervals, paired differences, final/best values, curve bands.

Every function drops non-finite values first and reports the n it actually used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

Series = dict[int, float]  # step -> value


class Interval(NamedTuple):
    """Mean over seeds, sample std (n-1), n, and the bounds of the confidence interval of the mean."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float


def _finite(values: Iterable[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def t_interval(values: Iterable[float | None], level: float = 0.95) -> Interval:
    """Mean with its Student-t interval: mean ± t_{(1+level)/2, n-1} · std/√n.

    n = 0: all NaN; n = 1: the value, no std and no interval (NaN bounds); equal values: lo = hi = mean.
    """
    x = _finite(values)
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


def final_and_best(series: Series, higher_is_better: bool) -> tuple[float, float]:
    """(value at the last step, best finite value) of a series; NaN for what is missing."""
    if not series:
        return math.nan, math.nan
    final = series[max(series)]
    finite = [v for v in series.values() if math.isfinite(v)]
    best = (max if higher_is_better else min)(finite) if finite else math.nan
    return final, best


def ema(values: Sequence[float], weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing)."""
    out, acc = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


class Band(NamedTuple):
    """A curve over seeds: steps, mean, min and max at each step, and the number of runs."""

    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int


def aggregate_curves(series: Sequence[Series], smooth: float | None = None) -> Band:
    """Mean, min and max over runs on the union of their steps.

    Each run is interpolated linearly inside its own step range (NaN outside, e.g. a shorter run) and
    optionally EMA-smoothed first; the statistics use the runs present at each step.
    """
    clean = [{s: v for s, v in ser.items() if math.isfinite(v)} for ser in series]
    clean = [c for c in clean if c]
    if not clean:
        empty = np.empty(0)
        return Band(empty, empty, empty, empty, 0)
    steps = np.array(sorted(set().union(*clean)), dtype=float)
    grid = np.full((len(clean), len(steps)), np.nan)
    for i, c in enumerate(clean):
        x, y = (np.array(v, dtype=float) for v in zip(*sorted(c.items()), strict=True))
        y = ema(y, smooth) if smooth else y
        inside = (steps >= x[0]) & (steps <= x[-1])
        grid[i, inside] = np.interp(steps[inside], x, y)
    present = ~np.isnan(grid)
    mean = np.nansum(grid, 0) / np.maximum(present.sum(0), 1)
    return Band(steps, mean, np.fmin.reduce(grid, 0), np.fmax.reduce(grid, 0), len(clean))
