"""Paired differences, seed by seed, of each settings group of a sweep against a reference group.

    python docs/results/speed/paired.py SWEEP_DIR [REFERENCE]    (default reference: attn_dropout 0.1,
                                                                  scaled init off: the old defaults)
Groups by (model.attn_dropout, model.scaled_residual_init); final value of each val metric; the
interval is the project's own Student-t interval (musicvae.report.stats.paired_difference).
"""

import sys
from pathlib import Path

from musicvae.report.runs import find_runs, select
from musicvae.report.stats import excludes_zero, final_and_best, paired_difference

METRICS = ("val/zgap", "val/kl", "val/mi", "val/au", "val/recon")


def main(sweep: str, reference: str = "0.1/False") -> None:
    runs, _ = find_runs(Path(sweep))
    groups: dict[str, dict[str, dict[int, float]]] = {}
    for run in runs:
        key = f"{select(run.config, 'model.attn_dropout')}/{select(run.config, 'model.scaled_residual_init')}"
        for metric in METRICS:
            if metric in run.series:
                final = final_and_best(run.series[metric], higher_is_better=metric != "val/recon")[0]
                groups.setdefault(key, {}).setdefault(metric, {})[run.seed] = final
    print(f"paired differences against attn_dropout/scaled_init = {reference} (final values, 95% t-interval)")
    for key in sorted(groups):
        if key == reference:
            continue
        cells = []
        for metric in METRICS:
            iv = paired_difference(groups[key][metric], groups[reference][metric])
            flag = " *" if excludes_zero(iv) else ""
            cells.append(f"{metric} {iv.mean:+.4g} [{iv.lo:+.4g}, {iv.hi:+.4g}]{flag}")
        print(f"  {key} (n={iv.n}): " + "; ".join(cells))
    print("  * the interval excludes 0")


if __name__ == "__main__":
    main(*sys.argv[1:])
