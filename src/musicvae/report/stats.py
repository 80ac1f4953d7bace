"""Statistics over seeds: final/best values, curve bands; Student-t intervals and paired differences (their
home: musicvae.metrics.intervals, re-exported here for the report).

Every function drops non-finite values first and reports the n it actually used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from musicvae.metrics.intervals import Interval, excludes_zero, finite_values, paired_difference, t_interval

__all__ = ["Band", "Interval", "Series", "aggregate_curves", "ema", "excludes_zero", "final_and_best",
           "finite_values", "paired_difference", "t_interval"]

Series = dict[int, float]  # step -> value


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
