"""Readings that qualify a number of the report: has a run's curve reached a plateau, and is its MI below
the ceiling of the MI estimator?

    convergence(series)              -> Convergence (plateaued or not, and by how much it still fell)
    convergence_note(results)        -> '' when every run has plateaued, else which still improve and by how much
    mi_ceiling(config)               -> the largest val/mi the estimator can report for that run, nats
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from musicvae.report.runs import select
from musicvae.report.stats import Series

CONVERGENCE_KEY = "val/distortion"  # the curve a run's convergence is read from (nats/segment)
CONVERGENCE_TOL = 0.01  # converged: fell by at most this fraction of its value over the last quarter
LAST_QUARTER = 0.75  # the window: validations after at least this fraction of the steps trained at the last one
TOO_FEW = "too few validations"
CONVERGENCE_RULE = (
    f"Plateau (information per run; no call waits for it): on the run's own {CONVERGENCE_KEY} curve, the "
    f"validations of its last quarter (after at least {LAST_QUARTER:g} × the steps trained at the last one; fewer "
    f"than 2: *{TOO_FEW}*); the run has **plateaued** when the value at the first of them minus the minimum over "
    f"them is at most {CONVERGENCE_TOL:.0%} of the first value. On an anytime curve (constant learning rate, "
    "weights averaged) this means the run no longer improves; under a cosine schedule the last quarter is where "
    "the rate anneals, which lowers the loss whatever the model's limit, so a cosine run rarely plateaus."
)
MI_CEILING_MARGIN = 0.05  # a final MI within this fraction of its ceiling is at the estimator's ceiling
AT_CEILING = "at the estimator's ceiling: MI not comparable"
MI_CEILING_RULE = (
    "MI ceiling: val/mi is estimated over the N validation segments against their own aggregate posterior, "
    "so it cannot exceed log N nats (one z per segment); with one z per bar (`model.latent=bar`, K = "
    "`data.bars`) each bar's term is bounded by log(N·K) and the per-segment sum by K·log(N·K). N is read "
    "from each run's config.yaml (`data.val_segments`); the sample is smaller when the validation split "
    "holds fewer segments, which the run folder does not record, so the ceiling shown is an upper bound. "
    f"A final MI within {MI_CEILING_MARGIN:.0%} of its ceiling is flagged *{AT_CEILING}*: the estimator, "
    "not z, limits it."
)


class Convergence(NamedTuple):
    """The convergence of one run's curve over its last quarter."""

    converged: bool
    step: int | None  # the last validated step; None without any validation
    points: int  # validations in the last quarter
    fall: float  # (first value - min) / |first value| over them, a fraction; NaN with < 2 points


def convergence(series: Series, tol: float = CONVERGENCE_TOL) -> Convergence:
    """Whether a run has converged, from its own validation curve (step -> value, lower is better).

    The rule: take the validations in the last quarter of the run, i.e. after at least 0.75 × the steps
    trained at the last validation (steps trained = the logged step + 1; non-finite values dropped); with
    fewer than 2 of them the run has too few validations and counts as not converged. improvement = the value at the first of them - the minimum over them;
    the run has converged iff improvement <= tol × |value at the first| (tol = CONVERGENCE_TOL = 1%).
    A curve that rises over the last quarter (overfitting) has converged: it no longer improves.
    """
    finite = {s: v for s, v in series.items() if math.isfinite(v)}
    if not finite:
        return Convergence(False, None, 0, math.nan)
    last = max(finite)
    # Lightning logs a validation after n training steps at step n - 1: compare steps trained (s + 1), so
    # that the validation after 1,800 of 2,400 steps opens the last quarter rather than falling just outside.
    window = [finite[s] for s in sorted(finite) if s + 1 >= LAST_QUARTER * (last + 1)]
    if len(window) < 2:
        return Convergence(False, last, len(window), math.nan)
    first = window[0]
    improvement = first - min(window)
    fall = improvement / abs(first) if first != 0 else (0.0 if improvement <= 0 else math.inf)
    return Convergence(improvement <= tol * abs(first), last, len(window), fall)


def _steps(results: Sequence[Convergence]) -> str:
    steps = sorted({r.step for r in results if r.step is not None})
    if not steps:
        return ""
    return f" at step {steps[0]}" if len(steps) == 1 else f" at steps {steps[0]}–{steps[-1]}"


def convergence_note(results: Sequence[Convergence]) -> str:
    """'' when every run has plateaued; else e.g. '2 of 3 runs still improving at step 1500 (val/distortion
    fell 3.1% over the last quarter)', and/or '1 of 3 runs with too few validations ...'."""
    falling = [r for r in results if not r.converged and not math.isnan(r.fall)]
    few = [r for r in results if not r.converged and math.isnan(r.fall)]
    parts = []
    if falling:
        lo, hi = min(r.fall for r in falling), max(r.fall for r in falling)
        by = f"{hi:.1%}" if len(falling) == 1 or f"{lo:.1%}" == f"{hi:.1%}" else f"{lo:.1%}–{hi:.1%}"
        parts.append(
            f"{len(falling)} of {len(results)} runs still improving{_steps(falling)} "
            f"({CONVERGENCE_KEY} fell {by} over the last quarter)"
        )
    if few:
        parts.append(
            f"{len(few)} of {len(results)} runs with {TOO_FEW}{_steps(few)} "
            f"(fewer than 2 of {CONVERGENCE_KEY} in the last quarter)"
        )
    return "; ".join(parts)


def mi_ceiling(config: dict) -> float:
    """The largest val/mi (nats per segment) the estimator can give for a run: log N with one z per segment,
    K·log(N·K) with one z per bar (K = data.bars), N = data.val_segments. NaN when the config lacks N
    (or K for per-bar latents)."""
    n = _number(select(config, "data.val_segments"))
    if select(config, "model.latent", "segment") != "bar":
        return math.log(n) if n >= 1 else math.nan
    k = _number(select(config, "data.bars"))
    return k * math.log(n * k) if n >= 1 and k >= 1 else math.nan


def at_ceiling(mi: float, ceiling: float) -> bool:
    """True when a final MI is within MI_CEILING_MARGIN of its ceiling (or above it)."""
    return math.isfinite(mi) and math.isfinite(ceiling) and mi >= (1 - MI_CEILING_MARGIN) * ceiling


def _number(value: object) -> float:
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
