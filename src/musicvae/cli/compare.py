"""Compare the groups of a sweep.  musicvae-compare SWEEP_DIR   -> SWEEP_DIR/report/
(or python scripts/compare.py SWEEP_DIR)

SWEEP_DIR holds one folder per run (metrics.csv, config.yaml, optionally fidelity.json and samples/), as
written by `python scripts/train.py -m experiment=collapse_compare` (or experiment=rate_distortion).
See musicvae/report/ (its package docstring lists what the report writes).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from musicvae.errors import exit_on_user_error
from musicvae.report import read_verdict, write_report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write the posterior-collapse report of a conditioning sweep."
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder, whose subfolders are the runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report_dir = write_report(args.sweep_dir)
    print(f"report: {report_dir / 'summary.md'}")
    print(read_verdict(report_dir))


if __name__ == "__main__":
    main()
