"""Compare the groups of a sweep.  python scripts/compare.py SWEEP_DIR   -> SWEEP_DIR/report/

SWEEP_DIR holds one folder per run (metrics.csv, config.yaml, optionally fidelity.json and samples/), as
written by `python scripts/train.py -m experiment=collapse_compare` (or experiment=rate_distortion).
See musicvae/report/ (its package docstring lists what the report writes).
"""

from musicvae.cli.compare import main

if __name__ == "__main__":
    main()
