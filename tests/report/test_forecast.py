"""Power-law forecast: a known asymptote recovered, the backtest passing and failing, too few points,
`start`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicvae.report.forecast import (
    MIN_POINTS,
    backtest,
    fit_power_law,
    forecast_lines,
    forecast_rows,
    predict,
)
from musicvae.report.stats import Series

L_INF, A, ALPHA = 100.0, 400.0, 0.5
S_GRID = np.arange(300, 4801, 300)  # steps trained at each validation: 300, 600, ..., 4800


def law(s: float) -> float:
    return L_INF + A * s**-ALPHA


def curve(noise: np.ndarray | None = None, drop_after: float | None = None, drop: float = 0.0) -> Series:
    """The law on S_GRID, logged at step S - 1; optional noise; a step down of `drop` at S > drop_after."""
    noise = np.zeros(len(S_GRID)) if noise is None else noise
    return {
        int(s) - 1: law(float(s)) + float(e) - (drop if drop_after is not None and s > drop_after else 0.0)
        for s, e in zip(S_GRID, noise, strict=True)
    }


def noisy_seeds(n: int = 3, sd: float = 0.2, **kw: float) -> list[Series]:
    rng = np.random.default_rng(1234)
    return [curve(rng.normal(0.0, sd, len(S_GRID)), **kw) for _ in range(n)]


def test_fit_recovers_a_known_asymptote():
    fit = fit_power_law(curve())
    assert fit.points == len(S_GRID)
    assert fit.l_inf == pytest.approx(L_INF, abs=1.0)
    assert fit.alpha == pytest.approx(ALPHA, abs=0.02)
    assert predict(fit, 10_000) == pytest.approx(law(10_000), abs=0.5)  # A in steps, as predict uses it


def test_backtest_passes_on_noisy_seeds_of_one_law():
    b = backtest("healthy", noisy_seeds())
    assert b.budget == int(S_GRID[-1]) and b.n == 3
    assert b.passes
    assert b.l_inf.lo <= L_INF <= b.l_inf.hi
    assert b.predicted.lo <= law(b.budget) <= b.predicted.hi
    assert b.error == pytest.approx(b.predicted.mean - b.measured)
    lines = forecast_lines([b])
    assert len(lines) == 1 and lines[0].startswith("- **healthy**")
    assert f"{b.l_inf.mean:.4g}" in lines[0] and f"{b.measured:.4g}" in lines[0]
    (row,) = forecast_rows([b])
    assert row["passes"] is True and row["l_inf_mean"] == b.l_inf.mean and row["budget"] == b.budget


def test_backtest_fails_when_the_second_half_breaks_the_law():
    half = S_GRID[-1] / 2
    b = backtest("broken", noisy_seeds(drop_after=half, drop=20.0))
    assert b.n == 3 and not b.passes
    assert b.error == pytest.approx(20.0, abs=3.0)  # the first half's law predicts the curve without the drop
    assert b.measured < b.predicted.lo
    (line,) = forecast_lines([b])
    assert "forecast off" in line.lower() and "broken" in line
    assert f"{b.predicted.mean:.4g}" in line and f"{b.measured:.4g}" in line
    assert f"{b.predicted.lo:.4g}" in line and f"{b.predicted.hi:.4g}" in line


def test_a_missing_group_is_named_when_another_passes():
    good, bad = backtest("good", noisy_seeds()), backtest("bad", noisy_seeds(drop_after=2400, drop=20.0))
    lines = forecast_lines([good, bad])
    assert lines[0].startswith("- **good**") and "bad" in lines[-1] and "bad" not in lines[0]
    assert forecast_lines([]) == []


def test_too_few_points_gives_no_fit_and_no_pass():
    short = {int(s) - 1: law(float(s)) for s in S_GRID[: MIN_POINTS - 1]}
    fit = fit_power_law(short)
    assert fit.points == MIN_POINTS - 1 and all(math.isnan(x) for x in (fit.l_inf, fit.a, fit.alpha))
    assert math.isnan(predict(fit, 1000))
    b = backtest("short", [short, short, short])
    assert not b.passes and b.n == 0 and math.isnan(b.l_inf.mean)
    assert "forecast off" in forecast_lines([b])[0].lower()
    enough = fit_power_law({int(s) - 1: law(float(s)) for s in S_GRID[:MIN_POINTS]})  # the boundary: fits
    assert enough.points == MIN_POINTS and enough.l_inf == pytest.approx(L_INF, abs=1.0)


def test_single_seed_cannot_pass():
    b = backtest("one", noisy_seeds(n=1))
    assert b.n == 1 and not b.passes


def test_start_leaves_out_early_points():
    warm = curve()
    for step in (299, 599):  # S = 300, 600: a warm-up far off the law
        warm[step] = 5.0
    off = fit_power_law(warm)
    assert not off.l_inf == pytest.approx(L_INF, abs=1.0)  # the warm-up spoils a fit that keeps it
    fit = fit_power_law(warm, start=600)
    assert fit.points == len(S_GRID) - 2
    assert fit.l_inf == pytest.approx(L_INF, abs=1.0)
    assert backtest("warm", [warm, warm], start=600).l_inf.mean == pytest.approx(L_INF, abs=1.0)


def test_groups_too_short_to_backtest_turn_the_forecast_off_and_say_why():
    curve = {s - 1: 100 + 400 * s**-0.5 for s in range(300, 4801, 300)}  # 16 validations
    short = backtest("short", [curve, curve, curve], start=2400)  # nothing left at S <= 2400
    assert short.n == 0 and not short.passes
    (line,) = forecast_lines([short])
    assert line.startswith("- Forecast off") and "validations a backtest fits on" in line


def test_seeds_whose_predictions_scatter_do_not_pass():
    """Each seed on its own law (L_inf 60, 100, 140): the predictions' interval holds the measured mean only
    because it is wide; a forecast that imprecise is not shown."""
    curves = [{s - 1: l_inf + 400 * s**-0.5 for s in range(300, 4801, 300)} for l_inf in (60.0, 100.0, 140.0)]
    b = backtest("scattered", curves)
    assert b.n == 3 and b.predicted.lo <= b.measured <= b.predicted.hi  # inside, but only by being wide
    assert b.predicted.hi - b.predicted.lo > 2 * 0.05 * b.measured
    assert not b.passes
