"""The verdict as data: one `Verdict` record per question, compared groups, metric and budget.

Questions, per setting context (the group settings outside model.conditioning.*, e.g. `kl.beta=0.05`):
  - **uses z** (each group with z): *collapsed* when its z-gap interval over seeds lies entirely below
    ZGAP_COLLAPSE_NATS (or, free bits off, its KL interval below KL_COLLAPSE_NATS); *uses z* when the z-gap
    interval lies above the threshold and the paired z-gap difference against the `none` control excludes 0.
  - **does z pay** (each group with z against `none`): *yes* when the paired val/distortion difference lies
    below 0, *no* above; chroma and groove similarity of test-split reconstructions (final budget only).
  - **which mode** (each other mode against in_attention): per metric, the better mode where the paired
    interval excludes 0 (z-gap, MI, distortion; KL and AU with free bits off; MI not at its estimator's ceiling).
Each is read at every budget (report.budgets: S/4, S/2, S) and its **stability** judged on the last two:
*stable* when the call is the same definite call at both (the interval excludes 0 with the same sign),
*changed* when the two definite calls differ (the sign flipped), else *not resolved*. A stable call holds at
S/2 and at S: it says nothing about convergence or about budgets beyond S. With an lr grid (optim.lr varying),
*does z pay* and *which mode* are given at equal rate and "tuned": each decoder at its own best rate
(report.budgets.best_rates, picked on validation distortion).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from musicvae.report.budgets import at_budget, budgets, family_label, grid_contexts, picked
from musicvae.report.checks import at_ceiling, mi_ceiling
from musicvae.report.groups import Group
from musicvae.report.stats import Interval, paired_difference, t_interval
from musicvae.report.summary import STAT_FIELDS

# Where "collapsed" starts is a convention, not a law: these are deliberately low, so that a mode that
# keeps a little information in z, and uses it, is not called collapsed (short CPU runs that picked z up
# end well above both).
KL_COLLAPSE_NATS = 0.1  # val/kl below this (nats/segment): z carries almost nothing
ZGAP_COLLAPSE_NATS = 0.0005  # val/zgap below this (nats/token): the decoder ignores z
USES_Z, PAYS, WHICH = "uses z", "does z pay", "which mode"
STABLE, CHANGED, UNRESOLVED, FINAL_ONLY = "stable", "changed", "not resolved", "final budget only"
NAMES = {"val/zgap": "z-gap", "val/mi": "MI", "val/distortion": "distortion", "val/kl": "KL", "val/au": "AU",
         "val/recon": "recon", "val/recon_acc": "recon acc", "chroma_sim": "chroma sim",
         "groove_sim": "groove sim"}  # fmt: skip
LOWER_IS_BETTER = {"val/distortion", "val/recon"}
COLLAPSE_RULE = (
    f"**uses z**: the group's z-gap interval (95% Student-t over seeds) lies above {ZGAP_COLLAPSE_NATS} "
    "nats/token and its paired z-gap difference against the `none` control excludes 0; **collapsed**: the "
    f"z-gap interval lies below {ZGAP_COLLAPSE_NATS} nats/token or, free bits off, the KL interval below "
    f"{KL_COLLAPSE_NATS} nats/segment. **does z pay**: *yes* where the paired distortion difference against "
    "`none` lies below 0. **which mode**: the better mode where the paired interval excludes 0. Differences "
    "are paired by seed."
)
STABILITY_RULE = (
    "Each call is read at several budgets (S/4, S/2, S steps: validations every compared run has; anytime "
    "evaluation makes each an estimate of a whole run of that length). **stable**: the same definite call at "
    "the last two budgets (the interval excludes 0 with the same sign at S/2 and S); **changed**: two definite "
    "calls that differ (the sign flipped); otherwise **not resolved**. A stable call holds at S/2 and S, not "
    "at convergence and not beyond S."
)


@dataclass(frozen=True)
class Verdict:
    """One call: a question about compared groups, on one metric, after `budget` training steps."""

    question: str  # USES_Z | PAYS | WHICH
    context: str  # the settings the groups share, e.g. "kl.beta=0.05"
    groups: str  # "in_attention" (uses z) or "cross_attention − in_attention" (the sign of `difference`)
    pairing: str  # "" (one rate), "equal lr" or "tuned" (each side at its best rate, named in `groups`)
    metric: str
    budget: int  # steps trained
    difference: float  # the mean (uses z: the group's own value; else the paired difference over seeds)
    lo: float  # its 95% interval
    hi: float
    n: int
    call: str  # "uses z" | "collapsed" | "yes" | "no" | a mode's name | "not resolved" | "not comparable (...)"
    stable: str = ""  # stability against the budget before: STABLE | CHANGED | UNRESOLVED | FINAL_ONLY | ""

    def row(self) -> dict:
        return dataclasses.asdict(self)


def definite(call: str) -> bool:
    return not call.startswith(("not ", "n=1"))


def stability(previous: Verdict | None, current: Verdict) -> str:
    """STABLE / CHANGED / UNRESOLVED of a call against its reading at the budget before ('' without one)."""
    if previous is None:
        return ""
    if definite(previous.call) and definite(current.call):
        return STABLE if previous.call == current.call else CHANGED
    return UNRESOLVED


def with_stability(readings: Sequence[Verdict]) -> list[Verdict]:
    """The readings of one call, by budget ascending, each with its stability against the one before."""
    if len(readings) == 1:  # one budget in common: nothing to judge stability on
        return [dataclasses.replace(readings[0], stable=FINAL_ONLY)]
    out: list[Verdict] = []
    for v in sorted(readings, key=lambda v: v.budget):
        out.append(dataclasses.replace(v, stable=stability(out[-1] if out else None, v)))
    return out


def _unresolved(iv: Interval) -> str:
    return "n=1: no interval" if iv.n < 2 else UNRESOLVED


def sign_call(iv: Interval, below: str, above: str) -> str:
    """`below` when the interval lies below 0, `above` when above, else not resolved (n=1: no interval)."""
    if iv.n >= 2 and math.isfinite(iv.hi) and iv.hi < 0:
        return below
    if iv.n >= 2 and math.isfinite(iv.lo) and iv.lo > 0:
        return above
    return _unresolved(iv)


def uses_z_call(zgap: Interval, kl: Interval | None, vs_none: Interval | None) -> str:
    """The collapse call of one group at one budget (kl None: free bits on, KL floored)."""
    if zgap.n >= 2 and zgap.hi < ZGAP_COLLAPSE_NATS or kl is not None and kl.n >= 2 and kl.hi < KL_COLLAPSE_NATS:
        return "collapsed"
    clear = zgap.n >= 2 and zgap.lo > ZGAP_COLLAPSE_NATS
    if clear and (vs_none is None or vs_none.n >= 2 and vs_none.lo > 0):
        return "uses z"
    return _unresolved(zgap)


def _record(question, context, groups, pairing, metric, budget, iv: Interval, call) -> Verdict:
    return Verdict(question, context, groups, pairing, metric, budget, iv.mean, iv.lo, iv.hi, iv.n, call)


def _uses_z(g: Group, none: Group | None, context: str) -> list[Verdict]:
    free_bits = g.free_bits > 0
    readings = []
    for b in budgets(g.runs + (none.runs if none else [])):
        zgap = t_interval(at_budget(g, "val/zgap", b).values())
        kl = None if free_bits else t_interval(at_budget(g, "val/kl", b).values())
        vs = paired_difference(at_budget(g, "val/zgap", b), at_budget(none, "val/zgap", b)) if none else None
        readings.append(_record(USES_Z, context, g.label_in(context), "", "val/zgap", b, zgap, uses_z_call(zgap, kl, vs)))
    return with_stability(readings)


def _mi_comparable(a: Group, b: Group, budget: int) -> bool:
    """Neither group's MI at the budget is at its estimator's ceiling (checks.mi_ceiling)."""
    return not any(
        at_ceiling(v, mi_ceiling(g.config)) for g in (a, b) for v in at_budget(g, "val/mi", budget).values()
    )


def _paired(question: str, a: Group, b: Group, keys: Sequence[str], context: str, pairing: str,
            call: Callable[[str, Interval], str]) -> list[Verdict]:  # fmt: skip
    """Readings of a − b, paired by seed, for each metric at each budget, with their stability."""
    out = []
    shown = f"{a.label_in(context)} − {b.label_in(context)}"
    steps = budgets(a.runs + b.runs)
    for key in keys:
        readings = []
        for budget in steps:
            iv = paired_difference(at_budget(a, key, budget), at_budget(b, key, budget))
            verdict = call(key, iv)
            if key == "val/mi" and definite(verdict) and not _mi_comparable(a, b, budget):
                verdict = "not comparable (MI at its estimator's ceiling)"
            readings.append(_record(question, context, shown, pairing, key, budget, iv, verdict))
        out += with_stability(readings)
    return out


def _fidelity(a: Group, b: Group, context: str, pairing: str, keys: Sequence[str]) -> list[Verdict]:
    """Test-split fidelity of a − b (final only: fidelity.json is written when a run ends), higher is better."""
    final = (budgets(a.runs + b.runs) or [0])[-1]
    out = []
    for key in keys:
        values = [{r.seed: (r.fidelity or {}).get(key, math.nan) for r in g.runs} for g in (a, b)]
        iv = paired_difference(*values)
        if iv.n:
            call = sign_call(iv, "no", "yes")
            out.append(dataclasses.replace(_record(PAYS, context, f"{a.label_in(context)} − {b.label_in(context)}",
                                                   pairing, key, final, iv, call), stable=FINAL_ONLY))  # fmt: skip
    return out


def _pays(key: str, iv: Interval) -> str:
    return sign_call(iv, "yes", "no")  # lower distortion with z: it pays


def _which(a: str, b: str) -> Callable[[str, Interval], str]:
    def call(key: str, iv: Interval) -> str:
        below, above = (a, b) if key in LOWER_IS_BETTER else (b, a)  # the better mode when a − b < 0, > 0
        return sign_call(iv, below, above)

    return call


FIDELITY_KEYS = ("chroma_sim", "groove_sim")


def _versus_keys(free_bits: bool) -> tuple[str, ...]:
    return ("val/zgap", "val/mi", "val/distortion") + (() if free_bits else ("val/kl", "val/au"))


def _comparisons(groups: Sequence[Group], context: str, pairing: str, fidelity: bool) -> list[Verdict]:
    """does z pay (each group with z against each `none` group) and which mode (each group of another mode
    against each in_attention group), for groups that share `context`."""
    nones = [g for g in groups if g.mode == "none"]
    refs = [g for g in groups if g.mode == "in_attention"]
    out: list[Verdict] = []
    for g in groups:
        if g.mode == "none":
            continue
        for none in nones:
            out += _paired(PAYS, g, none, ("val/distortion",), context, pairing, _pays)
            out += _fidelity(g, none, context, pairing, FIDELITY_KEYS) if fidelity else []
        for ref in refs if g.mode != "in_attention" else []:
            out += _paired(WHICH, g, ref, _versus_keys(g.free_bits > 0), context, pairing, _which(g.mode, ref.mode))
    return out


def verdicts(groups: Sequence[Group]) -> list[Verdict]:
    """Every call of a sweep (see the module docstring), in context order."""
    out: list[Verdict] = []
    grid = grid_contexts(groups)
    contexts: dict[str, list[Group]] = {}
    for g in groups:
        contexts.setdefault(g.context_label, []).append(g)
    for context, members in contexts.items():
        none = next((g for g in members if g.mode == "none"), None)
        for g in members:
            if g.mode != "none":
                out += _uses_z(g, none, context)
        # where there is an lr grid, test-split fidelity is compared at the chosen rates only (picked on validation)
        in_grid = family_label(members[0]) in grid
        out += _comparisons(members, context, "equal lr" if in_grid else "", fidelity=not in_grid)
    by_context: dict[str, list[Group]] = {}
    for g in picked(groups):
        by_context.setdefault(family_label(g), []).append(g)
    for context, members in by_context.items():
        out += _comparisons(members, context, "tuned", fidelity=True)
    return out


def chosen_rates(groups: Sequence[Group]) -> list[str]:
    """'kl.beta=0.05: in_attention 0.002, none 0.001' per context with an lr grid (empty without one)."""
    lines: dict[str, list[str]] = {}
    for g in picked(groups):
        lines.setdefault(family_label(g), []).append(f"{g.mode} {g.settings.get('optim.lr')}")
    return [f"{context or 'all runs'}: " + ", ".join(parts) for context, parts in lines.items()]


# ---- formatting shared by the markdown and the tables --------------------------------------------------------
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


def fmt_verdict(v: Verdict) -> str:
    """A record's number: 'mean [lo, hi]' (signed for differences)."""
    return fmt_interval(Interval(v.difference, math.nan, v.n, v.lo, v.hi), signed=v.question != USES_Z)
