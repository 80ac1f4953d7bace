"""The report's files: summary.md, summary.csv, comparisons.csv and the copied samples."""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from musicvae.data.cache import MIDI_SUFFIXES
from musicvae.generation.audio import AUDIO_SUFFIXES, AudioConfig, render_quietly
from musicvae.report.checks import AT_CEILING, CONVERGENCE_RULE, MI_CEILING_RULE
from musicvae.report.forecast import FORECAST_RULE
from musicvae.report.groups import Group, path_safe
from musicvae.report.runs import FIDELITY
from musicvae.report.stats import excludes_zero
from musicvae.report.summary import COMPARED, COMPARED_FIDELITY, METRICS
from musicvae.report.verdict import (
    COLLAPSE_RULE,
    NAMES,
    PAYS,
    STABILITY_RULE,
    USES_Z,
    WHICH,
    Verdict,
    fmt_interval,
    fmt_verdict,
    interval,
)  # fmt: skip

# val/rate is val/kl under its rate–distortion name: in summary.csv and the figure, not twice in the tables.
TABLE_METRICS = [(key, f"{key} ({unit})" if unit else key) for key, _, unit in METRICS if key != "val/rate"]
Column = tuple[str | Callable[[dict], str], str]  # (the interval's name in the row, or a cell maker; header)


def _cell(value: object) -> object:
    """NaN and None as empty CSV cells."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    return value


def write_csv(rows: Sequence[dict], path: Path, empty_header: Sequence[str] = ("group",)) -> None:
    """Rows as CSV, columns in first-seen order; NaN (e.g. the interval of a single seed) as an empty cell."""
    columns = list(dict.fromkeys(k for row in rows for k in row)) or list(empty_header)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows as text) of a CSV the report wrote."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def copy_samples(
    groups: Sequence[Group], report_dir: Path, audio: AudioConfig | None = None
) -> dict[str, tuple[str, list[Path]]]:  # fmt: skip
    """Copy each group's samples (of its first seed's run that has any) to report/samples/<group>/; with
    `audio`, render the audio of each copied MIDI that came without (runs from before audio existed).

    Returns {group label: (run name, copied paths relative to report_dir)}.
    """
    root = report_dir / "samples"
    if root.exists():
        shutil.rmtree(root)  # our own output: no stale samples from an earlier report
    copied = {}
    for group in groups:
        run = next((r for r in group.runs if r.samples), None)
        if run is None:
            continue
        files = []
        for src in run.samples:
            dst = root / path_safe(group.label) / src.relative_to(run.path / "samples")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            files.append(dst.relative_to(report_dir))
        for midi in [report_dir / f for f in files if f.suffix in MIDI_SUFFIXES] if audio else []:
            if not any(midi.with_suffix(s).exists() for s in AUDIO_SUFFIXES) and (sound := render_quietly(midi, audio)):
                files.append(sound.relative_to(report_dir))
        copied[group.label] = (run.name, sorted(files))
    return copied


def _table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    """One row per group: n, then per (stat name, header) a 'mean [lo, hi]' cell, or the cell a callable
    makes of the row."""
    head = "| group | n | " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "---|" * (len(columns) + 2)
    body = [
        f"| {r['group']} | {r['n_seeds']} | "
        + " | ".join(n(r) if callable(n) else fmt_interval(interval(r, n)) for n, _ in columns)
        + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body])


def _plateaued(row: dict) -> str:
    """'plateaued 1/3' (runs no longer improving by the plateau rule, of the group's runs)."""
    return f"plateaued {row.get('plateaued_n', 0)}/{row['n_seeds']}"


def _mi_ceiling(row: dict) -> str:
    """The MI ceiling in nats, flagged where a run's final MI is within 5% of it; '–' when unknown."""
    ceiling = row.get("val/mi_ceiling", math.nan)
    if not math.isfinite(ceiling):
        return "–"
    n = row.get("val/mi_at_ceiling_n", 0)
    flag = f" **{AT_CEILING}** ({n}/{row['n_seeds']} runs)" if n else ""
    return f"{ceiling:.3g}{flag}"


def _final_columns() -> list[Column]:
    """The final table's columns: plateaued k/n first, the MI ceiling right after MI."""
    columns: list[Column] = [(_plateaued, "plateau")]
    for key, header in TABLE_METRICS:
        columns.append((f"{key}_final", header))
        if key == "val/mi":
            columns.append((_mi_ceiling, "MI ceiling (nats)"))
    return columns


def _comparison_table(comps: Sequence[dict]) -> str:
    """One row per paired comparison; bold where the interval excludes 0."""
    keys = [*COMPARED, *(k for k in COMPARED_FIDELITY if any(f"{k}_diff_n" in c for c in comps))]
    head = "| group | vs | n | " + " | ".join(f"Δ {NAMES.get(k, k)}" for k in keys) + " |"
    rule = "|" + "---|" * (len(keys) + 3)
    body = []
    for c in comps:
        cells = []
        for key in keys:
            iv = interval(c, f"{key}_diff")
            text = fmt_interval(iv, signed=True)
            cells.append(f"**{text}**" if excludes_zero(iv) else text)
        n = max(interval(c, f"{k}_diff").n for k in keys)
        body.append(f"| {c['group']} | {c['reference']} | {n} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def samples_markdown(copied: dict[str, tuple[str, list[Path]]]) -> str:
    """summary.md's samples section: per group, the run they come from and one line per sample (MIDI, piano
    roll, audio); report/index.html plays them instead."""
    if not copied:
        return "## Samples\n\nNo run has a samples/ folder.\n"
    parts = []
    for label, (run_name, files) in copied.items():
        by_stem: dict[str, list[Path]] = {}
        for f in files:
            by_stem.setdefault(str(f.with_suffix("")), []).append(f)
        items = [
            f"- {Path(stem).name}: " + " · ".join(f"[{f.suffix.lstrip('.')}]({f.as_posix()})" for f in fs)
            for stem, fs in by_stem.items()
        ]
        parts.append(f"### {label} (run `{run_name}`)\n\n" + "\n".join(items))
    return "## Samples\n\n" + "\n\n".join(parts) + "\n"


def _sweep_line(sweep_dir: Path, n_runs: int, groups: Sequence[Group], skipped: Sequence[Path]) -> str:
    seeds = ", ".join(f"{g.label} ({len(g.runs)})" for g in groups)
    varying = list(dict.fromkeys(k for g in groups for k in g.label_keys))
    line = f"Sweep `{Path(sweep_dir).resolve().name}`: {n_runs} runs in {len(groups)} groups — seeds per group: {seeds}."
    line += f" Groups differ in the mode and {', '.join(f'`{k}`' for k in varying)}." if varying else ""
    if skipped:
        names = ", ".join(f"`{p.name}`" for p in skipped)
        line += f" {len(skipped)} run folder(s) without metrics.csv skipped: {names}."
    return line


HEADLINE = {(USES_Z, "val/zgap"), (PAYS, "val/distortion"), (WHICH, "val/zgap"), (WHICH, "val/distortion")}


def _calls(records: Sequence[Verdict]) -> dict[tuple, list[Verdict]]:
    """{(question, context, groups, pairing, metric): its readings by budget ascending}, in record order."""
    calls: dict[tuple, list[Verdict]] = {}
    for v in records:
        calls.setdefault((v.question, v.context, v.groups, v.pairing, v.metric), []).append(v)
    return {key: sorted(vs, key=lambda v: v.budget) for key, vs in calls.items()}


def calls_table(records: Sequence[Verdict], headline: bool | None = None) -> str:
    """One row per call, read at its last budget: the number, the call, its stability against the budget
    before, and the number (and call, with seeds to give one) at every budget. headline True: only HEADLINE calls; False: only the others."""
    head = "| question | setting | groups | metric | steps | value [95%] | n | call | stability | by budget |"
    body = []
    for (question, context, groups, pairing, metric), readings in _calls(records).items():
        if headline is not None and ((question, metric) in HEADLINE) != headline:
            continue
        last = readings[-1]
        shown = f"{groups} ({pairing})" if pairing else groups
        call = f"**{last.call}**" if last.stable == "stable" else last.call
        history = " · ".join(f"{v.budget}: {fmt_verdict(v)}" + ("" if v.n < 2 else f" {v.call}") for v in readings)
        body.append(f"| {question} | {context or '–'} | {shown} | {NAMES.get(metric, metric)} | {last.budget} | "
                    f"{fmt_verdict(last)} | {last.n} | {call} | {last.stable or '–'} | {history} |")  # fmt: skip
    return "\n".join([head, "|" + "---|" * 10, *body]) if body else "No call to make (no validation in common)."


def verdict_lines(rows: Sequence[dict], chosen: Sequence[str], forecast: Sequence[str]) -> str:
    """The prose under the table: one seed, the rates chosen, the plateau of the runs, the forecast."""
    if not any(interval(r, "val/kl_final").n or interval(r, "val/zgap_final").n for r in rows):
        return "- No validation was logged in any run: no verdict."
    lines = []
    if rows and all(r["n_seeds"] == 1 for r in rows):
        lines.append("- **One seed per setting**: no intervals, so no call is resolved; rerun with seed=0,1,2")
    if chosen:
        lines.append("- **Learning rates chosen** (tuned rows; lowest mean val distortion at the last budget, "
                     "validation only): " + "; ".join(chosen))  # fmt: skip
    total = sum(int(r["n_seeds"]) for r in rows)
    flat = sum(int(r.get("plateaued_n", 0)) for r in rows)
    moving = "; ".join(f"`{r['group']}`: {r['plateau']}" for r in rows if r.get("plateau"))
    lines.append(f"- **Plateau** (information, not a gate): {flat} of {total} runs no longer improve"
                 + (f" ({moving})" if moving else ""))  # fmt: skip
    lines += forecast
    return "\n".join(lines)


def summary_markdown(
    sweep_dir: Path,
    n_runs: int,
    skipped: Sequence[Path],
    groups: Sequence[Group],
    rows: Sequence[dict],
    comps: Sequence[dict],
    records: Sequence[Verdict],
    prose: str,
    fidelity_groups: Sequence[str] | None = None,
) -> str:
    """summary.md but its samples: the calls at a glance, the verdict, the tables, the figures (index.html
    renders this text). fidelity_groups: the groups whose test-split fidelity is shown (with an lr grid, the
    rates chosen on validation); None: every group."""
    sections = [
        "# Posterior collapse across decoder conditionings",
        _sweep_line(sweep_dir, n_runs, groups, skipped),
        "## At a glance",
        "Each question read at its last budget (steps trained), the call in **bold** where it is stable; every "
        "reading of every call is in verdicts.csv.",
        calls_table(records, headline=True),
        "## Verdict",
        prose,
        "### Every other call",
        calls_table(records, headline=False),
        COLLAPSE_RULE,
        STABILITY_RULE,
        CONVERGENCE_RULE,
        FORECAST_RULE,
        MI_CEILING_RULE,
        "## Summary",
        "Mean over seeds with its 95% Student-t interval, `mean [lo, hi]` (only the mean for one seed); n is "
        "the group's seed count, and summary.csv has the n, std and bounds behind every cell. *Final* is the "
        "last validation; *best* the max over validations (the min for val/recon, val/ppl, val/distortion). "
        "*plateaued k/n*: runs no longer improving by the plateau rule above (summary.csv: plateaued_n).",
        "### Final (last validation)",
        _table(rows, _final_columns()),
        "### Best over training",
        _table(rows, [(f"{k}_best", h) for k, h in TABLE_METRICS]),
    ]
    sections += _comparison_sections(comps)
    sections += _fidelity_section(rows, fidelity_groups)
    sections += [
        "## Rate–distortion",
        "Each point is one group's final (rate, distortion), mean over seeds with 95% intervals; a line joins "
        "the β values of one conditioning. Lower distortion at the same rate is better.",
        "![rate–distortion](rate_distortion.png)",
        "![z-gap and AU against β](beta.png)",
        "## Curves",
        "![KL curves](kl_curves.png)",
        "![z-gap](zgap.png)",
        "![reconstruction](recon.png)",
    ]
    return "\n\n".join(sections) + "\n"


def _fidelity_section(rows: Sequence[dict], fidelity_groups: Sequence[str] | None) -> list[str]:
    """The test-split fidelity table of the groups shown (all of them, or the rates chosen on validation)."""
    if not rows or "chroma_sim_mean" not in rows[0]:
        return []
    shown = [r for r in rows if fidelity_groups is None or r["group"] in fidelity_groups]
    chosen = " Only the learning rates chosen on validation: the test split picks nothing." if fidelity_groups else ""
    return [
        "### Musical fidelity (test split)",
        "Piece: whole test pieces reconstructed as `sample.py mode=reconstruct` makes them, beside the same model "
        "decoding another piece's latents (shuffled z: the floor); 2-bar segment: 32 spread test segments. Chroma "
        "and groove: per-bar cosine between input and reconstruction (1 = same); metre kept: share of bars in the "
        "input's time signature. Pitch-class entropy (bits) and note density of prior samples against the data." + chosen,
        _table(shown, FIDELITY),
    ]


def _comparison_sections(comps: Sequence[dict]) -> list[str]:
    """Every group against its reference at the last validation (comparisons.csv): summary.md's section."""
    shown = [c for c in comps if c["mode"] != "none"]  # none - in_attention mirrors in_attention - none
    if not shown:
        return []
    return [
        "### Paired differences at the last validation (comparisons.csv)",
        "Group minus reference (same settings but the conditioning), final values paired seed by seed: "
        "mean [95% interval]; **bold** where the interval excludes 0.",
        _comparison_table(shown),
    ]
