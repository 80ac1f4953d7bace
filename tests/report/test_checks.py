"""The checks behind what the report may compare: convergence read from a run's own curve, and the MI
estimator's ceiling."""

from __future__ import annotations

import math

import pytest

from musicvae.report.checks import (
    CONVERGENCE_TOL,
    at_ceiling,
    convergence,
    convergence_note,
    mi_ceiling,
)


def curve(values: list[float], every: int = 100) -> dict[int, float]:
    """Validations at steps every, 2·every, ... (the last quarter of 10 points: the last 3)."""
    return {every * (i + 1): v for i, v in enumerate(values)}


def test_a_curve_still_falling_over_its_last_quarter_has_not_converged():
    # steps 100..1000: the last quarter is steps >= 750, i.e. 800, 900, 1000 (values 50, 49, 48)
    result = convergence(curve([100, 90, 80, 70, 60, 55, 52, 50, 49, 48]))
    assert not result.converged
    assert (result.step, result.points) == (1000, 3)
    assert result.fall == pytest.approx(2 / 50, rel=1e-12)  # (first - min) / |first|


@pytest.mark.parametrize(
    "tail",
    [
        [50.0, 50.0, 50.0],  # flat
        [50.0, 50.4, 51.0],  # rising: overfitting, no longer improving
        [50.0, 49.6, 49.5],  # fell 1%: at the tolerance
        [50.0, 52.0, 49.6],  # noisy, the min 0.8% under the first
    ],
)
def test_a_flat_or_rising_last_quarter_has_converged(tail):
    # the steep fall before step 750 is outside the window and does not count
    result = convergence(curve([300, 200, 150, 100, 80, 70, 60, *tail]))
    assert result.converged and result.points == 3
    assert result.fall <= CONVERGENCE_TOL


def test_the_tolerance_is_one_percent_of_the_first_value_of_the_window():
    assert convergence(curve([9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 100.0, 99.0, 99.5])).converged
    just_over = convergence(curve([9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 100.0, 98.9, 99.5]))
    assert not just_over.converged and just_over.fall == pytest.approx(0.011, rel=1e-9)
    # a step at exactly 0.75 x the last one is inside the window
    # Lightning logs the validation after 1,800 of 2,400 steps at step 1799: it opens the last quarter
    logged = {299: 173.0, 599: 148.5, 899: 137.7, 1199: 129.5, 1499: 122.6, 1799: 118.7, 2099: 116.5, 2399: 116.0}
    result = convergence(logged)
    assert result.points == 3 and not result.converged and result.fall == pytest.approx(2.7 / 118.7, rel=1e-9)
    assert convergence({100: 10.0, 300: 10.0, 400: 9.0}).points == 2
    assert not convergence({100: 10.0, 300: 10.0, 400: 9.0}).converged


@pytest.mark.parametrize(
    "series",
    [{}, {100: 5.0}, {10: 9.0, 20: 8.0, 30: 7.0}, {100: 5.0, 200: math.nan, 300: 4.0, 400: math.nan}],
)
def test_too_few_validations_in_the_last_quarter_is_not_converged(series):
    result = convergence(series)
    assert not result.converged and result.points < 2 and math.isnan(result.fall)


def test_the_note_says_how_many_runs_still_improve_and_by_how_much():
    still = convergence({1000: 120.0, 1200: 100.0, 1500: 96.9})  # the window: 1200, 1500; fell 3.1%
    done = convergence({1000: 100.0, 1200: 100.0, 1500: 100.0})
    assert convergence_note([done, done]) == ""
    assert convergence_note([still, done, still]) == (
        "2 of 3 runs still improving at step 1500 (val/distortion fell 3.1% over the last quarter)"
    )
    few = convergence({1500: 90.0})
    assert convergence_note([done, few]) == (
        "1 of 2 runs with too few validations at step 1500 (fewer than 2 of val/distortion in the last quarter)"
    )


def test_mi_ceiling_is_log_n_per_segment_and_k_log_nk_per_bar():
    segment = {"data": {"val_segments": 512, "bars": 4}, "model": {"latent": "segment"}}
    assert mi_ceiling(segment) == pytest.approx(math.log(512), rel=1e-12)
    assert mi_ceiling({"data": {"val_segments": 512}}) == pytest.approx(math.log(512))  # latent: segment
    per_bar = {"data": {"val_segments": 512, "bars": 4}, "model": {"latent": "bar"}}
    assert mi_ceiling(per_bar) == pytest.approx(4 * math.log(512 * 4), rel=1e-12)
    assert math.isnan(mi_ceiling({}))
    assert math.isnan(mi_ceiling({"data": {"val_segments": 512}, "model": {"latent": "bar"}}))  # no K


def test_at_ceiling_flags_values_within_five_percent():
    ceiling = math.log(512)  # 6.238
    assert at_ceiling(0.96 * ceiling, ceiling) and at_ceiling(ceiling, ceiling)
    assert not at_ceiling(0.94 * ceiling, ceiling)
    assert not at_ceiling(math.nan, ceiling) and not at_ceiling(6.0, math.nan)
