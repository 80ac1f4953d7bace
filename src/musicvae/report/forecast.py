"""Power-law forecast of a validation curve, L(S) = L_inf + A·S^-alpha, with a backtest that earns its
place.

A run's curve is a Series (logged step -> value); a validation logged at step s ran after S = s + 1
training steps. Each group's forecast (L_inf over seeds) is shown only when fitting the first half of the
curves predicts the measured last validation: its mean lies inside the 95% t-interval of the seeds'
predictions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from musicvae.report.stats import Interval, Series, t_interval

MIN_POINTS = 4  # fewer points than this after `start`: no fit
PRECISION = 0.05  # a backtest passes only if its prediction interval's half-width is within this share of the value


class PowerLawFit(NamedTuple):
    """L(S) = l_inf + a·S^-alpha, S in steps trained; NaN fields when the fit failed or had too few points."""

    l_inf: float  # the curve's unit (e.g. nats/segment)
    a: float  # unit · steps^alpha
    alpha: float  # dimensionless, in (0, 3]
    points: int  # points the fit used


def _law(x: np.ndarray, l_inf: float, a: float, alpha: float) -> np.ndarray:
    return l_inf + a * x ** (-alpha)


def fit_power_law(series: Series, start: int = 0, until: int | None = None) -> PowerLawFit:
    """Fit L(S) = L_inf + A*S^-alpha to the finite points with start < S <= until.

    S = step + 1 (steps trained); until None: all points. NaN fit with fewer than MIN_POINTS points or when
    curve_fit fails or cannot estimate the covariance (e.g. a flat curve).
    """
    pts = sorted((s + 1, v) for s, v in series.items() if math.isfinite(v) and s + 1 > start)
    pts = [(s, v) for s, v in pts if until is None or s <= until]
    nan = PowerLawFit(math.nan, math.nan, math.nan, len(pts))
    if len(pts) < MIN_POINTS:
        return nan
    steps, y = (np.array(c, dtype=float) for c in zip(*pts, strict=True))  # (points,) each
    ref = steps[-1]  # x = S / ref in (0, 1]: conditions the fit; A = A_x · ref^alpha
    x = steps / ref
    span = max(float(y.max() - y.min()), 1e-9 * max(abs(float(y.min())), 1.0))
    l0 = max(float(y.min()) - 0.1 * span, 0.0)
    p0 = (l0, max(float(y[0]) - l0, span) * float(x[0]) ** 0.5, 0.5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            # L_inf >= 0: the curves fitted here are NLLs (nats), never below 0
            popt, _ = curve_fit(_law, x, y, p0=p0, bounds=([0.0, 0.0, 1e-6], [np.inf, np.inf, 3.0]), maxfev=20000)
    except (RuntimeError, ValueError, OptimizeWarning):
        return nan
    l_inf, a_x, alpha = (float(p) for p in popt)
    a = a_x * float(ref) ** alpha
    if not all(math.isfinite(p) for p in (l_inf, a, alpha)):
        return nan
    return PowerLawFit(l_inf, a, alpha, len(pts))


def predict(fit: PowerLawFit, steps: float) -> float:
    """The fitted curve at `steps` steps trained (NaN for a failed fit)."""
    return fit.l_inf + fit.a * steps ** (-fit.alpha)


class Backtest(NamedTuple):
    """One group's forecast and its backtest; intervals are 95% Student-t over seeds."""

    group: str
    n: int  # runs with a usable backtest
    budget: int  # S_max: steps trained at the last validation common to the group's runs
    predicted: Interval  # backtest predictions at `budget` over seeds (fit on S <= budget/2)
    measured: float  # mean over seeds of the measured value at `budget`
    error: float  # predicted.mean - measured
    passes: bool  # measured inside [predicted.lo, predicted.hi] (n >= 2), half-width <= PRECISION · measured
    l_inf: Interval  # L_inf of full-curve fits over seeds


def backtest(group: str, curves: Sequence[Series], start: int = 0) -> Backtest:
    """For the curves of one group's runs (one per seed). `start`: points with S <= start are left out of
    every fit (e.g. a beta = 0 warm-up, whose distortion belongs to another objective).

    The measured mean and the predictions use the same runs: those with a finite value at the budget and a
    successful half-curve fit.
    """
    finite = [{s for s, v in c.items() if math.isfinite(v)} for c in curves]
    common = set.intersection(*finite) if finite else set()
    budget = max(common) + 1 if common else 0
    halves = [fit_power_law(c, start, budget // 2) for c in curves] if common else []
    pairs = [(predict(f, budget), c[budget - 1]) for f, c in zip(halves, curves, strict=False)]
    pairs = [(p, m) for p, m in pairs if math.isfinite(p)]
    predicted = t_interval(p for p, _ in pairs)
    measured = float(np.mean([m for _, m in pairs])) if pairs else math.nan
    precise = predicted.hi - predicted.lo <= 2 * PRECISION * abs(measured)  # an interval that says something
    passes = predicted.n >= 2 and math.isfinite(predicted.lo) and predicted.lo <= measured <= predicted.hi and precise
    l_inf = t_interval(fit_power_law(c, start).l_inf for c in curves)
    return Backtest(group, len(pairs), budget, predicted, measured, predicted.mean - measured, passes, l_inf)


FORECAST_RULE = (
    "Each run's validation curve is fitted with L(S) = L∞ + A·S^(−α) (S = steps trained) and L∞ is the "
    "forecast; to backtest it, each seed is refitted on the first half of its steps only and extrapolated to "
    "its last validation. A group's forecast is shown only when its measured mean there lies inside the 95% "
    f"t-interval of the seeds' predictions and that interval's half-width is within {PRECISION:.0%} of the "
    "value (so never with a single seed, nor from seeds whose predictions scatter). The validations up to twice "
    "`kl.zero_steps` are left out of every fit: β = 0 trains another objective, and the weights' average "
    "carries it for a while."
)


def forecast_rows(backtests: Sequence[Backtest]) -> list[dict]:
    """Flat rows for forecast.csv: group, n, budget, predicted_mean/lo/hi, measured, error, passes,
    l_inf_mean/lo/hi."""
    return [
        {"group": b.group, "n": b.n, "budget": b.budget, "predicted_mean": b.predicted.mean,
         "predicted_lo": b.predicted.lo, "predicted_hi": b.predicted.hi, "measured": b.measured,
         "error": b.error, "passes": b.passes, "l_inf_mean": b.l_inf.mean, "l_inf_lo": b.l_inf.lo,
         "l_inf_hi": b.l_inf.hi}
        for b in backtests
    ]


def _numbers(b: Backtest, unit: str) -> str:
    p = b.predicted
    return (f"predicted {p.mean:.4g} [{p.lo:.4g}, {p.hi:.4g}] {unit} at S = {b.budget:,} "
            f"from S ≤ {b.budget // 2:,}, measured {b.measured:.4g} (n = {b.n})")


def forecast_lines(backtests: Sequence[Backtest], unit: str = "nats/segment") -> list[str]:
    """Markdown bullets: for each passing group 'L_inf mean [lo, hi] <unit> (backtest: predicted ... at S,
    measured ...)'; when no group passes, one bullet that says the forecast is off and gives each group's
    backtest numbers (predicted interval vs measured) so the reader sees why. Empty list when there is nothing
    to say (no backtests). Groups that miss while others pass are named in a last bullet."""
    if not backtests:
        return []
    tested = [b for b in backtests if b.n]
    if not tested:
        return [f"- Forecast off: no group has the {MIN_POINTS} validations a backtest fits on (after the β = 0 "
                "stretch and the weights' average catching up, up to half the last budget): train longer or "
                "validate more often."]  # fmt: skip
    passing = [b for b in tested if b.passes]
    if not passing:
        why = "; ".join(f"{b.group}: {_numbers(b, unit)}" for b in tested)
        return [f"- Forecast off: no group's backtest predicted its measured last validation ({why})."]
    lines = [
        f"- **{b.group}**: L∞ {b.l_inf.mean:.4g} [{b.l_inf.lo:.4g}, {b.l_inf.hi:.4g}] {unit} "
        f"(backtest: {_numbers(b, unit)})"
        for b in passing
    ]
    missed = [b.group for b in tested if not b.passes]
    if missed:
        lines.append(f"- Not shown (backtest missed): {', '.join(missed)}.")
    return lines
