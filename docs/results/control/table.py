"""The control study's table from its runs' evaluation.json: python docs/results/control/table.py OUT > table.md

Rows: attribute definitions x protocol x attribute, one per seed and their mean. ρ − copy is the number that
says whether control works: the copy baseline is what a decoder scores that ignores the request.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

from musicvae.report.checks import convergence

DEFINITIONS = {"ours": "ours (rhythm=positions, polyphony=onsets)",
               "musemorphose": "MuseMorphose's (sub_beats, sub_beats)"}  # fmt: skip
ANCHOR = {"rhythm": "0.95 / 0.023", "polyphony": "0.885 / 0.016"}  # MuseMorphose, its supplement Fig. 8: ρ / others


def fmt(value, interval=None) -> str:
    text = "–" if value is None else f"{value:.3f}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def main(out: Path) -> None:
    runs = {}
    for path in sorted(out.glob("*_s*/control/evaluation.json")):
        name = path.parent.parent.name
        runs[name] = json.loads(path.read_text())["details"]
    print("| definitions | protocol | attribute | seed | ρ requested vs achieved [95% CI] | copy baseline ρ | "
          "**ρ − copy** (paired) | shuffled-request ρ | mean abs ρ of the other | MuseMorphose (ρ / other) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for definition, label in DEFINITIONS.items():
        for protocol in ("absolute", "shift"):
            for attribute in ("rhythm", "polyphony"):
                diffs = []
                for name, result in runs.items():
                    if not name.startswith(definition + "_"):
                        continue
                    s = result["control"].get(protocol, {}).get(attribute)
                    if s is None:
                        continue
                    diffs.append(s["minus_copy"])
                    anchor = ANCHOR[attribute] if protocol == "shift" and definition == "musemorphose" else ""
                    print(f"| {label} | {protocol} | {attribute} | {name.rsplit('_s', 1)[1]} | "
                          f"{fmt(s['spearman'], s['spearman_ci95'])} | {fmt(s['copy_spearman'], s['copy_spearman_ci95'])} | "
                          f"**{fmt(s['minus_copy'], s['minus_copy_ci95'])}** | "
                          f"{fmt(s['shuffled_spearman'], s['shuffled_spearman_ci95'])} | "
                          f"{fmt(s['others_abs_spearman'], s['others_abs_spearman_ci95'])} | {anchor} |")  # fmt: skip
                if len(diffs) > 1 and None not in diffs:
                    print(f"| {label} | {protocol} | {attribute} | mean | | | **{np.mean(diffs):.3f}** | | | |")
    print()
    print("| run | final val/distortion (nats/segment) | val/kl | val/au | val/zgap | converged (val/distortion fell over "
          "the last quarter) | chroma / groove of the requested decodes |")
    print("|---|---|---|---|---|---|---|")
    for name, result in runs.items():
        last = last_validation(out / name / "metrics.csv")
        conv = convergence({s: row["val/distortion"] for s, row in validations(out / name / "metrics.csv").items()})
        f = result["fidelity"]
        print(f"| {name} | {last['val/distortion']:.1f} | {last['val/kl']:.1f} | {last['val/au']:.0f} | "
              f"{last['val/zgap']:.3f} | {'yes' if conv.converged else 'no'} ({conv.fall:.1%}) | "
              f"{f['chroma_sim']:.3f} / {f['groove_sim']:.3f} |")  # fmt: skip


def validations(metrics: Path) -> dict[int, dict[str, float]]:
    """step -> the val/* values logged at that step (metrics.csv of a run)."""
    out: dict[int, dict[str, float]] = {}
    with metrics.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/distortion"):
                out[int(row["step"])] = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
    return out


def last_validation(metrics: Path) -> dict[str, float]:
    rows = validations(metrics)
    return rows[max(rows)]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
