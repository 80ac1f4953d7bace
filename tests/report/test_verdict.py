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
    """One run per mode and seed; values[mode][metric] lists the final value of each seed, logged at the
    last two validations (a flat end: the run has converged)."""
    for mode, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for seed in range(n):
            val = sweep.control() if mode == "none" else sweep.healthy()
            val.update({k: [float(v[seed])] * 2 for k, v in metrics.items()})
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
    top = ("- **kl.beta=", "- **Converged**")  # the per-β heads, and the one line about the whole sweep
    assert all(x.startswith("  - ") for x in lines if x and not x.startswith(top))


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


# ----- convergence, z against none, the MI ceiling ------------------------------------------------------------


def falling(final: float) -> list[float]:
    """A val/distortion curve still falling over its last quarter (steps 30 -> 40: by 3.0% of its value)."""
    return [final * 1.2, final * 1.1, final / 0.97, final]


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("still_improving", [0, 2])
def test_distortion_and_rate_are_ranked_only_between_converged_groups(sweep, still_improving):
    # in_attention: distortion 5-6 nats/segment lower and KL 2 higher than cross_attention on every seed
    for seed in range(3):
        sweep.run("in_attention", seed, sweep.healthy(distortion=60.0 + seed, kl=10.0 + seed))
        val = sweep.healthy(distortion=65.0 + 1.5 * seed, kl=8.0 + seed, zgap=0.01)
        if seed < still_improving:
            val["val/distortion"] = falling(65.0 + 1.5 * seed)
        sweep.run("cross_attention", seed, val)

    report = write_report(sweep.path)
    verdict = read_verdict(report)

    distortion = bullet(verdict, "- **distortion**, cross_attention vs in_attention:")
    kl = bullet(verdict, "- **KL**, cross_attention vs in_attention:")
    rows = {r["group"]: r for r in read_rows(report / "summary.csv")}
    assert rows["in_attention"]["converged_n"] == "3" and rows["in_attention"]["convergence"] == ""
    md = (report / "summary.md").read_text()
    assert "| in_attention | 3 | converged 3/3 |" in md
    assert md.count("Convergence rule, per run") == 1
    if still_improving:
        note = "2 of 3 runs still improving at step 40 (val/distortion fell 3.0% over the last quarter)"
        for line in (distortion, kl):
            assert f"`cross_attention`: not ranked, {note}" in line and "better" not in line
            assert "`in_attention`" not in line  # it converged
        assert (rows["cross_attention"]["converged_n"], rows["cross_attention"]["convergence"]) == ("1", note)
        assert "| cross_attention | 3 | converged 1/3 |" in md
    else:
        assert "**in_attention** better (lower distortion)" in distortion and "n=3" in distortion
        assert "**in_attention** better (more KL kept)" in kl
        assert "not ranked" not in bullets(verdict)
        assert rows["cross_attention"]["converged_n"] == "3"
    # z-gap does not depend on convergence: ranked either way
    assert "**in_attention** better" in bullet(verdict, "- **z-gap**, cross_attention vs in_attention:")


@pytest.mark.parametrize("sign", [1, -1])  # 1: z lowers distortion by 4, 5, 6 nats/segment; -1: raises it
def test_every_group_with_z_is_paired_against_none_with_the_right_sign(sweep, sign):
    for seed, gap in enumerate((4.0, 5.0, 6.0)):
        sweep.run("none", seed, sweep.control(distortion=70.0 + seed),
                  fidelity={"chroma_sim": 0.3, "groove_sim": 0.5})  # fmt: skip
        sweep.run("in_attention", seed, sweep.healthy(distortion=70.0 + seed - sign * gap),
                  fidelity={"chroma_sim": 0.3 + 0.1 * (seed + 1), "groove_sim": 0.5})  # fmt: skip

    report = write_report(sweep.path)

    comps = read_rows(report / "comparisons.csv")
    (row,) = [c for c in comps if c["group"] == "in_attention" and c["baseline"] == "none"]
    assert (row["reference"], row["difference"]) == ("none", "in_attention - none")
    half = T_975_2 * 1.0 / math.sqrt(3)  # paired differences -sign·(4, 5, 6): std 1
    assert float(row["val/distortion_diff_mean"]) == pytest.approx(-5.0 * sign, rel=1e-12)
    assert float(row["val/distortion_diff_lo"]) == pytest.approx(-5.0 * sign - half, rel=1e-6)
    assert float(row["val/distortion_diff_hi"]) == pytest.approx(-5.0 * sign + half, rel=1e-6)
    assert row["val/distortion_diff_n"] == "3"
    assert float(row["val/recon_acc_diff_mean"]) == pytest.approx(0.65 - 0.42, rel=1e-9)
    assert float(row["chroma_sim_diff_mean"]) == pytest.approx(0.2, rel=1e-9)  # +0.1, +0.2, +0.3
    assert float(row["groove_sim_diff_mean"]) == 0.0
    # the mirrored row, none against in_attention, carries the opposite sign
    (mirror,) = [c for c in comps if c["group"] == "none" and c["baseline"] == "in_attention"]
    assert mirror["difference"] == "none - in_attention"
    assert float(mirror["val/distortion_diff_mean"]) == pytest.approx(5.0 * sign, rel=1e-12)

    verdict = read_verdict(report)
    line = bullet(verdict, "- **does z pay for itself**, in_attention vs none:")
    lo, hi = bracket(line)  # the first interval of the line: distortion
    assert lo == pytest.approx(-5.0 * sign - half, rel=2e-3)
    assert hi == pytest.approx(-5.0 * sign + half, rel=2e-3)
    assert "chroma sim in_attention − none +0.2 [" in line and "groove sim" in line
    if sign == 1:
        assert "**yes**" in line and "excludes 0 in z's favour" in line
    else:
        assert "**no**" in line and "higher distortion with z" in line
    md = (report / "summary.md").read_text()
    assert "### Does z pay for itself? (against none)" in md
    assert f"| in_attention | none | {'yes' if sign == 1 else 'no'} (" in md


def test_whether_z_pays_is_not_judged_before_the_runs_converge(sweep):
    for seed in range(3):
        control = sweep.control(distortion=70.0)
        if seed == 0:
            control["val/distortion"] = falling(70.0)  # the control is still improving
        sweep.run("none", seed, control)
        sweep.run("in_attention", seed, sweep.healthy(distortion=60.0 + seed))
    verdict = read_verdict(write_report(sweep.path))
    line = bullet(verdict, "- **does z pay for itself**, in_attention vs none:")
    assert line.startswith(
        "- **does z pay for itself**, in_attention vs none: not judged: not converged — `none`: 1 of 3 runs "
        "still improving at step 40"
    )
    assert "**yes**" not in line and "distortion in_attention − none -9 [" in line  # -10, -9, -8


def test_mi_at_the_estimators_ceiling_is_flagged_and_not_ranked(sweep):
    ceiling = math.log(512)  # data.val_segments = 512 in the fixture's config, one z per segment
    write_modes(sweep, {
        "in_attention": {"val/mi": [6.1, 6.0, 6.2]},  # within 5% of 6.24: the estimator's limit
        "cross_attention": {"val/mi": [2.0, 2.2, 2.1]},
    })  # fmt: skip
    report = write_report(sweep.path)
    rows = {r["group"]: r for r in read_rows(report / "summary.csv")}
    assert float(rows["in_attention"]["val/mi_ceiling"]) == pytest.approx(ceiling, rel=1e-12)
    assert rows["in_attention"]["val/mi_at_ceiling_n"] == "3"
    assert rows["cross_attention"]["val/mi_at_ceiling_n"] == "0"
    md = (report / "summary.md").read_text()
    (flagged,) = [x for x in md.splitlines() if x.startswith("| in_attention | 3 | converged")]
    (clear,) = [x for x in md.splitlines() if x.startswith("| cross_attention | 3 | converged")]
    assert "6.24 **at the estimator's ceiling: MI not comparable** (3/3 runs)" in flagged
    assert "| 6.24 |" in clear and "ceiling" not in clear
    verdict = read_verdict(report)
    mi = bullet(verdict, "- **MI**, cross_attention vs in_attention:")
    assert "`in_attention`: not ranked, 3 of 3 runs at the estimator's ceiling: MI not comparable" in mi
    assert "better" not in mi
    collapse = bullet(verdict, "- **in_attention**:")
    assert "MI 6.1 [" in collapse and "MI not comparable" in collapse


@pytest.mark.parametrize("sign", [1, -1])
def test_one_converged_seed_says_whether_z_paid_in_that_run(sweep, sign):
    """The demo trains one seed per mode: its verdict says what that run shows, and that it has no interval."""
    sweep.run("none", 0, sweep.control(distortion=70.0))
    sweep.run("in_attention", 0, sweep.healthy(distortion=70.0 - sign * 5.0))
    verdict = read_verdict(write_report(sweep.path))
    line = bullet(verdict, "- **does z pay for itself**, in_attention vs none:")
    expected = "yes in this run (n=1, no interval)" if sign == 1 else "no in this run (n=1, no interval)"
    assert expected in line and f"distortion in_attention − none {-5 * sign:+d}" in line
    assert bullet(verdict, "- **Converged**:") == (
        "- **Converged**: all 2 runs (val/distortion fell by at most 1% over the last quarter)"
    )


def test_the_verdict_says_how_many_runs_converged(sweep):
    for seed in range(3):
        control = sweep.control(distortion=70.0)
        if seed == 0:
            control["val/distortion"] = falling(70.0)
        sweep.run("none", seed, control)
        sweep.run("in_attention", seed, sweep.healthy(distortion=60.0 + seed))
    line = bullet(read_verdict(write_report(sweep.path)), "- **Converged**:")
    assert line.startswith("- **Converged**: 5 of 6 runs; distortion and rate are not ranked where runs still improve")
    assert "`none`: 1 of 3 runs still improving at step 40" in line
