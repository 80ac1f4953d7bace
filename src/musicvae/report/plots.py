"""The report's figures, drawn from statistics computed elsewhere (summary rows, curve bands).

Matplotlib's object API through the Agg canvas: no pyplot state, safe in a Hydra callback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicvae.report.groups import BETA_KEY
from musicvae.report.stats import Band
from musicvae.report.summary import TRAIN_EMA
from musicvae.report.verdict import KL_COLLAPSE_NATS, ZGAP_COLLAPSE_NATS

Curves = dict[str, dict[str, Band]]  # group label -> metric -> band over seeds


def colours(names: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per name, the same in every figure (tab20 once tab10 runs out)."""
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _plot_bands(ax, curves: Curves, key: str, smoothed: bool = False) -> None:
    """One line per group (mean over seeds) with its min–max band; a note when no run logged `key`."""
    palette = colours(list(curves))
    drew = False
    for label, bands in curves.items():
        band = bands.get(key)
        if band is None or len(band.steps) == 0:
            continue
        colour = palette[label]
        marker = "o" if len(band.steps) <= 30 and not smoothed else None
        ax.plot(
            band.steps, band.mean, color=colour, marker=marker, ms=3, lw=1.6, label=f"{label} (n={band.n})"
        )
        if band.n > 1:
            ax.fill_between(band.steps, band.lo, band.hi, color=colour, alpha=0.18, lw=0)
        drew = True
    if not drew:
        ax.text(0.5, 0.5, f"{key} not logged in any run", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)


def _plot_beta_schedule(ax, curves: Curves) -> None:
    """β on a second y-axis, dashed black: each distinct schedule once (groups of one β share a line)."""
    distinct: list = []
    for bands in curves.values():
        band = bands.get("train/beta")
        if band is None or not len(band.steps):
            continue
        if not any(np.array_equal(band.steps, d.steps) and np.allclose(band.mean, d.mean) for d in distinct):
            distinct.append(band)
    if not distinct:
        return
    twin = ax.twinx()
    label = "β (all runs)" if len(distinct) == 1 else f"β ({len(distinct)} schedules)"
    for i, band in enumerate(distinct):
        twin.plot(band.steps, band.mean, "k--", lw=1, alpha=0.5, label=label if i == 0 else None)
    top = max(float(np.nanmax(b.mean)) for b in distinct)
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
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.78, 0.5), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    FigureCanvasAgg(fig).print_png(str(path))


def plot_kl(curves: Curves, path: Path) -> None:
    """kl_curves.png: val/kl (top) and EMA-smoothed train/kl (bottom) per group, β dashed on the right."""
    fig = Figure(figsize=(12, 7), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _plot_bands(top, curves, "val/kl")
    top.axhline(KL_COLLAPSE_NATS, color="grey", ls=":", lw=1, label=f"collapse: {KL_COLLAPSE_NATS} nats")
    top.set_title("Validation KL (rate), nats/segment — mean over seeds, band min–max")
    _plot_bands(bottom, curves, "train/kl", smoothed=True)
    bottom.set_title(f"Training KL, nats/segment — EMA-smoothed (weight {TRAIN_EMA})")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        _plot_beta_schedule(ax, curves)
    _save(fig, path)


def plot_val_metric(curves: Curves, key: str, title: str, path: Path, threshold: float | None = None) -> None:
    """One validation metric against step per group, β dashed on the right axis (zgap.png, recon.png)."""
    fig = Figure(figsize=(12, 4.5), dpi=110)
    ax = fig.subplots()
    _plot_bands(ax, curves, key)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"collapse: {threshold}")
    ax.set_title(title)
    ax.set_xlabel("step")
    _plot_beta_schedule(ax, curves)
    _save(fig, path)


# ----- against β: one line per series (groups identical but for kl.beta), 95% intervals as error bars ----


def _point(row: dict, key: str) -> tuple[float, float, float]:
    """(mean, error below, error above) of a row's final value; no error bar without an interval."""
    mean, lo, hi = (row.get(f"{key}_final_{f}", math.nan) for f in ("mean", "lo", "hi"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return mean, 0.0, 0.0
    return mean, mean - lo, hi - mean


def _errorbar_line(ax, rows: Sequence[dict], xkey: str | None, ykey: str, colour, label: str) -> list:
    """Draw one series; x is final `xkey` (or β when None). Returns the points drawn: (row, x, y)."""
    pts = []
    for row in rows:
        x = (row[BETA_KEY], 0.0, 0.0) if xkey is None else _point(row, xkey)
        y = _point(row, ykey)
        if math.isfinite(x[0]) and math.isfinite(y[0]):
            pts.append((row, x, y))
    if not pts:
        return []
    n = sorted({int(r.get(f"{ykey}_final_n", 0) or 0) for r, _, _ in pts})
    xs, ys = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
    ax.errorbar(
        xs[:, 0], ys[:, 0], xerr=xs[:, 1:].T if xkey else None, yerr=ys[:, 1:].T, color=colour,
        marker="o", ms=4, lw=1.4, capsize=3, label=f"{label} (n={'/'.join(map(str, n))})",
    )  # fmt: skip
    return pts


def _beta_axis_label(rows: Sequence[dict]) -> str:
    """kl.beta; for other than constant schedules, say it is the schedule's maximum."""
    schedules = sorted(
        {str(r.get("kl.schedule")) for r in rows if r.get("kl.schedule") not in (None, "constant")}
    )
    return f"{BETA_KEY} (the max β of the {', '.join(schedules)} schedule)" if schedules else BETA_KEY


def plot_rate_distortion(series: dict[str, list[dict]], path: Path) -> None:
    """rate_distortion.png: final rate (x) against final distortion (y), one line per series through its
    β points (annotated), 95% intervals over seeds as error bars in both directions (none for n = 1)."""
    fig = Figure(figsize=(10, 6), dpi=110)
    ax = fig.subplots()
    palette = colours(list(series))
    drew = False
    for name, rows in series.items():
        for row, x, y in _errorbar_line(ax, rows, "val/rate", "val/distortion", palette[name], name):
            ax.annotate(
                f"β={row[BETA_KEY]:g}", (x[0], y[0]), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
            drew = True
    if not drew:
        ax.text(0.5, 0.5, "val/rate or val/distortion not logged in any run", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("rate: final val/rate = KL(q(z|x) ‖ p(z)), nats/segment")
    ax.set_ylabel("distortion: final val/distortion, nats/segment")
    ax.set_title("Rate–distortion (Alemi et al. 2018): lower distortion at the same rate is better\n"
                 "mean over seeds, error bars 95% t-interval")  # fmt: skip
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_beta(series: dict[str, list[dict]], path: Path) -> None:
    """beta.png: final val/zgap (left) and val/au (right) against β, one line per series, 95% intervals."""
    fig = Figure(figsize=(13, 4.8), dpi=110)
    axes = fig.subplots(1, 2)
    palette = colours(list(series))
    every = [r for rows in series.values() for r in rows]
    log_x = bool(every) and all(r[BETA_KEY] > 0 for r in every)
    for ax, key, unit in zip(axes, ("val/zgap", "val/au"), ("nats/token", "active dims"), strict=True):
        drew = False
        for name, rows in series.items():
            drew |= bool(_errorbar_line(ax, rows, None, key, palette[name], name))
        if not drew:
            ax.text(
                0.5, 0.5, f"{key} not logged in any run", ha="center", va="center", transform=ax.transAxes
            )
        if key == "val/zgap":
            ax.axhline(
                ZGAP_COLLAPSE_NATS, color="grey", ls=":", lw=1, label=f"collapse: {ZGAP_COLLAPSE_NATS}"
            )
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()  # ticks at the swept β values instead: no overlapping 10^k labels
        betas = sorted({r[BETA_KEY] for r in every if math.isfinite(r[BETA_KEY])})
        if betas:
            ax.set_xticks(betas, labels=[f"{b:g}" for b in betas])
        ax.set_xlabel(_beta_axis_label(every))
        ax.set_ylabel(f"final {key}, {unit}")
        ax.set_title(f"final {key} against β\nmean over seeds, 95% t-interval")
        ax.grid(alpha=0.3)
    _save(fig, path)
