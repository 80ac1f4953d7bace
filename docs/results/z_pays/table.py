"""The ablation table of docs/results/z_pays: one row per run of ablation.sh, its control beside it.

    python docs/results/z_pays/table.py [OUT] > docs/results/z_pays/ablation.md

Each `*_in` run (a decoder with z) is set against the `none` run trained on the same data, size, optimiser
and steps (`CONTROL`); where two `none` runs fit (token dropout handicaps a decoder without z), against the
better of the two. Convergence is the report's own rule (musicvae.report.checks.convergence).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from musicvae.report.checks import convergence
from musicvae.report.runs import find_runs, metric_series

# The controls of each run: the `none` runs at its data, size, optimiser and steps (others: base_none).
CONTROL = {
    "td3_in": ("base_none", "td3_none"),
    "bar1_in": ("bar1_none",),
    "d64_bar_in": ("d64_none",),
    "d64_in": ("d64_none",),
    "lr2_bar_in": ("lr2_none",),
    "lr2_in": ("lr2_none",),
    "bar4_bar_in": ("bar4_none",),
    "bar4_in": ("bar4_none",),
    "td3_none": ("base_none",),
    "rec_in_lr2": ("rec_none_lr2",),
    "b16_bar_in": ("b16_none",),
}
KEYS = ("val/distortion", "val/kl", "val/zgap", "val/au", "val/recon_acc")


def final(run, key: str) -> float:
    series = metric_series(run, key)
    return series[max(series)] if series else float("nan")


def wall_minutes(run) -> float:
    """From the first timestamp of the run's log (OUT/<name>.log) to the log's last write (the run's end)."""
    log = run.path.parent / f"{run.name}.log"
    if not log.exists():
        return float("nan")
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("[20"):  # Hydra's log format: [YYYY-mm-dd HH:MM:SS,mmm][logger][LEVEL] - ...
            start = datetime.strptime(line[1:20], "%Y-%m-%d %H:%M:%S").timestamp()
            return (log.stat().st_mtime - start) / 60
    return float("nan")


def _or_dash(x: float) -> str:
    return "—" if x != x else f"{x:.1f}"  # NaN: no log beside the run (a copy under docs/results)


def main(out: Path) -> None:
    runs, _ = find_runs(out)
    by_name = {r.name: r for r in runs}
    print("| run | steps | converged (fall, last quarter) | distortion | control | Δ distortion vs control | KL | z-gap | AU "
          "| recon acc | chroma | groove | wall min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(by_name, key=lambda n: by_name[n].path.stat().st_mtime):
        run = by_name[name]
        conv = convergence(metric_series(run, "val/distortion"))
        d = {k: final(run, k) for k in KEYS}
        fid = run.fidelity or {}
        controls = [by_name[c] for c in CONTROL.get(name, ("base_none",)) if c in by_name and c != name]
        if name.startswith("rec_none") or (name.endswith("_none") and name != "td3_none"):
            controls = []
        best = min(controls, key=lambda c: final(c, "val/distortion"), default=None)
        delta = d["val/distortion"] - final(best, "val/distortion") if best else float("nan")
        print(
            f"| {name} | {conv.step} | {'yes' if conv.converged else 'no'} ({conv.fall:.1%}) | {d['val/distortion']:.1f} "
            f"| {best.name if best else '—'} | {delta:+.1f} | {d['val/kl']:.1f} | {d['val/zgap']:.3f} | {d['val/au']:.0f} "
            f"| {d['val/recon_acc']:.3f} | {fid.get('chroma_sim', float('nan')):.3f} | {fid.get('groove_sim', float('nan')):.3f} "
            f"| {_or_dash(wall_minutes(run))} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/z_pays_ablation"))
