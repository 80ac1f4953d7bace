"""The verdict follows the intervals: winners only where a paired interval excludes 0, honest about n."""

from __future__ import annotations

import csv
import math
import re

import pytest

from musicvae.report import read_verdict, write_report

T_975_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom


def bullets(verdict: str) -> str:
    """The verdict's bullets, without the collapse rule's paragraph that follows them."""
    return verdict.split("\n\nCollapse rule", 1)[0]


def bullet(verdict: str, start: str) -> str:
    """The one verdict line that starts with `start` (nested bullets included)."""
    (line,) = [x.strip() for x in verdict.splitlines() if x.strip().startswith(start)]
    return line


def bracket(line: str) -> tuple[float, float]:
    """The first '[lo, hi]' of a line."""
    lo, hi = re.search(r"\[(-?[\d.e+-]+), (-?[\d.e+-]+)\]", line).groups()
    return float(lo), float(hi)


def write_modes(sweep, values: dict[str, dict[str, list[float]]], **settings) -> None:
    """One run per mode and seed; values[mode][metric] lists the final value of each seed."""
    for mode, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for seed in range(n):
            val = sweep.control() if mode == "none" else sweep.healthy()
            val.update({k: float(v[seed]) for k, v in metrics.items()})  # final values only
            sweep.run(mode, seed, val, **settings)


@pytest.mark.parametrize("winner", ["cross_attention", "in_attention"])
def test_a_clear_zgap_difference_names_the_better_mode(sweep, winner):
    loser = "in_attention" if winner == "cross_attention" else "cross_attention"
    write_modes(sweep, {
        winner: {"val/zgap": [0.030, 0.031, 0.035], "val/distortion": [61.0, 60.0, 62.5]},
        loser: {"val/zgap": [0.010, 0.012, 0.014], "val/distortion": [60.0, 61.0, 62.0]},
        "none": {"val/zgap": [0.0, 0.0, 0.0]},
    })  # fmt: skip

    report = write_report(sweep.path)
    verdict = read_verdict(report)

    line = bullet(verdict, "- **z-gap**, cross_attention vs in_attention:")
    assert f"**{winner}** better" in line and "n=3" in line
    sign = 1 if winner == "cross_attention" else -1
    mean = sign * 0.020  # winner - loser by seed: 0.020, 0.019, 0.021
    half = T_975_2 * 0.001 / math.sqrt(3)  # paired std 0.001
    lo, hi = bracket(line)
    assert lo == pytest.approx(mean - half, rel=2e-3) and hi == pytest.approx(mean + half, rel=2e-3)
    assert lo * hi > 0  # the interval excludes 0
    # the seeds disagree on distortion (+1, -1, +0.5): no winner named
    assert "not distinguishable with 3 seeds" in bullet(verdict, "- **distortion**, cross_attention vs")
    # both modes use z, and both are separated from the none control
    for mode in ("in_attention", "cross_attention"):
        assert bullet(verdict, f"- **{mode}**:").startswith(f"- **{mode}**: uses z")
    none = bullet(verdict, "- **none** (control")
    assert "exactly 0 as it must be" in none
    assert re.search(r"separated from it \(paired z-gap\): .*in_attention.*cross_attention", none)
    assert "not separated" not in none
    # comparisons.csv holds the same paired interval
    with open(report / "comparisons.csv", newline="") as f:
        (row,) = [
            r
            for r in csv.DictReader(f)
            if r["mode"] == "cross_attention" and r["reference_mode"] == "in_attention"
        ]
    assert float(row["val/zgap_diff_mean"]) == pytest.approx(mean, rel=1e-9)
    assert float(row["val/zgap_diff_lo"]) == pytest.approx(mean - half, rel=1e-5)
    assert row["val/zgap_diff_n"] == "3"


def test_seeds_that_disagree_are_not_distinguishable(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.010, 0.020, 0.015]},
        "cross_attention": {"val/zgap": [0.020, 0.010, 0.016]},  # +0.01, -0.01, +0.001
    })  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    line = bullet(verdict, "- **z-gap**, cross_attention vs in_attention:")
    assert "not distinguishable with 3 seeds" in line and "better" not in line
    lo, hi = bracket(line)
    assert lo < 0 < hi
    assert "One seed per setting" not in verdict


def test_one_seed_everywhere_is_said_and_nothing_is_judged(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.02]},
        "cross_attention": {"val/zgap": [0.0001]},
        "none": {"val/zgap": [0.0]},
    })  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    first = verdict.splitlines()[0]
    assert "One seed per setting: no intervals, so nothing below is resolved; rerun with seed=0,1,2" in first
    for mode, zgap in (("in_attention", "0.02"), ("cross_attention", "0.0001")):
        line = bullet(verdict, f"- **{mode}**:")
        assert "n=1, no interval: not judged" in line and f"z-gap {zgap} nats/token" in line
        assert "collapsed" not in line and "uses z" not in line
    assert "n=1, no interval: not judged" in bullet(verdict, "- **cross_attention vs in_attention**:")
    assert "- **z-gap**," not in verdict  # no metric-by-metric lines that could only say "not judged"
    assert "better" not in bullets(verdict)


@pytest.mark.parametrize("free_bits", [0.0, 0.25])
def test_free_bits_take_kl_and_au_out_of_the_judgement(sweep, free_bits):
    # cross_attention: KL under the collapse threshold and 10 AU fewer on every seed, yet a clear z-gap
    write_modes(sweep, {
        "in_attention": {"val/kl": [8.0, 8.5, 9.0], "val/au": [20, 21, 22], "val/zgap": [0.01, 0.012, 0.011]},
        "cross_attention": {"val/kl": [0.01, 0.02, 0.01], "val/au": [10, 11, 12], "val/zgap": [0.03, 0.032, 0.031]},
    }, free_bits=free_bits, latent_dim=32)  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    cross = bullet(verdict, "- **cross_attention**:")
    if free_bits:
        line = bullet(verdict, "- **Free bits on**")
        assert "KL and AU are floored by the free bits" in line and "c·λ = 32·0.25 = 8" in line
        assert "judged by z-gap and MI only" in line
        assert not any(x.strip().startswith(("- **KL**", "- **AU**")) for x in verdict.splitlines())
        assert cross.startswith("- **cross_attention**: uses z")  # no none control here: z-gap alone
    else:
        assert "Free bits" not in verdict
        assert (
            cross.startswith("- **cross_attention**: collapsed") and "KL interval entirely below 0.1" in cross
        )
        assert "**in_attention** better" in bullet(verdict, "- **KL**, cross_attention vs in_attention:")
        assert "**in_attention** better" in bullet(verdict, "- **AU**, cross_attention vs in_attention:")


def test_the_none_control_is_separated_from_a_mode_that_uses_z(sweep):
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.002, 0.0025, 0.003]},  # small, but positive on every seed
        "embedding": {"val/zgap": [0.0001, 0.00012, 0.00011]},  # above 0 yet below the threshold
        "prefix": {"val/zgap": [0.002, -0.001, 0.0005]},  # the seeds disagree
        "none": {"val/zgap": [0.0, 0.0, 0.0]},
    })  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    none = bullet(verdict, "- **none** (control")
    separated, rest = none.split("; not separated", 1)
    assert "in_attention +0.0025" in separated and "embedding +0.00011" in separated
    assert "prefix" in rest and "prefix" not in separated
    assert bullet(verdict, "- **in_attention**:").startswith("- **in_attention**: uses z")
    assert bullet(verdict, "- **embedding**:").startswith("- **embedding**: collapsed")
    assert bullet(verdict, "- **prefix**:").startswith("- **prefix**: not resolved with 3 seeds")


def test_a_beta_sweep_gets_one_verdict_block_per_beta(sweep):
    for beta, gap in ((0.05, 0.0), (0.2, 0.02)):  # at β=0.05 cross_attention = in_attention on every seed
        write_modes(sweep, {
            "in_attention": {"val/zgap": [0.01, 0.02, 0.015]},
            "cross_attention": {"val/zgap": [0.01 + gap, 0.02 + gap * 1.1, 0.015 + gap * 0.9]},
        }, beta=beta)  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    lines = bullets(verdict).splitlines()
    heads = [i for i, x in enumerate(lines) if x.startswith("- **kl.beta=")]
    assert [lines[i] for i in heads] == ["- **kl.beta=0.05**", "- **kl.beta=0.2**"]
    low, high = "\n".join(lines[heads[0] : heads[1]]), "\n".join(lines[heads[1] :])
    assert "not distinguishable with 3 seeds" in bullet(low, "- **z-gap**")
    assert "**cross_attention** better" in bullet(high, "- **z-gap**")
    assert all(x.startswith("  - ") for x in lines if x and not x.startswith("- **kl.beta="))


def test_the_control_line_also_separates_by_mi_and_kl(sweep):
    # z-gap alone cannot separate cross_attention (one seed near 0), but MI and KL clearly do
    write_modes(sweep, {
        "in_attention": {"val/zgap": [0.016, 0.026, 0.027], "val/mi": [1.5, 3.2, 3.0], "val/kl": [15.0, 17.7, 13.9]},
        "cross_attention": {"val/zgap": [0.019, 0.014, 0.003], "val/mi": [1.36, 1.30, 0.91], "val/kl": [5.1, 4.6, 3.3]},
        "none": {"val/zgap": [0.0, 0.0, 0.0], "val/mi": [0.0006, -0.0001, 0.0007], "val/kl": [0.0027, 0.0027, 0.0017]},
    })  # fmt: skip
    verdict = read_verdict(write_report(sweep.path))
    none = bullet(verdict, "- **none** (control")
    assert "not separated (paired z-gap): cross_attention" in none
    mi = bullet(verdict, "- paired MI (nats) against the control:")
    assert re.search(r"separated from it: in_attention \+[\d.]+ \[[\d.]+, [\d.]+\] \(n=3\), cross_attention \+", mi)
    assert "not separated" not in mi
    assert bullet(verdict, "- paired KL (nats/segment) against the control:").startswith(
        "- paired KL (nats/segment) against the control: separated from it: in_attention"
    )
