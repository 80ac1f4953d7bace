"""The comparison report of a conditioning sweep: which decoder conditionings let the posterior collapse.

    python scripts/compare.py SWEEP_DIR

reads every run folder `SWEEP_DIR/<run>/` (its `metrics.csv` from Lightning's CSVLogger, `config.yaml`,
and optionally `fidelity.json` and `samples/`) and writes `SWEEP_DIR/report/`:

    kl_curves.png   val/kl and train/kl (EMA-smoothed) against step, one colour per mode, β dashed
    zgap.png        val/zgap against step (how much the decoder uses z)
    recon.png       val/recon against step
    summary.csv     one row per mode: final and best value of each val metric, mean/std/n over seeds
    summary.md      a verdict derived from those numbers, the tables, the figures, the samples
    samples/<mode>/ the prior samples and reconstructions (MIDI + piano roll) of the first seed's run

Units follow `musicvae.training.module`: val/kl nats/segment, val/recon and val/zgap nats/token,
val/mi nats, val/au a count of latent dims, val/recon_acc a fraction.

The collapse rule: a mode has collapsed when, averaged over its seeds, its final val/kl is below
`KL_COLLAPSE_NATS` (z carries almost nothing) or its final val/zgap is below `ZGAP_COLLAPSE_NATS`
(the decoder predicts as well with another segment's z: it ignores z).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from musicvae.errors import UserError

log = logging.getLogger(__name__)

MODE_ORDER = ("in_attention", "cross_attention", "embedding", "prefix", "none")
# (metric, higher is better, unit): the columns of the table; "best" is the max, or the min when lower is better.
METRICS = (
    ("val/kl", True, "nats/segment"),
    ("val/au", True, "active dims"),
    ("val/mi", True, "nats"),
    ("val/zgap", True, "nats/token"),
    ("val/recon", False, "nats/token"),
    ("val/ppl", False, ""),
    ("val/recon_acc", True, "fraction"),
)
# fidelity.json, flattened: pitch_class_entropy {samples, data} -> pitch_class_entropy_samples, ..._data.
FIDELITY = (
    ("chroma_sim", "chroma sim"),
    ("groove_sim", "groove sim"),
    ("pitch_class_entropy_samples", "pitch-class entropy, samples"),
    ("pitch_class_entropy_data", "pitch-class entropy, data"),
    ("note_density_samples", "note density, samples"),
    ("note_density_data", "note density, data"),
)
# Where "collapsed" starts is a convention, not a law: these are deliberately low, so that a mode that
# keeps a little information in z, and uses it, is not called collapsed (measured here: short CPU runs
# that picked z up ended with 0.3-3 nats/segment and z-gaps of 0.001-0.02 nats/token).
KL_COLLAPSE_NATS = 0.1  # final val/kl below this (nats/segment): z carries almost nothing
ZGAP_COLLAPSE_NATS = 0.0005  # final val/zgap below this (nats/token): the decoder ignores z
TRAIN_EMA = 0.8  # smoothing weight of the (noisy, per-batch) train curves; val curves are not smoothed
SAMPLE_SUFFIXES = (".mid", ".midi", ".png")
REPORT_DIRNAME = "report"

Series = dict[int, float]  # step -> value, steps ascending


@dataclass
class Run:
    """One training run of the sweep."""

    name: str  # the run folder's name
    path: Path
    mode: str  # model.conditioning.mode
    seed: int | None
    series: dict[str, Series]  # metric -> step -> value
    fidelity: dict[str, float] | None = None  # flattened fidelity.json
    samples: list[Path] = field(default_factory=list)  # MIDI + PNG files under samples/


# ----- reading ------------------------------------------------------------------------------------


def _to_float(cell: object) -> float | None:
    """A CSV/JSON cell as a float; None for empty or unparsable cells (JSON null -> NaN)."""
    if cell is None or isinstance(cell, list):
        return None
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def read_metrics(path: Path) -> dict[str, Series]:
    """A CSVLogger metrics.csv -> {metric: {step: value}}.

    Rows are sparse (train and val rows leave each other's cells empty): empty or unparsable cells and
    rows without a step are skipped, a metric missing from the header is simply absent, and a step
    logged twice (a resumed run) keeps its last value.
    """
    series: dict[str, Series] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = _to_float(row.get("step"))
            if step is None or not math.isfinite(step):
                continue
            for key, cell in row.items():
                value = _to_float(cell)
                if key in (None, "step", "epoch") or value is None:
                    continue
                series.setdefault(key, {})[int(step)] = value
    return {key: dict(sorted(s.items())) for key, s in series.items()}


def _load_config(run_dir: Path) -> object | None:
    """The run's config.yaml (Hydra's .hydra/config.yaml as a fallback), or None."""
    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                return OmegaConf.load(path)
            except Exception as e:  # a broken YAML only costs the mode/seed, which have fallbacks
                log.warning("%s: unreadable config (%s)", path, e)
    return None


def _select(cfg: object | None, key: str) -> object | None:
    """cfg[key] (dotted), or None when absent or not resolvable outside Hydra."""
    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:
        return None


def _mode_from_name(name: str) -> str | None:
    """A known mode named in a run folder's name (Hydra's subdir is `<num>_<mode>_seed<seed>`)."""
    for mode in sorted(MODE_ORDER, key=len, reverse=True):
        if re.search(rf"(?<![a-z]){mode}(?![a-z])", name.lower()):
            return mode
    return None


def run_mode_and_seed(run_dir: Path) -> tuple[str, int | None]:
    """(conditioning mode, seed) of a run: from its config, else guessed from the folder's name."""
    cfg = _load_config(run_dir)
    mode = _select(cfg, "model.conditioning.mode")
    if mode is None:
        mode = _mode_from_name(run_dir.name) or "unknown"
        log.warning("%s: no model.conditioning.mode in its config; taken as %r", run_dir, mode)
    seed = _select(cfg, "seed")
    if seed is None:
        match = re.search(r"seed(\d+)", run_dir.name)
        seed = int(match.group(1)) if match else None
    return str(mode), (int(seed) if seed is not None else None)


def read_fidelity(path: Path) -> dict[str, float] | None:
    """fidelity.json flattened to the `FIDELITY` keys (null/missing -> NaN); None if absent or broken."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); fidelity left out for this run", path, e)
        return None
    flat: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{sub}": _to_float(v) for sub, v in value.items()})
        else:
            flat[key] = _to_float(value)
    return {key: math.nan if flat.get(key) is None else flat[key] for key, _ in FIDELITY}


def _sample_files(run_dir: Path) -> list[Path]:
    """The MIDI and piano-roll files under run_dir/samples/."""
    root = run_dir / "samples"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)


def read_run(run_dir: Path) -> Run | None:
    """One run folder -> Run; None (with a warning) when it has no readable metrics.csv."""
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        log.warning("%s: no metrics.csv, skipped (did the run crash before logging?)", run_dir)
        return None
    try:
        series = read_metrics(metrics)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        log.warning("%s: unreadable (%s), skipped", metrics, e)
        return None
    if "val/kl" not in series:
        log.warning("%s: no validation logged yet; its final values will be missing", metrics)
    mode, seed = run_mode_and_seed(run_dir)
    fidelity = read_fidelity(run_dir / "fidelity.json")
    return Run(run_dir.name, run_dir, mode, seed, series, fidelity, _sample_files(run_dir))


def _looks_like_run(path: Path) -> bool:
    """A folder a training run wrote (its config, Hydra's .hydra/ or a metrics.csv)."""
    return any((path / name).exists() for name in ("metrics.csv", "config.yaml", ".hydra"))


def find_runs(sweep_dir: Path) -> tuple[list[Run], list[Path]]:
    """(runs, skipped run folders) of a sweep dir; UserError when there is no run to report on."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(
            f"{sweep_dir} is not a folder: pass the sweep dir of a comparison "
            "(`python scripts/train.py -m experiment=collapse_compare` writes multirun/<date>/)"
        )
    runs, skipped = [], []
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        if sub.name.startswith(".") or sub.name == REPORT_DIRNAME or not _looks_like_run(sub):
            continue
        run = read_run(sub)
        if run is None:
            skipped.append(sub)
        else:
            runs.append(run)
    if not runs:
        hint = (
            f"{sweep_dir} looks like a single run; pass the folder that holds the runs"
            if (sweep_dir / "metrics.csv").is_file()
            else "pass the sweep dir whose subfolders are the runs (each with a metrics.csv), "
            "e.g. multirun/<date> after `python scripts/train.py -m experiment=collapse_compare`"
        )
        raise UserError(f"no run with a metrics.csv in {sweep_dir} ({len(skipped)} without one): {hint}")
    return runs, skipped


# ----- the table ------------------------------------------------------------------------------------


def order_modes(modes: Iterable[str]) -> list[str]:
    """The modes in report order: MODE_ORDER first, then any others alphabetically."""
    modes = set(modes)
    return [m for m in MODE_ORDER if m in modes] + sorted(modes - set(MODE_ORDER))


def final_and_best(series: Series, higher_is_better: bool) -> tuple[float, float]:
    """(value at the last step, best finite value) of a series; NaN for what is missing."""
    if not series:
        return math.nan, math.nan
    final = series[max(series)]
    finite = [v for v in series.values() if math.isfinite(v)]
    best = (max if higher_is_better else min)(finite) if finite else math.nan
    return final, best


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std (n-1), n) over the finite values; std is NaN below two values."""
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, 0
    std = float(x.std(ddof=1)) if len(x) >= 2 else math.nan
    return float(x.mean()), std, len(x)


def _seed_key(run: Run) -> tuple:
    """Sort runs by seed (runs without one last), then by folder name."""
    return (run.seed is None, run.seed if run.seed is not None else 0, run.name)


def group_by_mode(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """{mode: its runs sorted by seed}, modes in report order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.mode, []).append(run)
    return {mode: sorted(groups[mode], key=_seed_key) for mode in order_modes(groups)}


def _put_stats(row: dict, name: str, values: Iterable[float]) -> None:
    """row[name_mean], row[name_std], row[name_n] from the per-seed values."""
    mean, std, n = mean_std(values)
    row.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_n": n})


def summarize(runs: Sequence[Run]) -> list[dict]:
    """One row per mode: n_seeds, seeds, and `<metric>_{final,best}_{mean,std,n}` for each of METRICS;
    plus `<fidelity>_{mean,std,n}` when any run has a fidelity.json."""
    with_fidelity = any(run.fidelity for run in runs)
    rows = []
    for mode, group in group_by_mode(runs).items():
        row: dict = {"mode": mode, "n_seeds": len(group), "seeds": " ".join(str(r.seed) for r in group)}
        for key, higher, _ in METRICS:
            finals, bests = zip(*(final_and_best(r.series.get(key, {}), higher) for r in group), strict=True)
            _put_stats(row, f"{key}_final", finals)
            _put_stats(row, f"{key}_best", bests)
        if with_fidelity:
            for key, _ in FIDELITY:
                _put_stats(row, key, [(r.fidelity or {}).get(key, math.nan) for r in group])
        rows.append(row)
    return rows


# ----- the verdict ----------------------------------------------------------------------------------


def _num(x: float) -> str:
    """A number for humans: 3 significant digits, no exponent for large values, '–' for NaN."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _stat(row: dict, name: str) -> str:
    """'mean ± std' of a table cell (std to 2 significant digits), just the mean for one seed."""
    mean, std = row.get(f"{name}_mean", math.nan), row.get(f"{name}_std", math.nan)
    if not math.isfinite(std):
        return _num(mean)
    tiny = std <= 1e-9 * max(abs(mean), 1.0) if math.isfinite(mean) else False  # float noise of equal values
    return f"{_num(mean)} ± {'0' if tiny else f'{std:.2g}'}"


def _ranked(rows: Sequence[dict], key: str) -> list[dict]:
    """Rows with a finite final value of `key`, highest first (report order breaks ties)."""
    have = [r for r in rows if math.isfinite(r.get(f"{key}_final_mean", math.nan))]
    return sorted(have, key=lambda r: -r[f"{key}_final_mean"])


def _within_spread(a: dict, b: dict, key: str) -> bool:
    """True when two modes' final means differ by no more than the sum of their seed stds."""
    sa, sb = a[f"{key}_final_std"], b[f"{key}_final_std"]
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return False
    return abs(a[f"{key}_final_mean"] - b[f"{key}_final_mean"]) <= sa + sb


def _collapse_tests(row: dict) -> list[tuple[str, float, float, float, str]]:
    """(metric, final mean, final std, threshold, unit) of the collapse rule's criteria a row has."""
    out = []
    for key, threshold, unit in (
        ("val/kl", KL_COLLAPSE_NATS, "nats/segment"),
        ("val/zgap", ZGAP_COLLAPSE_NATS, "nats/token"),
    ):
        mean = row.get(f"{key}_final_mean", math.nan)
        if math.isfinite(mean):
            out.append((key, mean, row.get(f"{key}_final_std", math.nan), threshold, unit))
    return out


def collapsed_modes(rows: Sequence[dict]) -> dict[str, list[str]]:
    """{mode: reasons} of the modes that collapsed by the rule in the module docstring."""
    out = {}
    for row in rows:
        reasons = [
            f"{key} {_num(mean)} {unit}" for key, mean, _, thr, unit in _collapse_tests(row) if mean < thr
        ]
        if reasons:
            out[row["mode"]] = reasons
    return out


def borderline_modes(rows: Sequence[dict]) -> list[str]:
    """Modes whose collapse call would flip if a final mean moved by one seed std."""
    out = []
    for row in rows:
        tests = [
            (mean < thr, math.isfinite(std) and abs(mean - thr) <= std)
            for _, mean, std, thr, _ in _collapse_tests(row)
        ]
        below = [near for is_below, near in tests if is_below]
        if (below and all(below)) or (not below and any(near for _, near in tests)):
            out.append(row["mode"])
    return out


def _leader_line(rows: Sequence[dict], key: str, label: str, unit: str) -> tuple[str, str | None]:
    """('- **label** (final key): mode, value unit (n=..; next: ..)', caveat or None) for the top mode."""
    ranked = _ranked(rows, key)
    if not ranked:
        return f"- **{label}** (final {key}): not logged in any run", None
    top, name = ranked[0], f"{key}_final"
    notes = [f"n={top.get(f'{name}_n', top['n_seeds'])}"]
    caveat = None
    if len(ranked) > 1:
        second = ranked[1]
        notes.append(f"next: {second['mode']}, {_stat(second, name)}")
        if _within_spread(top, second, key):
            caveat = f"{top['mode']}'s lead over {second['mode']} in {key} is within the seed spread"
    return (
        f"- **{label}** (final {key}): {top['mode']}, {_stat(top, name)} {unit} ({'; '.join(notes)})",
        caveat,
    )


def verdict_text(rows: Sequence[dict]) -> str:
    """The verdict, as markdown bullets, derived from a `summarize` table."""
    if not _ranked(rows, "val/kl"):
        return "- No validation was logged in any run: no verdict."
    lines, caveats = [], []
    for key, label, unit in (
        ("val/kl", "Most KL kept", "nats/segment"),
        ("val/au", "Most active units", "dims"),
        ("val/zgap", "Largest z-gap, the decoder uses z most", "nats/token"),
    ):
        line, caveat = _leader_line(rows, key, label, unit)
        lines.append(line)
        caveats += [caveat] if caveat else []
    rule = (
        f"final val/kl < {KL_COLLAPSE_NATS} nats/segment or final val/zgap < {ZGAP_COLLAPSE_NATS} nats/token"
    )
    collapsed = collapsed_modes(rows)
    named = "; ".join(f"{mode} ({', '.join(why)})" for mode, why in collapsed.items())
    lines.append(f"- **Collapsed** ({rule}): {named or 'no mode'}")
    kept = [r["mode"] for r in rows if _collapse_tests(r) and r["mode"] not in collapsed]
    lines.append(f"- **Not collapsed**: {', '.join(kept) or 'no mode'}")
    unjudged = [r["mode"] for r in rows if not _collapse_tests(r)]
    if unjudged:
        lines.append(f"- **Not judged** (no validation logged): {', '.join(unjudged)}")
    shaky = borderline_modes(rows)
    if shaky:
        caveats.append(f"the collapse call for {', '.join(shaky)} is within one seed std of the threshold")
    if collapsed and not kept:
        caveats.append(
            "every mode collapsed: the runs are probably too short or too small to tell modes apart"
        )
    single = [r["mode"] for r in rows if r["n_seeds"] < 2]
    if single:
        which = "every mode" if len(single) == len(rows) else ", ".join(single)
        caveats.append(
            f"one seed only for {which}: differences may be seed noise (repeat with seeds=[0,1,2])"
        )
    lines += [f"- **Caveat**: {c}" for c in caveats]
    return "\n".join(lines)


# ----- figures ----------------------------------------------------------------------------------------


def ema(values: Sequence[float], weight: float = TRAIN_EMA) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing)."""
    out, acc = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def aggregate_curves(series: Sequence[Series], smooth: float | None = None) -> tuple[np.ndarray, ...]:
    """(steps, mean, min, max) over runs on the union of their steps.

    Each run is interpolated linearly inside its own step range (NaN outside, e.g. a shorter run) and
    optionally EMA-smoothed first; the statistics use the runs present at each step.
    """
    clean = [{s: v for s, v in ser.items() if math.isfinite(v)} for ser in series]
    clean = [c for c in clean if c]
    if not clean:
        return (np.empty(0),) * 4
    steps = np.array(sorted(set().union(*clean)), dtype=float)
    grid = np.full((len(clean), len(steps)), np.nan)
    for i, c in enumerate(clean):
        x, y = (np.array(v, dtype=float) for v in zip(*sorted(c.items()), strict=True))
        y = ema(y, smooth) if smooth else y
        inside = (steps >= x[0]) & (steps <= x[-1])
        grid[i, inside] = np.interp(steps[inside], x, y)
    present = ~np.isnan(grid)
    mean = np.nansum(grid, 0) / np.maximum(present.sum(0), 1)
    return steps, mean, np.fmin.reduce(grid, 0), np.fmax.reduce(grid, 0)


def _colour(mode: str, modes: Sequence[str]) -> str:
    """A fixed colour per mode, the same in every figure."""
    return f"C{list(modes).index(mode) % 10}"


def _plot_metric(ax, groups: dict[str, list[Run]], key: str, smooth: float | None = None) -> bool:
    """One line per mode (mean over seeds) with a min–max band; False when no run logged `key`."""
    drew = False
    for mode, runs in groups.items():
        steps, mean, lo, hi = aggregate_curves([r.series.get(key, {}) for r in runs], smooth)
        if len(steps) == 0:
            continue
        colour, marker = _colour(mode, list(groups)), ("o" if len(steps) <= 30 and not smooth else None)
        ax.plot(steps, mean, color=colour, marker=marker, ms=3, lw=1.6, label=f"{mode} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.18, lw=0)
        drew = True
    if not drew:
        ax.text(0.5, 0.5, f"{key} not logged in any run", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    return drew


def _plot_beta(ax, groups: dict[str, list[Run]]) -> None:
    """β on a second y-axis, dashed: one black line when every run shares the schedule, else one per mode."""
    betas = {
        mode: [r.series["train/beta"] for r in runs if "train/beta" in r.series]
        for mode, runs in groups.items()
    }
    every = [b for bs in betas.values() for b in bs]
    if not every:
        return
    twin = ax.twinx()
    if all(b == every[0] for b in every):
        twin.plot(list(every[0]), list(every[0].values()), "k--", lw=1, alpha=0.6, label="β (all runs)")
    else:
        for mode, bs in betas.items():
            steps, mean, _, _ = aggregate_curves(bs)
            if len(steps):
                twin.plot(
                    steps, mean, "--", color=_colour(mode, list(groups)), lw=1, alpha=0.7, label=f"β {mode}"
                )
    top = max(max(b.values()) for b in every)
    twin.set_ylim(0, 1.05 * top if top > 0 else 1.0)
    twin.set_ylabel("β (dashed)")


def _save(fig: Figure, path: Path) -> None:
    """Write a figure as PNG through the Agg canvas, with one legend for the axes and their twins."""
    handles, labels = [], []
    for ax in fig.axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.8, 0.5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    FigureCanvasAgg(fig).print_png(str(path))


def plot_kl(groups: dict[str, list[Run]], path: Path) -> None:
    """kl_curves.png: val/kl (top) and EMA-smoothed train/kl (bottom) per mode, β dashed on the right axis."""
    fig = Figure(figsize=(11, 7), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _plot_metric(top, groups, "val/kl")
    top.axhline(KL_COLLAPSE_NATS, color="grey", ls=":", lw=1, label=f"collapse: {KL_COLLAPSE_NATS} nats")
    top.set_title("Validation KL (z = mu), nats/segment — mean over seeds, band min–max")
    _plot_metric(bottom, groups, "train/kl", smooth=TRAIN_EMA)
    bottom.set_title(f"Training KL, nats/segment — EMA-smoothed (weight {TRAIN_EMA})")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        _plot_beta(ax, groups)
    _save(fig, path)


def plot_val_metric(
    groups: dict[str, list[Run]], key: str, title: str, path: Path, threshold: float | None = None
) -> None:
    """One validation metric against step per mode, β dashed on the right axis (zgap.png, recon.png)."""
    fig = Figure(figsize=(11, 4.5), dpi=110)
    ax = fig.subplots()
    _plot_metric(ax, groups, key)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"collapse: {threshold}")
    ax.set_title(title)
    ax.set_xlabel("step")
    _plot_beta(ax, groups)
    _save(fig, path)


# ----- outputs ----------------------------------------------------------------------------------------


def write_summary_csv(rows: Sequence[dict], path: Path) -> None:
    """summary.csv: the `summarize` table; NaN (e.g. the std of a single seed) as an empty cell."""
    columns = list(rows[0]) if rows else ["mode"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


def copy_samples(groups: dict[str, list[Run]], report_dir: Path) -> dict[str, tuple[str, list[Path]]]:
    """Copy each mode's samples (of its first seed's run that has any) to report/samples/<mode>/.

    Returns {mode: (run name, copied paths relative to report_dir)}.
    """
    root = report_dir / "samples"
    if root.exists():
        shutil.rmtree(root)  # our own output: no stale samples from an earlier report
    copied = {}
    for mode, runs in groups.items():
        run = next((r for r in runs if r.samples), None)
        if run is None:
            continue
        files = []
        for src in run.samples:
            dst = root / mode / src.relative_to(run.path / "samples")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            files.append(dst.relative_to(report_dir))
        copied[mode] = (run.name, files)
    return copied


def _md_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A markdown table: one row per mode, a 'mean ± std' cell per (name, header)."""
    head = "| mode | seeds | " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "---|" * (len(columns) + 2)
    body = [
        f"| {r['mode']} | {r['n_seeds']} | " + " | ".join(_stat(r, n) for n, _ in columns) + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body])


def _md_samples(copied: dict[str, tuple[str, list[Path]]]) -> str:
    """The samples section: per mode, the run they come from and one line per sample (MIDI, piano roll)."""
    if not copied:
        return "No run has a samples/ folder."
    parts = []
    for mode, (run_name, files) in copied.items():
        by_stem: dict[str, list[Path]] = {}
        for f in files:
            by_stem.setdefault(str(f.with_suffix("")), []).append(f)
        items = [
            f"- {Path(stem).name}: " + " · ".join(f"[{f.suffix.lstrip('.')}]({f.as_posix()})" for f in fs)
            for stem, fs in by_stem.items()
        ]
        parts.append(f"### {mode} (run `{run_name}`)\n\n" + "\n".join(items))
    return "\n\n".join(parts)


def summary_markdown(
    sweep_dir: Path, runs: Sequence[Run], skipped: Sequence[Path], rows: Sequence[dict], copied: dict
) -> str:
    """summary.md: the verdict, the tables, the figures and the samples."""
    modes = ", ".join(f"{r['mode']} ({r['n_seeds']})" for r in rows)
    head = f"Sweep `{Path(sweep_dir).resolve().name}`: {len(runs)} runs — seeds per mode: {modes}."
    if skipped:
        head += (
            f" {len(skipped)} run folder(s) without metrics.csv skipped: "
            + ", ".join(f"`{p.name}`" for p in skipped)
            + "."
        )
    headers = [(key, f"{key} ({unit})" if unit else key) for key, _, unit in METRICS]
    sections = [
        "# Posterior collapse across decoder conditionings",
        head,
        "## Verdict",
        verdict_text(rows),
        f"Collapse rule: final val/kl < {KL_COLLAPSE_NATS} nats/segment (z carries almost nothing) or final "
        f"val/zgap < {ZGAP_COLLAPSE_NATS} nats/token (the decoder does as well with another segment's z). "
        "Means over seeds.",
        "## Summary",
        "Mean ± std over seeds (sample std; only the mean for one seed); a mode's seed count is in `seeds`, "
        "and summary.csv has the n behind every cell. *Final* is the last validation; *best* the max over "
        "validations (the min for val/recon and val/ppl).",
        "### Final (last validation)",
        _md_table(rows, [(f"{k}_final", h) for k, h in headers]),
        "### Best over training",
        _md_table(rows, [(f"{k}_best", h) for k, h in headers]),
    ]
    if rows and "chroma_sim_mean" in rows[0]:
        sections += [
            "### Musical fidelity (test split)",
            "Chroma and groove similarity: per-bar cosine between inputs and their reconstructions (1 = same). "
            "Pitch-class entropy (bits) and note density of prior samples against the data.",
            _md_table(rows, FIDELITY),
        ]
    sections += [
        "## Curves",
        "![KL curves](kl_curves.png)",
        "![z-gap](zgap.png)",
        "![reconstruction](recon.png)",
        "## Samples",
        _md_samples(copied),
    ]
    return "\n\n".join(sections) + "\n"


def read_verdict(report_dir: Path) -> str:
    """The verdict section of a written summary.md."""
    text = (Path(report_dir) / "summary.md").read_text()
    return text.split("## Verdict\n\n", 1)[-1].split("\n\n## ", 1)[0].strip()


def write_report(sweep_dir: Path) -> Path:
    """Read the runs of a sweep dir and write SWEEP_DIR/report/ (see the module docstring). -> report dir."""
    sweep_dir = Path(sweep_dir)
    runs, skipped = find_runs(sweep_dir)
    report_dir = sweep_dir / REPORT_DIRNAME
    report_dir.mkdir(exist_ok=True)
    groups = group_by_mode(runs)
    rows = summarize(runs)
    log.info("%d runs in %d modes (%d skipped) -> %s", len(runs), len(groups), len(skipped), report_dir)
    plot_kl(groups, report_dir / "kl_curves.png")
    plot_val_metric(
        groups, "val/zgap", "z-gap: NLL with a shuffled z minus NLL with its own z, nats/token (~0: z unused)",
        report_dir / "zgap.png", threshold=ZGAP_COLLAPSE_NATS,
    )  # fmt: skip
    plot_val_metric(
        groups,
        "val/recon",
        "Validation reconstruction NLL, nats/token (lower is better)",
        report_dir / "recon.png",
    )
    write_summary_csv(rows, report_dir / "summary.csv")
    copied = copy_samples(groups, report_dir)
    (report_dir / "summary.md").write_text(summary_markdown(sweep_dir, runs, skipped, rows, copied))
    return report_dir
