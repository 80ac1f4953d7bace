"""The verdict: markdown bullets derived from the summary rows and the paired comparisons.

Per setting context (the group settings outside model.conditioning.*, e.g. `kl.beta=0.05`):
  - each real mode gets a collapse call from the 95% interval of its final val/zgap over seeds
    (and of val/kl when free bits are off): *collapsed* when the interval lies entirely below the
    threshold, *uses z* when it lies entirely above and the paired z-gap difference against the `none`
    control excludes 0, else *not resolved with n seeds*; with one seed there is no interval to judge.
  - the `none` control: its z-gap (0 by construction) and which modes are separated from it.
  - does z pay for itself: each real mode's paired distortion difference against `none` (and its chroma and
    groove similarity differences), judged only where every run of both groups has converged.
  - each mode against in_attention, metric by metric: a winner only where the paired interval excludes 0.
With free bits on, KL and AU are floored by the free bits, so they neither decide collapse nor name a winner.
Distortion and rate (KL) are ranked only between groups whose runs have all converged (`checks.convergence`),
and MI only where neither group's final MI is at its estimator's ceiling (`checks.mi_ceiling`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from musicvae.report.checks import AT_CEILING, CONVERGENCE_TOL, MI_CEILING_MARGIN
from musicvae.report.stats import Interval, excludes_zero
from musicvae.report.summary import COMPARED_FIDELITY, STAT_FIELDS, UNITS

# Where "collapsed" starts is a convention, not a law: these are deliberately low, so that a mode that
# keeps a little information in z, and uses it, is not called collapsed (measured here: short CPU runs
# that picked z up ended with 0.3-3 nats/segment and z-gaps of 0.001-0.02 nats/token).
KL_COLLAPSE_NATS = 0.1  # final val/kl below this (nats/segment): z carries almost nothing
ZGAP_COLLAPSE_NATS = 0.0005  # final val/zgap below this (nats/token): the decoder ignores z
COLLAPSE_RULE = (
    f"Collapse rule, per group, on the 95% Student-t interval of the final value over seeds: **collapsed** "
    f"when the val/zgap interval lies entirely below {ZGAP_COLLAPSE_NATS} nats/token (the decoder does as "
    f"well with another segment's z) or, with free bits off, the val/kl interval lies entirely below "
    f"{KL_COLLAPSE_NATS} nats/segment (z carries almost nothing); **uses z** when the val/zgap interval lies "
    "entirely above the threshold and the paired z-gap difference against the `none` control (same "
    "settings, seed by seed) excludes 0; otherwise **not resolved** with the seeds at hand. Differences "
    "between modes are paired by seed; a mode is named better only where that interval excludes 0."
)
NAMES = {"val/zgap": "z-gap", "val/mi": "MI", "val/distortion": "distortion", "val/kl": "KL", "val/au": "AU",
         "val/recon": "recon", "val/recon_acc": "recon acc", "chroma_sim": "chroma sim",
         "groove_sim": "groove sim"}  # fmt: skip
BETTER_MEANS = {"val/zgap": "its decoder uses z more", "val/mi": "z carries more information about x",
                "val/distortion": "lower distortion", "val/kl": "more KL kept", "val/au": "more active units",
                "val/recon": "lower reconstruction NLL"}  # fmt: skip
SINGLE_SEED = "One seed per setting: no intervals, so nothing below is resolved; rerun with seed=0,1,2"
# Distortion and rate (= KL) are ranked only between converged groups: no ranking of a moving target.
RANKED_IF_CONVERGED = ("val/distortion", "val/kl")


def _num(x: float) -> str:
    """A number for humans: 3 significant digits, no exponent for large values, '–' for NaN."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _signed(x: float) -> str:
    return _num(x) if not math.isfinite(x) or x < 0 else f"+{_num(x)}"


def interval(row: dict, name: str) -> Interval:
    """The Interval stored in a row's `<name>_{mean,std,n,lo,hi}` cells (missing -> NaN, n 0)."""
    values = [row.get(f"{name}_{f}", math.nan) for f in STAT_FIELDS]
    values[2] = int(values[2]) if isinstance(values[2], int | float) and math.isfinite(values[2]) else 0
    return Interval(*values)


def fmt_interval(iv: Interval, signed: bool = False) -> str:
    """'mean [lo, hi]'; just the mean without an interval (n = 1)."""
    num = _signed if signed else _num
    if iv.n < 2 or not math.isfinite(iv.lo):
        return num(iv.mean)
    return f"{num(iv.mean)} [{_num(iv.lo)}, {_num(iv.hi)}]"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _short(label: str, context: str) -> str:
    """A group label without its context's key=value parts (the context heads the block)."""
    shared = set(context.split())
    return " ".join(part for part in label.split() if part not in shared)


def unconverged(named: Sequence[tuple[str, dict | None]], verb: str = "not ranked, ") -> str:
    """Why the named groups are not ranked: '`<name>`: not ranked, <its convergence note>' for each group
    (name, summary row) whose runs have not all converged; '' when they all have (or a row is unknown)."""
    return "; ".join(
        f"`{name}`: {verb}{row['convergence']}" for name, row in named if row and row.get("convergence")
    )


def at_mi_ceiling(named: Sequence[tuple[str, dict | None]]) -> str:
    """'`<name>`: not ranked, k of n runs <AT_CEILING> (final MI within 5% of <ceiling> nats)' for each
    named group with a run at its MI ceiling; '' when none is."""
    return "; ".join(
        f"`{name}`: not ranked, {row['val/mi_at_ceiling_n']} of {row['n_seeds']} runs {AT_CEILING} (final MI "
        f"within {MI_CEILING_MARGIN:.0%} of {_num(row['val/mi_ceiling'])} nats)"
        for name, row in named
        if row and row.get("val/mi_at_ceiling_n", 0) > 0
    )


def _evidence(row: dict, free_bits: bool) -> str:
    """The numbers a collapse call rests on: z-gap, MI (flagged at its ceiling), and KL unless free bits
    floor it."""
    keys = ("val/zgap", "val/mi") + (() if free_bits else ("val/kl",))
    parts = []
    for key in keys:
        iv = interval(row, f"{key}_final")
        if iv.n:
            flag = f" ({AT_CEILING})" if key == "val/mi" and row.get("val/mi_at_ceiling_n", 0) > 0 else ""
            parts.append(f"{NAMES[key]} {fmt_interval(iv)} {UNITS[key]}{flag}")
    return "final " + ", ".join(parts) + f" (n={interval(row, 'val/zgap_final').n or row['n_seeds']})"


def collapse_call(row: dict, vs_none: dict | None) -> tuple[str, str]:
    """(call, why) of one group: call is 'collapsed', 'uses z', 'not resolved with n seeds' or 'not judged'."""
    free_bits = row.get("kl.free_bits", 0) > 0
    z, kl = interval(row, "val/zgap_final"), interval(row, "val/kl_final")
    kl = kl if not free_bits else Interval(math.nan, math.nan, 0, math.nan, math.nan)
    if z.n == 0 and kl.n == 0:
        return "not judged", "val/zgap not logged" + ("" if free_bits else " nor val/kl")
    if max(z.n, kl.n) < 2:
        return "n=1, no interval: not judged", ""
    if z.n >= 2 and z.hi < ZGAP_COLLAPSE_NATS:
        return "collapsed", f"z-gap interval entirely below {ZGAP_COLLAPSE_NATS} nats/token"
    if kl.n >= 2 and kl.hi < KL_COLLAPSE_NATS:
        return "collapsed", f"KL interval entirely below {KL_COLLAPSE_NATS} nats/segment"
    if z.n < 2:  # KL alone can call collapse, never use of z
        return f"not resolved with {_seeds(kl.n)}", "no z-gap interval, and KL is not below the threshold"
    if z.lo <= ZGAP_COLLAPSE_NATS:
        return (
            f"not resolved with {_seeds(z.n)}",
            f"z-gap interval not clear of {ZGAP_COLLAPSE_NATS} nats/token",
        )
    if vs_none is None:
        return "uses z", f"z-gap interval entirely above {ZGAP_COLLAPSE_NATS} nats/token (no none control)"
    diff = interval(vs_none, "val/zgap_diff")
    if diff.n >= 2 and diff.lo > 0:
        return "uses z", (
            f"z-gap interval entirely above {ZGAP_COLLAPSE_NATS} nats/token and above none by "
            f"{fmt_interval(diff, signed=True)} (paired, n={diff.n})"
        )
    return f"not resolved with {_seeds(z.n)}", (
        f"z-gap above {ZGAP_COLLAPSE_NATS} nats/token but not separated from none "
        f"({fmt_interval(diff, signed=True)}, paired, n={diff.n})"
    )


def _separation(comps: Sequence[dict], key: str, context: str) -> dict[str, list[str]]:
    """{'separated from it' | 'not separated' | 'n=1, not judged': ['<mode> +d [lo, hi] (n=k)', ...]}
    for the paired difference of `key` between each real mode and the control."""
    verdicts: dict[str, list[str]] = {"separated from it": [], "not separated": [], "n=1, not judged": []}
    for comp in comps:
        diff = interval(comp, f"{key}_diff")
        if diff.n < 2:
            which = "n=1, not judged"
        else:
            which = "separated from it" if excludes_zero(diff) else "not separated"
        verdicts[which].append(f"{_short(comp['group'], context)} {fmt_interval(diff, signed=True)} (n={diff.n})")
    return verdicts


def _none_lines(row: dict, vs_none: Sequence[dict], context: str, free_bits: bool) -> list[str]:
    """The control: its z-gap, and which real modes are separated from it, seed by seed, in z-gap (does the
    decoder use z?) and, as sub-bullets, in MI and KL (does z carry information about x at all?)."""
    z = interval(row, "val/zgap_final")
    if not z.n:
        check = ""
    elif z.mean == 0 and (z.n < 2 or z.hi == 0):
        check = ", exactly 0 as it must be"
    else:
        check = ", should be exactly 0: check the z-gap measurement"
    line = (
        f"- **{_short(row['group'], context)}** (control, decoder without z): "
        f"final z-gap {fmt_interval(z)} nats/token (n={z.n}{check})"
    )
    for which, items in _separation(vs_none, "val/zgap", context).items():
        if items:
            line += f"; {which} (paired z-gap): " + ", ".join(items)
    lines = [line]
    if all(interval(c, "val/zgap_diff").n < 2 for c in vs_none):  # one seed: nothing more to separate
        return lines
    for key in ("val/mi",) + (() if free_bits else ("val/kl",)):
        parts = [f"{which}: " + ", ".join(items) for which, items in _separation(vs_none, key, context).items() if items]
        if parts:
            lines.append(f"  - paired {NAMES[key]} ({UNITS[key]}) against the control: " + "; ".join(parts))
    return lines


def _difference(comp: dict, key: str, a: str, b: str) -> str:
    """'<name> a − b +d [lo, hi] <unit> (n=k)' of one paired difference."""
    diff = interval(comp, f"{key}_diff")
    numbers = f"{NAMES[key]} {a} − {b} {fmt_interval(diff, signed=True)} {UNITS.get(key, '')}".rstrip()
    return f"{numbers} (n={diff.n})"


def pays_call(comp: dict, rows: dict[str, dict], context: str = "") -> tuple[str, str]:
    """(call, why): does z pay for itself, from the paired val/distortion difference of a group against its
    `none` counterpart (rows: summary rows by group label). call: 'yes' (the interval lies below 0: lower
    distortion with z), 'no' (above 0), 'not resolved with n seeds', with one seed 'yes/no in this run
    (n=1, no interval)', 'not judged: not converged' (a run of either group still improving), or 'not judged'."""
    a, b = _short(comp["group"], context), _short(comp["reference"], context)
    diff = interval(comp, "val/distortion_diff")
    if diff.n == 0:
        return "not judged", "val/distortion not logged"
    moving = unconverged([(a, rows.get(comp["group"])), (b, rows.get(comp["reference"]))], verb="")
    if moving:
        return "not judged: not converged", moving
    if diff.n < 2:  # one seed (the demo): say what this run shows, and that nothing is resolved
        if diff.mean < 0:
            return "yes in this run (n=1, no interval)", "lower distortion with z than without, one seed"
        return "no in this run (n=1, no interval)", "no lower distortion with z, one seed"
    if diff.hi < 0:
        return "yes", "the interval excludes 0 in z's favour (lower distortion with z)"
    if diff.lo > 0:
        return "no", "the interval excludes 0 against z (higher distortion with z)"
    return f"not resolved with {_seeds(diff.n)}", "the interval includes 0"


def _pays_line(comp: dict, rows: dict[str, dict], context: str) -> str:
    """Does z pay for itself: the call, the distortion difference against none, then chroma and groove."""
    a, b = _short(comp["group"], context), _short(comp["reference"], context)
    call, why = pays_call(comp, rows, context)
    call = f"**{call}**" if call in ("yes", "no") else call
    parts = [_difference(comp, "val/distortion", a, b)]
    parts += [_difference(comp, key, a, b) for key in COMPARED_FIDELITY if interval(comp, f"{key}_diff").n]
    why = f" — {why}" if why else ""
    return f"- **does z pay for itself**, {a} vs {b}: {call}{why}; " + ", ".join(parts)


def _comparison_lines(comp: dict, free_bits: bool, context: str, rows: dict[str, dict]) -> list[str]:
    """Metric by metric, a mode against in_attention: the better one only where the interval excludes 0,
    and for distortion and rate only between converged groups, for MI only below its ceiling."""
    a, b = _short(comp["group"], context), _short(comp["reference"], context)
    named = [(a, rows.get(comp["group"])), (b, rows.get(comp["reference"]))]
    keys = ("val/zgap", "val/mi", "val/distortion") + (() if free_bits else ("val/kl", "val/au"))
    if max(interval(comp, f"{key}_diff").n for key in keys) < 2:  # one seed: one line, not one per metric
        gap = interval(comp, "val/zgap_diff")
        return [f"- **{a} vs {b}**: n=1, no interval: not judged (z-gap {a} − {b} {fmt_interval(gap, signed=True)} "
                "nats/token; every paired difference is in comparisons.csv)"]
    lines = []
    for key in keys:
        diff = interval(comp, f"{key}_diff")
        if diff.n == 0:
            continue
        head = f"- **{NAMES[key]}**, {a} vs {b}:"
        numbers = f"{a} − {b} {fmt_interval(diff, signed=True)} {UNITS[key]}".rstrip() + f", n={diff.n}"
        if diff.n < 2:
            lines.append(f"{head} n=1, no interval: not judged ({numbers})")
        elif key in RANKED_IF_CONVERGED and unconverged(named):
            lines.append(f"{head} {unconverged(named)}; difference {numbers}")
        elif key == "val/mi" and at_mi_ceiling(named):
            lines.append(f"{head} {at_mi_ceiling(named)}; difference {numbers}")
        elif excludes_zero(diff):
            higher = key != "val/distortion"  # lower distortion is better; higher everything else
            better = a if (diff.mean > 0) == higher else b
            lines.append(f"{head} **{better}** better ({BETTER_MEANS[key]}), difference {numbers}")
        else:
            lines.append(f"{head} not distinguishable with {_seeds(diff.n)} ({numbers})")
    return lines


def _context_lines(rows: Sequence[dict], comps: Sequence[dict], context: str) -> list[str]:
    lines = []
    free_bits = max((r.get("kl.free_bits", 0) or 0) for r in rows)
    if free_bits > 0:
        c = rows[0].get("model.latent_dim", math.nan)
        floor = f"c·λ = {_num(c)}·{_num(free_bits)} = {_num(c * free_bits)}" if math.isfinite(c) else "c·λ"
        lines.append(
            f"- **Free bits on** (λ = {_num(free_bits)} nats/dim): KL and AU are floored by the free bits "
            f"(the loss counts KL ≥ {floor} nats per segment: no dim is pushed below λ), so collapse here "
            "is judged by z-gap and MI only"
        )
    vs_none = {c["group"]: c for c in comps if c["reference_mode"] == "none"}
    by_label = {r["group"]: r for r in rows}
    for row in rows:
        if row["mode"] == "none":
            continue
        call, why = collapse_call(row, vs_none.get(row["group"]))
        why = f" — {why}" if why else ""
        lines.append(f"- **{_short(row['group'], context)}**: {call}{why}; {_evidence(row, free_bits > 0)}")
    for row in rows:
        if row["mode"] == "none":
            mine = [c for c in comps if c["reference"] == row["group"]]
            lines += _none_lines(row, mine, context, free_bits > 0)
    pays = [c for c in comps if c["reference_mode"] == "none" and c["mode"] != "none"]
    lines += [_pays_line(c, by_label, context) for c in pays]
    for comp in comps:
        if comp["reference_mode"] == "in_attention" and comp["mode"] != "none":
            lines += _comparison_lines(comp, free_bits > 0, context, by_label)
    return lines


def verdict_text(rows: Sequence[dict], comps: Sequence[dict] = ()) -> str:
    """The verdict, as markdown bullets, from `summarize` rows and `comparisons` rows."""
    if not any(interval(r, "val/kl_final").n or interval(r, "val/zgap_final").n for r in rows):
        return "- No validation was logged in any run: no verdict."
    lines = [f"- **{SINGLE_SEED}**"] if all(r["n_seeds"] == 1 for r in rows) else []
    lines.append(_convergence_line(rows))
    contexts = list(dict.fromkeys(r.get("context", "") for r in rows))
    for context in contexts:
        block = _context_lines(
            [r for r in rows if r.get("context", "") == context],
            [c for c in comps if c.get("context", "") == context],
            context,
        )
        if len(contexts) > 1:
            lines.append(f"- **{context or 'other settings'}**")
            block = ["  " + line for line in block]
        lines += block
    return "\n".join(lines)


def _convergence_line(rows: Sequence[dict]) -> str:
    """'**Converged**: all n runs' or 'k of n runs; still improving: <why, per group>' (checks.convergence)."""
    total = sum(int(r["n_seeds"]) for r in rows)
    done = sum(int(r.get("converged_n", 0)) for r in rows)
    if done == total:
        return f"- **Converged**: all {total} runs (val/distortion fell by at most {CONVERGENCE_TOL:.0%} over the last quarter)"
    moving = "; ".join(f"`{r['group']}`: {r['convergence']}" for r in rows if r.get("convergence"))
    return f"- **Converged**: {done} of {total} runs; distortion and rate are not ranked where runs still improve ({moving})"


def read_verdict(report_dir: Path) -> str:
    """The verdict section of a written summary.md."""
    text = (Path(report_dir) / "summary.md").read_text()
    return text.split("## Verdict\n\n", 1)[-1].split("\n\n## ", 1)[0].strip()
