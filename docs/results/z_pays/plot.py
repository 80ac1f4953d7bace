"""Curves of the ablation of docs/results/z_pays: val/distortion per bar (segments of 1, 2 and 4 bars
side by side) and val/zgap against the training segments seen (steps x batch size: runs of batch 16 and
32 side by side), one line per run.

    python docs/results/z_pays/plot.py [OUT] docs/results/z_pays/ablation_curves.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from musicvae.report.runs import find_runs, metric_series, select  # noqa: E402


def main(out: Path, png: Path) -> None:
    runs, _ = find_runs(out)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: one per run
    for i, run in enumerate(sorted(runs, key=lambda r: r.name)):
        batch = int(select(run.config, "data.batch_size", 32))
        bars = int(select(run.config, "data.bars", 2))
        style = "--" if run.mode == "none" else "-"
        for ax, key in zip(axes, ("val/distortion", "val/zgap"), strict=True):
            series = metric_series(run, key)
            steps = sorted(series)
            per = bars if key == "val/distortion" else 1
            ax.plot([s * batch / 1000 for s in steps], [series[s] / per for s in steps], style, label=run.name, lw=1.2,
                    color=colors[i % len(colors)])
    axes[0].set_ylim(50, 90)
    for ax, title in zip(axes, ("val/distortion per bar (nats/bar, lower is better)", "val/zgap (nats/token)"), strict=True):
        ax.set_xlabel("training segments seen (thousands)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("z_pays ablation: dashed = none (no z), solid = in_attention")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
