"""The verdict as records (report.verdict.Verdict): each call follows its paired interval, is read at every
budget (report.budgets) with its stability over the last two, and the tuned comparison picks each decoder's
learning rate on validation only.

The conftest's runs validate at logged steps 10, 20, 30, 40, i.e. after 11, 21, 31 and 41 steps trained; by
the budget rule (the last common validation at or below S/4, S/2, S with S = 41: none ≤ 10.25, 11 ≤ 20.5,
41) every comparison of full runs is read at budgets [11, 41]: the first of a `val` list of four values is
the reading at 11, the last the reading at 41. Expected values are worked out by hand from the inputs.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from musicvae.report import find_runs, group_runs, read_verdicts, verdicts, write_report
from musicvae.report.budgets import at_budget, best_rates, budgets, tuned
from musicvae.report.checks import convergence
from musicvae.report.groups import Group
from musicvae.report.runs import Run
from musicvae.report.stats import Interval
from musicvae.report.verdict import (
    PAYS,
    USES_Z,
    WHICH,
    Verdict,
    chosen_rates,
    sign_call,
    stability,
    uses_z_call,
    with_stability,
)

T_975_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom (3 seeds)
FULL = [11, 41]  # the budgets of comparisons between full conftest runs (see the module docstring)
CROSS_VS_IN = "cross_attention − in_attention"
FIDELITY = ("chroma_sim", "groove_sim")


# ----- building sweeps ----------------------------------------------------------------------------------------


def write_modes(sweep, values: dict[str, dict[str, list[float]]], **settings) -> None:
    """One run per mode and seed; values[mode][metric] lists each seed's value, logged flat at all four
    validations (so the reading at 11 steps equals the one at 41)."""
    for mode, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for seed in range(n):
            val = sweep.control() if mode == "none" else sweep.healthy()
            val.update({k: [float(v[seed])] * 4 for k, v in metrics.items()})
            sweep.run(mode, seed, val, **settings)


def set_lr(run: Path, lr: float) -> Path:
    """Give a written run another optim.lr (run_config fixes it at 1e-3)."""
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.optim.lr = lr
    OmegaConf.save(cfg, run / "config.yaml")
    return run


def stop_early(run: Path, last_step: int) -> Path:
    """Drop every metrics.csv row after logged step `last_step`: a run that stopped there."""
    with open(run / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, [r for r in reader if int(r["step"]) <= last_step]
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return run


def records(sweep) -> list[Verdict]:
    return verdicts(group_runs(find_runs(sweep.path)[0]))


def readings(calls: list[Verdict], question: str, groups: str, metric: str, **match) -> list[Verdict]:
    """The readings of one call (by budget), e.g. readings(calls, WHICH, CROSS_VS_IN, "val/zgap")."""
    found = [
        v for v in calls
        if (v.question, v.groups, v.metric) == (question, groups, metric)
        and all(getattr(v, k) == x for k, x in match.items())
    ]  # fmt: skip
    assert found, f"no {question} record for {groups} on {metric} {match}"
    assert [v.budget for v in found] == sorted({v.budget for v in found})  # one reading per budget, ascending
    return found


def history(found: list[Verdict]) -> list[tuple[int, str, str]]:
    return [(v.budget, v.call, v.stable) for v in found]


def half_width(std: float) -> float:
    return T_975_2 * std / math.sqrt(3)


# ----- stability: the rule and its records ----------------------------------------------------------------------


def verdict(budget: int, call: str) -> Verdict:
    return Verdict(WHICH, "", CROSS_VS_IN, "", "val/zgap", budget, 0.01, 0.005, 0.015, 3, call)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("in_attention", "in_attention", "stable"),
        ("uses z", "uses z", "stable"),
        ("yes", "no", "changed"),
        ("in_attention", "cross_attention", "changed"),
        ("uses z", "collapsed", "changed"),  # both definite, and different
        ("yes", "not resolved", "not resolved"),
        ("not resolved", "yes", "not resolved"),  # resolved only at the last budget: not (yet) stable
        ("n=1: no interval", "n=1: no interval", "not resolved"),
        ("not comparable (MI at its estimator's ceiling)", "cross_attention", "not resolved"),
    ],
)
def test_stability_compares_a_call_with_its_reading_at_the_budget_before(before, after, expected):
    assert stability(verdict(10, before), verdict(20, after)) == expected
    assert stability(None, verdict(20, after)) == ""  # the first reading has nothing to compare with


def test_with_stability_orders_the_readings_by_budget_and_judges_each_against_the_one_before():
    given = [verdict(40, "cross_attention"), verdict(10, "in_attention"), verdict(20, "cross_attention")]
    out = with_stability(given)
    assert history(out) == [(10, "in_attention", ""), (20, "cross_attention", "changed"),
                            (40, "cross_attention", "stable")]  # fmt: skip
    assert [dataclasses.replace(v, stable="") for v in out] == sorted(given, key=lambda v: v.budget)
    assert [v.stable for v in given] == ["", "", ""]  # the inputs are left as they were
    assert with_stability([]) == []
    assert history(with_stability([verdict(40, "yes")])) == [(40, "yes", "final budget only")]  # one budget: no stability


def test_sign_call_and_uses_z_call_follow_the_interval():
    clear = Interval(0.01, 0.001, 3, 0.008, 0.012)
    assert sign_call(Interval(-2.0, 1.0, 3, -3.0, -1.0), "below", "above") == "below"
    assert sign_call(Interval(2.0, 1.0, 3, 1.0, 3.0), "below", "above") == "above"
    assert sign_call(Interval(0.0, 1.0, 3, -1.0, 1.0), "below", "above") == "not resolved"
    assert sign_call(Interval(0.0, 0.0, 3, 0.0, 0.0), "below", "above") == "not resolved"  # exactly 0
    assert sign_call(Interval(2.0, math.nan, 1, math.nan, math.nan), "below", "above") == "n=1: no interval"
    assert uses_z_call(clear, None, clear) == "uses z"
    assert uses_z_call(clear, None, None) == "uses z"  # no none control in the context: z-gap alone
    # z-gap above the threshold, but not separated from the control's: not called
    assert uses_z_call(clear, None, Interval(0.005, 0.01, 3, -0.001, 0.011)) == "not resolved"
    assert uses_z_call(Interval(0.0002, 0.0001, 3, 0.0001, 0.0004), None, clear) == "collapsed"
    assert uses_z_call(clear, Interval(0.05, 0.01, 3, 0.02, 0.08), clear) == "collapsed"  # KL below 0.1
    assert uses_z_call(clear, Interval(5.0, 1.0, 3, 3.0, 7.0), clear) == "uses z"
    assert uses_z_call(Interval(0.001, 0.001, 3, 0.0001, 0.002), None, clear) == "not resolved"  # straddles
    assert uses_z_call(Interval(0.02, math.nan, 1, math.nan, math.nan), None, None) == "n=1: no interval"


# the z-gap per seed at the four validations; in_attention is 0.010 at 11 steps and 0.020 at 41 on every seed
CURVES = {
    # cross_attention 0.010 + 0.001·seed above in_attention at both budgets
    "stable": lambda s: [0.020 + 0.001 * s, 0.02, 0.03, 0.030 + 0.001 * s],
    # below in_attention at 11 steps (by 0.005, 0.004, 0.003), above at 41 (by 0.010, 0.011, 0.012)
    "changed": lambda s: [0.005 + 0.001 * s, 0.015, 0.02, 0.030 + 0.001 * s],
    # above at 11 steps, while at 41 the seeds disagree (+0.01, -0.01, +0.001)
    "not resolved": lambda s: [0.020 + 0.001 * s, 0.02, 0.02, 0.020 + (0.01, -0.01, 0.001)[s]],
}
EXPECTED = {
    "stable": [(11, "cross_attention", ""), (41, "cross_attention", "stable")],
    "changed": [(11, "in_attention", ""), (41, "cross_attention", "changed")],
    "not resolved": [(11, "cross_attention", ""), (41, "not resolved", "not resolved")],
}


@pytest.mark.parametrize("case", list(CURVES))
def test_the_stability_of_a_call_is_judged_on_the_last_two_budgets(sweep, case):
    for seed in range(3):
        sweep.run("in_attention", seed, dict(sweep.healthy(), **{"val/zgap": [0.010, 0.015, 0.020, 0.020]}))
        sweep.run("cross_attention", seed, dict(sweep.healthy(), **{"val/zgap": CURVES[case](seed)}))

    found = readings(records(sweep), WHICH, CROSS_VS_IN, "val/zgap", context="", pairing="")

    assert history(found) == EXPECTED[case]
    last = found[-1]
    assert last.n == 3
    if case == "not resolved":
        assert last.difference == pytest.approx(0.001 / 3, abs=1e-12)
        assert last.lo < 0 < last.hi
    else:  # differences 0.010, 0.011, 0.012 at 41 steps: mean 0.011, std 0.001
        assert last.difference == pytest.approx(0.011, rel=1e-9)
        assert last.lo == pytest.approx(0.011 - half_width(0.001), rel=1e-5)
        assert last.hi == pytest.approx(0.011 + half_width(0.001), rel=1e-5)
    if case == "changed":  # at 11 steps: -0.005, -0.004, -0.003
        assert found[0].difference == pytest.approx(-0.004, rel=1e-9)
        assert found[0].hi == pytest.approx(-0.004 + half_width(0.001), rel=1e-5) and found[0].hi < 0


# ----- budgets --------------------------------------------------------------------------------------------------


def hand_run(seed: int, trained: list[int], nan_at: tuple[int, ...] = ()) -> Run:
    """A Run validated after each of `trained` steps (logged at step - 1); val/distortion = steps trained."""
    series = {s - 1: (math.nan if s in nan_at else float(s)) for s in trained}
    return Run(f"run{seed}", Path(f"run{seed}"), {}, "in_attention", seed, {"val/distortion": series})


def test_budgets_are_the_last_common_validations_at_or_below_a_quarter_a_half_and_all_of_s():
    every_100 = list(range(100, 900, 100))
    assert budgets([hand_run(0, every_100), hand_run(1, every_100)]) == [200, 400, 800]
    # a run validated every 200 steps: the common validations are 200, 400, 600, 800
    assert budgets([hand_run(0, every_100), hand_run(1, list(range(200, 900, 200)))]) == [200, 400, 800]
    # a run that stopped after 600 steps: S = 600, so 150 -> 100, 300 -> 300, 600
    assert budgets([hand_run(0, every_100), hand_run(1, every_100[:6])]) == [100, 300, 600]
    # a NaN validation is no validation: 400 is not common, so S/2 falls back to 300
    assert budgets([hand_run(0, every_100), hand_run(1, every_100, nan_at=(400,))]) == [200, 300, 800]
    # a quarter below the first common validation is left out, and repeats collapse
    assert budgets([hand_run(0, [300, 600, 900])]) == [300, 900]
    assert budgets([hand_run(0, [500])]) == [500]
    assert budgets([hand_run(0, [100, 200]), hand_run(1, [300, 400])]) == []  # nothing in common
    assert budgets([]) == []
    # at_budget reads the validation logged after `budget` steps (at step budget - 1)
    group = Group("in_attention", {}, (), [hand_run(0, every_100), hand_run(1, every_100[:6])])
    assert at_budget(group, "val/distortion", 600) == {0: 600.0, 1: 600.0}
    assert at_budget(group, "val/distortion", 800) == pytest.approx({0: 800.0, 1: math.nan}, nan_ok=True)


def test_a_run_that_stopped_early_limits_the_budgets_of_its_comparisons(sweep):
    for seed in range(3):
        sweep.run("in_attention", seed, sweep.healthy(distortion=60.0 + seed))
        cross = sweep.run("cross_attention", seed, sweep.healthy(distortion=65.0 + 2 * seed))
        if seed == 1:
            stop_early(cross, 30)  # validated after 11, 21 and 31 steps: S = 31 -> budgets 11 (≤ 15.5) and 31
        sweep.run("none", seed, sweep.control(distortion=70.0 + seed))
    runs = find_runs(sweep.path)[0]
    assert budgets([r for r in runs if r.mode != "cross_attention"]) == FULL
    assert budgets(runs) == [11, 31]

    calls = records(sweep)

    def steps(question, groups, metric):
        return [v.budget for v in readings(calls, question, groups, metric)]

    assert steps(USES_Z, "in_attention", "val/zgap") == FULL
    assert steps(PAYS, "in_attention − none", "val/distortion") == FULL
    assert steps(USES_Z, "cross_attention", "val/zgap") == [11, 31]
    assert steps(PAYS, "cross_attention − none", "val/distortion") == [11, 31]
    for metric in ("val/zgap", "val/mi", "val/distortion", "val/kl", "val/au"):
        assert steps(WHICH, CROSS_VS_IN, metric) == [11, 31]
    # cross − in distortion at 31 steps (the flat end of both curves): 5 + seed -> mean 6, std 1
    (at_31,) = [v for v in readings(calls, WHICH, CROSS_VS_IN, "val/distortion") if v.budget == 31]
    assert (at_31.difference, at_31.n, at_31.call) == (pytest.approx(6.0), 3, "in_attention")
    assert at_31.lo == pytest.approx(6.0 - half_width(1.0), rel=1e-5)


# ----- which mode ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("winner", ["cross_attention", "in_attention"])
def test_a_clear_zgap_difference_names_the_better_mode_in_verdicts_csv(sweep, winner):
    loser = "in_attention" if winner == "cross_attention" else "cross_attention"
    write_modes(sweep, {
        winner: {"val/zgap": [0.030, 0.031, 0.035], "val/distortion": [61.0, 60.0, 62.5]},
        loser: {"val/zgap": [0.010, 0.012, 0.014], "val/distortion": [60.0, 61.0, 62.0]},
        "none": {"val/zgap": [0.0, 0.0, 0.0]},
    })  # fmt: skip

    rows = read_verdicts(write_report(sweep.path))

    assert list(rows[0]) == [f.name for f in dataclasses.fields(Verdict)]
    assert len(rows) == len(records(sweep))  # one row per record

    def row(question, groups, metric, budget="41"):
        (found,) = [r for r in rows if (r["question"], r["groups"], r["metric"], r["budget"])
                    == (question, groups, metric, budget)]  # fmt: skip
        return found

    zgap = row(WHICH, CROSS_VS_IN, "val/zgap")
    mean = (1 if winner == "cross_attention" else -1) * 0.020  # winner − loser by seed: 0.020, 0.019, 0.021
    fields = ("call", "stable", "n", "pairing", "context")
    assert [zgap[k] for k in fields] == [winner, "stable", "3", "", ""]
    assert float(zgap["difference"]) == pytest.approx(mean, rel=1e-9)
    assert float(zgap["lo"]) == pytest.approx(mean - half_width(0.001), rel=1e-5)
    assert float(zgap["hi"]) == pytest.approx(mean + half_width(0.001), rel=1e-5)
    assert row(WHICH, CROSS_VS_IN, "val/zgap", "11")["stable"] == ""  # the first reading
    # the seeds disagree on distortion (cross − in: ±1, ∓1, ±0.5): no winner
    distortion = row(WHICH, CROSS_VS_IN, "val/distortion")
    assert (distortion["call"], distortion["stable"]) == ("not resolved", "not resolved")
    assert float(distortion["lo"]) < 0 < float(distortion["hi"])
    # both modes use z, each separated from the none control (paired z-gap ≥ 0.010 on every seed)
    for mode in ("in_attention", "cross_attention"):
        uses_z = row(USES_Z, mode, "val/zgap")
        assert (uses_z["call"], uses_z["stable"]) == ("uses z", "stable")
    assert not [r for r in rows if r["groups"].startswith("none")]  # the control is never the compared side


def test_seeds_that_disagree_are_not_resolved(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.010, 0.020, 0.015]},
        "cross_attention": {"val/zgap": [0.020, 0.010, 0.016]},  # +0.01, -0.01, +0.001
    })  # fmt: skip
    found = readings(records(sweep), WHICH, CROSS_VS_IN, "val/zgap")
    assert history(found) == [(11, "not resolved", ""), (41, "not resolved", "not resolved")]
    assert found[-1].n == 3 and found[-1].lo < 0 < found[-1].hi
    assert found[-1].difference == pytest.approx(0.001 / 3, abs=1e-12)


def test_one_seed_everywhere_resolves_nothing_and_says_why(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.02]},
        "cross_attention": {"val/zgap": [0.0001]},  # below the collapse threshold, but with no interval
        "none": {"val/zgap": [0.0]},
    })  # fmt: skip
    calls = records(sweep)
    assert {v.question for v in calls} == {USES_Z, PAYS, WHICH}
    assert {v.call for v in calls} == {"n=1: no interval"}
    assert {v.n for v in calls} == {1}
    assert all(math.isnan(v.lo) and math.isnan(v.hi) for v in calls)
    assert {v.stable for v in calls if v.budget == 41} == {"not resolved"}
    assert readings(calls, USES_Z, "cross_attention", "val/zgap")[-1].difference == pytest.approx(0.0001)
    assert readings(calls, PAYS, "in_attention − none", "val/distortion")[-1].difference == pytest.approx(
        -10.0
    )


@pytest.mark.parametrize("free_bits", [0.0, 0.25])
def test_free_bits_take_kl_and_au_out_of_the_which_mode_metrics(sweep, free_bits):
    # cross_attention: KL under the collapse threshold and 10 AU fewer on every seed, yet a clear z-gap
    write_modes(sweep, {
        "in_attention": {"val/kl": [8.0, 8.5, 9.0], "val/au": [20, 21, 22], "val/zgap": [0.01, 0.012, 0.011]},
        "cross_attention": {"val/kl": [0.01, 0.02, 0.01], "val/au": [10, 11, 12], "val/zgap": [0.03, 0.032, 0.031]},
    }, free_bits=free_bits)  # fmt: skip
    calls = records(sweep)
    which = {v.metric: v.call for v in calls if v.question == WHICH and v.budget == 41}
    assert which["val/zgap"] == "cross_attention"
    cross_uses_z = readings(calls, USES_Z, "cross_attention", "val/zgap")[-1].call
    assert readings(calls, USES_Z, "in_attention", "val/zgap")[-1].call == "uses z"
    if free_bits:
        assert set(which) == {"val/zgap", "val/mi", "val/distortion"}
        assert cross_uses_z == "uses z"  # KL is floored by the free bits: z-gap alone (no none control here)
    else:
        assert set(which) == {"val/zgap", "val/mi", "val/distortion", "val/kl", "val/au"}
        assert which["val/kl"] == "in_attention" and which["val/au"] == "in_attention"
        assert cross_uses_z == "collapsed"  # its KL interval lies below 0.1 nats/segment


def test_the_none_control_is_separated_only_from_a_mode_that_uses_z(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.002, 0.0025, 0.003]},  # small, but clear of 0.0005 on every seed
        "embedding": {"val/zgap": [0.0001, 0.00012, 0.00011]},  # above 0 yet below the threshold
        "prefix": {"val/zgap": [0.002, -0.001, 0.0005]},  # the seeds disagree
        "none": {"val/zgap": [0.0, 0.0, 0.0]},
    })  # fmt: skip
    calls = records(sweep)
    last = {v.groups: v for v in calls if v.question == USES_Z and v.budget == 41}
    assert set(last) == {"in_attention", "embedding", "prefix"}  # the control itself is not asked
    assert (last["in_attention"].call, last["in_attention"].stable) == ("uses z", "stable")
    assert last["in_attention"].lo == pytest.approx(0.0025 - half_width(0.0005), rel=1e-5)
    assert (last["embedding"].call, last["embedding"].stable) == ("collapsed", "stable")
    assert (last["prefix"].call, last["prefix"].stable) == ("not resolved", "not resolved")


def test_a_beta_sweep_gives_its_calls_per_beta(sweep):
    for beta, gap in ((0.05, 0.0), (0.2, 0.02)):  # at β=0.05 cross_attention = in_attention on every seed
        write_modes(sweep, {
            "in_attention": {"val/zgap": [0.01, 0.02, 0.015]},
            "cross_attention": {"val/zgap": [0.01 + gap, 0.02 + gap * 1.1, 0.015 + gap * 0.9]},
        }, beta=beta)  # fmt: skip
    calls = records(sweep)
    assert {v.context for v in calls} == {"kl.beta=0.05", "kl.beta=0.2"}
    assert {v.groups for v in calls} == {"in_attention", "cross_attention", CROSS_VS_IN}  # never across β
    low = readings(calls, WHICH, CROSS_VS_IN, "val/zgap", context="kl.beta=0.05")
    assert history(low) == [(11, "not resolved", ""), (41, "not resolved", "not resolved")]
    assert (low[-1].difference, low[-1].lo, low[-1].hi) == (0.0, 0.0, 0.0)
    high = readings(calls, WHICH, CROSS_VS_IN, "val/zgap", context="kl.beta=0.2")
    assert history(high) == [(11, "cross_attention", ""), (41, "cross_attention", "stable")]
    assert high[-1].difference == pytest.approx(0.02, rel=1e-9)  # 0.02, 0.022, 0.018


@pytest.mark.parametrize("in_attention_mi", [[6.1, 6.0, 6.2], [5.8, 5.85, 5.9]])
def test_mi_at_the_estimators_ceiling_is_not_ranked(sweep, in_attention_mi):
    # the ceiling: log(data.val_segments = 512) = 6.238; "at" it from 95% of it, 5.926, up
    write_modes(
        sweep, {"in_attention": {"val/mi": in_attention_mi}, "cross_attention": {"val/mi": [2.0, 2.2, 2.1]}}
    )
    found = readings(records(sweep), WHICH, CROSS_VS_IN, "val/mi")
    if in_attention_mi[0] > 6:
        assert history(found) == [(11, "not comparable (MI at its estimator's ceiling)", ""),
                                  (41, "not comparable (MI at its estimator's ceiling)", "not resolved")]  # fmt: skip
        assert found[-1].difference == pytest.approx(-4.0)  # -4.1, -3.8, -4.1: it would otherwise be ranked
        assert found[-1].hi < 0
    else:  # just under the ceiling: ranked
        assert history(found) == [(11, "in_attention", ""), (41, "in_attention", "stable")]


# ----- does z pay ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1, -1])  # 1: z lowers the final distortion; -1: raises it
def test_each_group_with_z_is_paired_against_none_with_the_right_sign(sweep, sign):
    for seed, (gap_in, gap_cross) in enumerate(((4.0, 2.0), (5.0, 3.0), (6.0, 4.0))):
        sweep.run("none", seed, sweep.control(distortion=70.0 + seed),
                  fidelity={"chroma_sim": 0.3, "groove_sim": 0.5})  # fmt: skip
        sweep.run("in_attention", seed, sweep.healthy(distortion=70.0 + seed - sign * gap_in),
                  fidelity={"chroma_sim": 0.45 + 0.05 * seed, "groove_sim": 0.5})  # fmt: skip
        sweep.run("cross_attention", seed, sweep.healthy(distortion=70.0 + seed - sign * gap_cross))
    calls = records(sweep)
    assert {v.groups for v in calls if v.question == PAYS} == {
        "in_attention − none",
        "cross_attention − none",
    }

    # at 41 steps (both flat at d): −sign·(4, 5, 6) and −sign·(2, 3, 4); at 11 (healthy d + 10 against the
    # control's d + 5): 5 − sign·(4, 5, 6) and 5 − sign·(2, 3, 4)
    pays_in = readings(calls, PAYS, "in_attention − none", "val/distortion", pairing="")
    pays_cross = readings(calls, PAYS, "cross_attention − none", "val/distortion", pairing="")
    if sign == 1:  # at 11: 1, 0, -1 and 3, 2, 1 (mean 2 ± 2.48): neither resolved yet
        assert history(pays_in) == [(11, "not resolved", ""), (41, "yes", "not resolved")]
        assert history(pays_cross) == [(11, "not resolved", ""), (41, "yes", "not resolved")]
    else:  # at 11: 9, 10, 11 and 7, 8, 9
        assert history(pays_in) == [(11, "no", ""), (41, "no", "stable")]
        assert history(pays_cross) == [(11, "no", ""), (41, "no", "stable")]
    assert pays_in[-1].difference == pytest.approx(-5.0 * sign)
    assert pays_in[-1].lo == pytest.approx(-5.0 * sign - half_width(1.0), rel=1e-5)
    assert pays_in[-1].hi == pytest.approx(-5.0 * sign + half_width(1.0), rel=1e-5)
    assert pays_cross[-1].difference == pytest.approx(-3.0 * sign)

    # test-split fidelity, final budget only (cross_attention has no fidelity.json: no record)
    fidelity = {v.metric: v for v in calls if v.metric in FIDELITY}
    assert set(fidelity) == set(FIDELITY) and {v.groups for v in fidelity.values()} == {"in_attention − none"}
    chroma, groove = fidelity["chroma_sim"], fidelity["groove_sim"]
    assert (chroma.budget, chroma.stable, chroma.pairing, chroma.n) == (41, "final budget only", "", 3)
    assert chroma.difference == pytest.approx(0.2)  # 0.15, 0.20, 0.25: mean 0.2, std 0.05
    assert chroma.lo == pytest.approx(0.2 - half_width(0.05), rel=1e-5) and chroma.call == "yes"
    assert (groove.difference, groove.call) == (0.0, "not resolved")


def test_a_still_improving_run_is_judged(sweep):
    for seed in range(3):
        none = sweep.control()
        none["val/distortion"] = [100.0 + seed, 90.0 + seed, 82.0 + seed, 75.0 + seed]  # -8.5% over 31 -> 41
        sweep.run("none", seed, none)
        sweep.run("in_attention", seed, sweep.healthy(distortion=60.0 + 2 * seed))  # 70, 62, 60, 60 (+2·seed)
        cross = sweep.healthy(zgap=0.01)
        # still falling fast: -17.6% from 31 to 41 steps
        cross["val/distortion"] = [120.0 + seed, 100.0 + seed, 85.0 + seed, 70.0 + 0.5 * seed]
        sweep.run("cross_attention", seed, cross)
    runs, _ = find_runs(sweep.path)
    plateau = {r.mode: convergence(r.series["val/distortion"]).converged for r in runs}
    assert plateau == {"none": False, "in_attention": True, "cross_attention": False}  # the premise

    calls = records(sweep)

    assert not [v for v in calls if "judged" in v.call]
    # in − none: at 11 70 + 2s − (100 + s) = -30 + s; at 41 60 + 2s − (75 + s) = -15 + s
    assert history(readings(calls, PAYS, "in_attention − none", "val/distortion")) == [
        (11, "yes", ""), (41, "yes", "stable")]  # fmt: skip
    # cross − none: at 11 120 + s − (100 + s) = 20 on every seed; at 41 70 + s/2 − (75 + s) = -5 − s/2
    pays_cross = readings(calls, PAYS, "cross_attention − none", "val/distortion")
    assert history(pays_cross) == [(11, "no", ""), (41, "yes", "changed")]
    assert pays_cross[-1].difference == pytest.approx(-5.5)
    # cross − in: at 11 50 − s; at 41 10 − 1.5s (10, 8.5, 7)
    which = readings(calls, WHICH, CROSS_VS_IN, "val/distortion")
    assert history(which) == [(11, "in_attention", ""), (41, "in_attention", "stable")]
    assert which[-1].difference == pytest.approx(8.5)
    assert which[-1].lo == pytest.approx(8.5 - half_width(1.5), rel=1e-5)
    assert readings(calls, USES_Z, "cross_attention", "val/zgap")[-1].call == "uses z"


# ----- learning rates --------------------------------------------------------------------------------------------

# per mode and rate: the val/distortion of seed s, and the test-split chroma_sim of seed s. In every mode the
# rate with the lower validation distortion has the WORSE chroma similarity: a pick on test would differ.
LR_GRID = {
    ("in_attention", 0.001): (lambda s: 60.0 + s, lambda s: 0.95),
    ("in_attention", 0.002): (lambda s: 55.0 + s, lambda s: 0.40 + 0.01 * s),  # chosen
    ("cross_attention", 0.001): (lambda s: 50.0 + 2 * s, lambda s: 0.30 + 0.01 * s),  # chosen
    ("cross_attention", 0.002): (lambda s: 58.0 + s, lambda s: 0.95),
    ("none", 0.001): (lambda s: 70.0 + 0.5 * s, lambda s: 0.5),  # chosen
    ("none", 0.002): (lambda s: 75.0 + s, lambda s: 0.9),
}


def test_the_tuned_comparison_picks_each_rate_on_validation_only(sweep):
    for (mode, lr), (distortion, chroma) in LR_GRID.items():
        for seed in range(3):
            make = sweep.control if mode == "none" else sweep.healthy
            fidelity = {"chroma_sim": chroma(seed), "groove_sim": 0.5}
            set_lr(sweep.run(mode, seed, make(distortion=distortion(seed)), fidelity=fidelity), lr)
    groups = group_runs(find_runs(sweep.path)[0])
    assert tuned(groups)
    best = {family[0]: g.label for family, g in best_rates(groups).items()}
    assert best == {"in_attention": "in_attention optim.lr=0.002", "cross_attention": "cross_attention optim.lr=0.001",
                    "none": "none optim.lr=0.001"}  # fmt: skip
    assert chosen_rates(groups) == ["all runs: in_attention 0.002, cross_attention 0.001, none 0.001"]

    calls = verdicts(groups)

    assert {v.pairing for v in calls} == {"", "equal lr", "tuned"}
    assert {v.pairing for v in calls if v.question == USES_Z} == {""}
    assert {v.context for v in calls if v.pairing == "equal lr"} == {"optim.lr=0.001", "optim.lr=0.002"}
    in_, cross, none = "in_attention optim.lr=0.002", "cross_attention optim.lr=0.001", "none optim.lr=0.001"
    tuned_calls = [v for v in calls if v.pairing == "tuned"]
    assert {v.context for v in tuned_calls} == {""}
    assert {v.groups for v in tuned_calls} == {f"{in_} − {none}", f"{cross} − {none}", f"{cross} − {in_}"}
    # fidelity is compared at the chosen rates only, never at equal rate
    fidelity = [v for v in calls if v.metric in FIDELITY]
    assert len(fidelity) == 4 and {v.pairing for v in fidelity} == {"tuned"}
    chroma = {v.groups: v for v in fidelity if v.metric == "chroma_sim"}
    # in@0.002 − none@0.001: 0.40, 0.41, 0.42 − 0.5 (a pick on test, in@0.001 − none@0.002, gives +0.05)
    assert chroma[f"{in_} − {none}"].difference == pytest.approx(-0.09)
    assert chroma[f"{in_} − {none}"].call == "no"
    assert chroma[f"{cross} − {none}"].difference == pytest.approx(-0.19)  # 0.30, 0.31, 0.32 − 0.5
    # distortion at the chosen rates: in − none -15 + s/2 -> yes; cross − in -5 + s -> cross_attention
    pays = readings(calls, PAYS, f"{in_} − {none}", "val/distortion", pairing="tuned")
    assert history(pays) == [(11, "yes", ""), (41, "yes", "stable")]
    assert pays[-1].difference == pytest.approx(-14.5)
    which = readings(calls, WHICH, f"{cross} − {in_}", "val/distortion", pairing="tuned")
    assert history(which) == [(11, "cross_attention", ""), (41, "cross_attention", "stable")]
    assert which[-1].difference == pytest.approx(-4.0)
    # at equal rate 0.002 the order is the other way round: 58 + s − (55 + s) = 3 on every seed
    equal = readings(
        calls, WHICH, CROSS_VS_IN, "val/distortion", context="optim.lr=0.002", pairing="equal lr"
    )
    assert (equal[-1].difference, equal[-1].call) == (3.0, "in_attention")


@pytest.mark.parametrize("rates", ["one", "one per beta"])
def test_without_an_lr_grid_there_is_no_tuned_comparison(sweep, rates):
    """'one per beta': optim.lr varies across the sweep, but no decoder has more than one rate to pick from."""
    betas = (0.2,) if rates == "one" else (0.05, 0.2)
    for beta in betas:
        for seed in range(3):
            for mode in ("none", "in_attention"):
                make = sweep.control if mode == "none" else sweep.healthy
                fidelity = {
                    "chroma_sim": 0.5 + (0.1 * (seed + 1) if mode != "none" else 0.0),
                    "groove_sim": 0.5,
                }
                run = sweep.run(mode, seed, make(distortion=60.0 + seed), beta=beta, fidelity=fidelity)
                set_lr(run, 0.002 if beta == 0.05 else 0.001)
    groups = group_runs(find_runs(sweep.path)[0])
    assert not tuned(groups) and chosen_rates(groups) == []

    calls = verdicts(groups)

    assert {v.pairing for v in calls} == {""}
    contexts = {""} if rates == "one" else {"kl.beta=0.05 optim.lr=0.002", "kl.beta=0.2 optim.lr=0.001"}
    assert {v.context for v in calls} == contexts
    fidelity = [v for v in calls if v.metric in FIDELITY]
    assert len(fidelity) == 2 * len(betas)  # chroma and groove, once per context
    chroma = [v for v in fidelity if v.metric == "chroma_sim"]
    assert all(v.difference == pytest.approx(0.2) and v.groups == "in_attention − none" for v in chroma)


def test_an_lr_grid_at_one_beta_tunes_that_beta_only(sweep):
    """The study's shape: two rates at β 0.05, one at β 0.2. β 0.2 keeps its plain comparisons (pairing '',
    fidelity there), β 0.05 gets equal-lr and tuned rows, and only β 0.05 names chosen rates."""
    for seed in range(3):
        for mode in ("none", "in_attention"):
            make = sweep.control if mode == "none" else sweep.healthy
            fidelity = {"chroma_sim": 0.5 + (0.1 if mode != "none" else 0.0), "groove_sim": 0.5}
            for beta, lr in ((0.05, 0.001), (0.05, 0.002), (0.2, 0.001)):
                distortion = 60.0 + seed + (5.0 if lr == 0.002 and mode == "none" else 0.0)  # none's best: 1e-3
                run = sweep.run(mode, seed, make(distortion=distortion), beta=beta, fidelity=fidelity)
                set_lr(run, lr)
    groups = group_runs(find_runs(sweep.path)[0])
    calls = verdicts(groups)

    beta_02 = [v for v in calls if v.context.startswith("kl.beta=0.2")]
    assert beta_02 and {v.pairing for v in beta_02} == {""}
    assert any(v.metric == "chroma_sim" for v in beta_02)  # no grid there: its fidelity is reported as it is
    tuned_rows = [v for v in calls if v.pairing == "tuned"]
    assert tuned_rows and {v.context for v in tuned_rows} == {"kl.beta=0.05"}
    assert {v.groups for v in tuned_rows if v.question == PAYS} == {"in_attention optim.lr=0.001 − none optim.lr=0.001"}
    assert not [v for v in calls if v.pairing == "equal lr" and v.metric == "chroma_sim"]
    assert chosen_rates(groups) == ["kl.beta=0.05: in_attention 0.001, none 0.001"]
