"""The comparison report of a sweep: which decoder conditionings keep the latent z in use.

    python scripts/compare.py SWEEP_DIR

reads every run folder `SWEEP_DIR/<run>/` (its `metrics.csv` from Lightning's CSVLogger, `config.yaml`,
and optionally `fidelity.json` and `samples/`), groups the runs by every setting that differs except the
seed, and writes `SWEEP_DIR/report/`:

    summary.md          the calls at a glance, the verdict, the tables (mean [95% interval] over seeds), the
                        figures, the samples
    index.html          the same as a page (opens from disk), with a player and piano roll for every sample
    verdicts.csv        one record per call and budget (report.verdict.Verdict): question, context, groups,
                        pairing, metric, budget (steps trained), difference, lo, hi, n, call, stable
    forecast.csv        per group, the power-law forecast of val/distortion and its backtest (report.forecast)
    summary.csv         one row per group: its settings, n, plateaued_n, and mean/std/n/lo/hi of each metric
    comparisons.csv     paired differences (seed by seed) against the in_attention and none counterparts
                        (`baseline`: which; `difference`: `<mode> - <baseline>`, the sign of every diff)
    rate_distortion.png final rate against final distortion, one line per mode through its β values
    beta.png            final z-gap and AU against β
    kl_curves.png, zgap.png, recon.png   curves against step, one line per group (mean, min–max band)
    samples/<group>/    the prior samples, test inputs, reconstructions and interpolation of the group's first
                        seed's run: MIDI, piano roll, audio

Modules: runs (reading), groups (grouping), stats (intervals), checks (a run's plateau, the MI estimator's
ceiling), summary (the rows), budgets (reading runs at S/4, S/2, S; each decoder's best learning rate),
verdict (the calls as records), forecast (the power-law forecast and its backtest), plots, markdown (the files).
"""

from __future__ import annotations

import logging
from pathlib import Path

from musicvae.generation.audio import AudioConfig
from musicvae.report.budgets import chosen, tuned
from musicvae.report.checks import CONVERGENCE_TOL, convergence, mi_ceiling
from musicvae.report.forecast import backtest, forecast_lines, forecast_rows
from musicvae.report.groups import Group, counterparts, group_runs
from musicvae.report.html import write_html
from musicvae.report.markdown import (
    copy_samples,
    read_csv,
    samples_markdown,
    summary_markdown,
    verdict_lines,
    write_csv,
)  # fmt: skip
from musicvae.report.plots import plot_beta, plot_kl, plot_rate_distortion, plot_val_metric
from musicvae.report.runs import REPORT_DIRNAME, Run, find_runs, read_metrics, select
from musicvae.report.stats import final_and_best, paired_difference, t_interval
from musicvae.report.summary import METRICS, beta_series, comparisons, curves, summarize
from musicvae.report.verdict import KL_COLLAPSE_NATS, ZGAP_COLLAPSE_NATS, Verdict, chosen_rates, verdicts

__all__ = [
    "CONVERGENCE_TOL", "KL_COLLAPSE_NATS", "METRICS", "ZGAP_COLLAPSE_NATS", "Group", "Run", "Verdict", "comparisons",
    "convergence", "counterparts", "final_and_best", "find_runs", "group_runs", "mi_ceiling", "paired_difference",
    "read_csv", "read_metrics", "read_verdict", "read_verdicts", "summarize", "t_interval", "verdicts", "write_report",
]  # fmt: skip

log = logging.getLogger(__name__)


def write_report(sweep_dir: Path, audio: bool = True) -> Path:
    """Read the runs of a sweep dir and write SWEEP_DIR/report/ (see the module docstring). -> report dir.
    `audio`: render the audio of copied samples that have none (runs from before audio existed)."""
    sweep_dir = Path(sweep_dir)
    runs, skipped = find_runs(sweep_dir)
    report_dir = sweep_dir / REPORT_DIRNAME
    report_dir.mkdir(exist_ok=True)
    groups = group_runs(runs)
    rows, comps = summarize(groups), comparisons(groups)
    log.info("%d runs in %d groups (%d skipped) -> %s", len(runs), len(groups), len(skipped), report_dir)

    bands = curves(groups)
    plot_kl(bands, report_dir / "kl_curves.png")
    plot_val_metric(
        bands, "val/zgap", "z-gap: NLL with another segment's z minus NLL with its own z, nats/token (~0: z unused)",
        report_dir / "zgap.png", threshold=ZGAP_COLLAPSE_NATS,
    )  # fmt: skip
    plot_val_metric(
        bands,
        "val/recon",
        "Validation reconstruction NLL, nats/token (lower is better)",
        report_dir / "recon.png",
    )
    series = beta_series(groups, rows)
    plot_rate_distortion(series, report_dir / "rate_distortion.png")
    plot_beta(series, report_dir / "beta.png")

    write_csv(rows, report_dir / "summary.csv")
    write_csv(comps, report_dir / "comparisons.csv", empty_header=("group", "reference"))
    records = verdicts(groups)
    write_csv([v.row() for v in records], report_dir / "verdicts.csv", empty_header=Verdict.__dataclass_fields__)
    backtests = [_backtest(g) for g in groups]
    write_csv(forecast_rows(backtests), report_dir / "forecast.csv")
    copied = copy_samples(groups, report_dir, AudioConfig() if audio else None)
    prose = verdict_lines(rows, chosen_rates(groups), forecast_lines(backtests))
    shown = [g.label for g in chosen(groups)] if tuned(groups) else None
    body = summary_markdown(sweep_dir, len(runs), skipped, groups, rows, comps, records, prose, shown)
    (report_dir / "summary.md").write_text(body + "\n" + samples_markdown(copied))
    write_html(report_dir, body, copied, title=f"musicvae report: {Path(sweep_dir).resolve().name}")
    return report_dir


def _backtest(group: Group):
    """The forecast's backtest of a group's val/distortion curves, leaving out the β = 0 stretch (another
    objective) and the validations the weights' average still mixes it into (up to twice its length)."""
    zero_steps = select(group.config, "kl.zero_steps", 0) or 0
    curves = [r.series.get("val/distortion", {}) for r in group.runs]
    return backtest(group.label, curves, start=2 * int(zero_steps))


def read_verdict(report_dir: Path) -> str:
    """The calls at a glance and the verdict of a written summary.md (what compare.py prints)."""
    text = (Path(report_dir) / "summary.md").read_text()
    return text.split("## At a glance\n\n", 1)[-1].split("\n\n### Every other call", 1)[0].strip()


def read_verdicts(report_dir: Path) -> list[dict[str, str]]:
    """verdicts.csv of a written report, as text rows."""
    return read_csv(Path(report_dir) / "verdicts.csv")[1]
