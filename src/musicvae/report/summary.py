"""The numbers of the report, as plain rows: one per group (summary.csv), one per paired comparison
(comparisons.csv), the curves over seeds and the β series of the figures.

Units follow `musicvae.training.module`: val/kl = val/rate and val/distortion nats/segment, val/recon and
val/zgap nats/token, val/mi nats, val/au a count of latent dims, val/recon_acc a fraction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from musicvae.report.checks import CONVERGENCE_KEY, at_ceiling, convergence, convergence_note, mi_ceiling
from musicvae.report.groups import BETA_KEY, Group, counterparts, format_value
from musicvae.report.runs import FIDELITY, Run, metric_series
from musicvae.report.stats import (
    Band,
    Interval,
    aggregate_curves,
    final_and_best,
    paired_difference,
    t_interval,
)

# (metric, higher is better, unit): the columns of the table; "best" is the max, or the min when lower is better.
METRICS = (
    ("val/kl", True, "nats/segment"),
    ("val/au", True, "active dims"),
    ("val/mi", True, "nats"),
    ("val/zgap", True, "nats/token"),
    ("val/recon", False, "nats/token"),
    ("val/ppl", False, ""),
    ("val/recon_acc", True, "fraction"),
    ("val/rate", True, "nats/segment"),  # = val/kl; named for the rate–distortion plane
    ("val/distortion", False, "nats/segment"),  # E_q[-log p(x|z)] at one sampled z
)
HIGHER_IS_BETTER = {key: higher for key, higher, _ in METRICS}
UNITS = {key: unit for key, _, unit in METRICS}
# Paired against the in_attention and none counterparts, seed by seed (comparisons.csv): final values, and
# the fidelity.json similarities when any run has one.
COMPARED = ("val/zgap", "val/mi", "val/kl", "val/au", "val/distortion", "val/recon", "val/recon_acc")
COMPARED_FIDELITY = ("piece_chroma", "piece_groove", "chroma_sim", "groove_sim")
# Always in summary.csv, varying or not: the verdict and the figures read them.
STANDARD_SETTINGS = ("kl.schedule", BETA_KEY, "kl.free_bits", "model.latent_dim")
STAT_FIELDS = Interval._fields  # mean, std, n, lo, hi
REFERENCES = ("in_attention", "none")
TRAIN_EMA = 0.8  # smoothing weight of the (noisy, per-batch) train curves; val curves are not smoothed


def finals(group: Group, key: str) -> dict[int | None, float]:
    """{seed: final value of `key`} over the group's runs (NaN where a run never logged it)."""
    higher = HIGHER_IS_BETTER.get(key, True)
    return {r.seed: final_and_best(metric_series(r, key), higher)[0] for r in group.runs}


def fidelities(group: Group, key: str) -> dict[int | None, float]:
    """{seed: the fidelity.json value of `key`} over the group's runs (NaN where a run has none)."""
    return {r.seed: (r.fidelity or {}).get(key, math.nan) for r in group.runs}


def _mi_at_ceiling(run: Run) -> bool:
    """Whether a run's final val/mi is within 5% of its estimator's ceiling (`checks.at_ceiling`)."""
    return at_ceiling(final_and_best(metric_series(run, "val/mi"), True)[0], mi_ceiling(run.config))


def _put(row: dict, name: str, iv: Interval) -> None:
    row.update({f"{name}_{field}": value for field, value in zip(STAT_FIELDS, iv, strict=True)})


def _setting(value: object) -> object:
    """A setting as a CSV cell: numbers and text as they are, lists/booleans spelled out, absent empty."""
    if value is None or isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    return format_value(value)


def summarize(groups: Sequence[Group]) -> list[dict]:
    """One row per group: group (its label), mode, context (its settings outside model.conditioning.*),
    each varying setting and STANDARD_SETTINGS as columns, n_seeds, plateaued_n (its runs no longer improving
    by `checks.convergence`: information, no call waits for it), seeds, plateau (which still improve, by how
    much; empty when none does), for each of
    METRICS `<metric>_{final,best}_{mean,std,n,lo,hi}`, val/mi_ceiling (nats, `checks.mi_ceiling` of the
    group's config) and val/mi_at_ceiling_n (runs whose final MI is within 5% of it), and
    `<fidelity>_{mean,std,n,lo,hi}` when any run has a fidelity.json. Intervals are 95% Student-t over the
    group's seeds."""
    with_fidelity = any(r.fidelity for g in groups for r in g.runs)
    rows = []
    for g in groups:
        row: dict = {"group": g.label, "mode": g.mode, "context": g.context_label}
        row.update({k: _setting(v) for k, v in g.settings.items()})
        standard = {BETA_KEY: g.beta, "kl.free_bits": g.free_bits, "kl.schedule": g.schedule,
                    "model.latent_dim": g.latent_dim}  # fmt: skip
        row.update({k: v for k, v in standard.items() if k not in row})
        converged = [convergence(metric_series(r, CONVERGENCE_KEY)) for r in g.runs]
        row.update({"n_seeds": len(g.runs), "plateaued_n": sum(c.converged for c in converged),
                    "seeds": " ".join(str(s) for s in g.seeds),
                    "plateau": convergence_note(converged)})  # fmt: skip
        for key, higher, _ in METRICS:
            values = [final_and_best(metric_series(r, key), higher) for r in g.runs]
            _put(row, f"{key}_final", t_interval(v[0] for v in values))
            _put(row, f"{key}_best", t_interval(v[1] for v in values))
        row["val/mi_ceiling"] = mi_ceiling(g.config)
        row["val/mi_at_ceiling_n"] = sum(_mi_at_ceiling(r) for r in g.runs)
        if with_fidelity:
            for key, _ in FIDELITY:
                _put(row, key, t_interval(fidelities(g, key).values()))
        rows.append(row)
    return rows


def comparisons(groups: Sequence[Group]) -> list[dict]:
    """Paired differences (group - reference) seed by seed, with their 95% Student-t intervals: every
    group against its in_attention counterpart (when it is not in_attention itself), and every group of a
    real mode against its `none` counterpart (does z pay for itself?). Columns: group, reference, baseline
    (the reference's mode: in_attention or none), difference (`<mode> - <baseline>`, the sign of every
    diff), mode, reference_mode, context, kl.free_bits, model.latent_dim, `<metric>_diff_{mean,std,n,lo,hi}`
    of the final values in COMPARED, and `<key>_diff_...` of COMPARED_FIDELITY when any run has a
    fidelity.json."""
    with_fidelity = any(r.fidelity for g in groups for r in g.runs)
    paired = [(key, finals) for key in COMPARED]
    paired += [(key, fidelities) for key in COMPARED_FIDELITY if with_fidelity]
    out = []
    for reference in REFERENCES:
        for g in groups:
            if g.mode == reference:
                continue
            for ref in counterparts(g, list(groups), reference):
                row = {"group": g.label, "reference": ref.label, "baseline": reference,
                       "difference": f"{g.mode} - {reference}", "mode": g.mode, "reference_mode": ref.mode,
                       "context": g.context_label, "kl.free_bits": g.free_bits,
                       "model.latent_dim": g.latent_dim}  # fmt: skip
                for key, values in paired:
                    _put(row, f"{key}_diff", paired_difference(values(g, key), values(ref, key)))
                out.append(row)
    return out


def curves(groups: Sequence[Group]) -> dict[str, dict[str, Band]]:
    """{group label: {metric: mean/min/max over seeds against step}} for the curve figures."""
    smooth = {"train/kl": TRAIN_EMA}
    keys = ("val/kl", "train/kl", "val/zgap", "val/recon", "train/beta")
    return {
        g.label: {k: aggregate_curves([metric_series(r, k) for r in g.runs], smooth.get(k)) for k in keys}
        for g in groups
    }


def beta_series(groups: Sequence[Group], rows: Sequence[dict]) -> dict[str, list[dict]]:
    """{series name: its rows sorted by β}: a series is the groups identical but for kl.beta (in a mode ×
    β sweep, one per mode); the name is the group label without β. Groups without a β are left out."""
    series: dict[str, list[dict]] = {}
    for g, row in zip(groups, rows, strict=True):
        if math.isfinite(g.beta):
            series.setdefault(g.name(without=(BETA_KEY,)), []).append(row)
    return {name: sorted(rs, key=lambda r: r[BETA_KEY]) for name, rs in series.items()}
