#!/usr/bin/env bash
# The recipe ablation of docs/results/z_pays: one run per line of RUNS (name | overrides), seed 0, three
# single-thread processes side by side. Resumable: started again, a finished run is skipped and an
# interrupted one continues from its last checkpoint. Then `python scripts/compare.py OUT` for the report.
#   bash docs/results/z_pays/ablation.sh [OUT] [RUNS]
set -euo pipefail
OUT=${1:-outputs/z_pays_ablation}
RUNS=${2:-$(dirname "$0")/ablation_runs.txt}
PY=${PY:-.venv/bin/python}
BASE="experiment=demo_size kl=constant kl.beta=0.05 kl.zero_steps=300 trainer.max_steps=1500
 trainer.val_check_interval=150 data.val_segments=256 eval.fidelity.n_reconstructions=32
 eval.fidelity.n_samples=4 trainer.enable_progress_bar=false skip_finished=true resume=true seed=0"
mkdir -p "$OUT"
grep -v '^#' "$RUNS" | grep -v '^\s*$' | while read -r name overrides; do echo "$name $overrides"; done |
  xargs -P "${JOBS:-3}" -L 1 bash -c '
    name=$1; shift
    OMP_NUM_THREADS=1 '"$PY"' scripts/train.py '"$BASE"' "$@" output_dir='"$OUT"'/$name \
      hydra.run.dir='"$OUT"'/$name > '"$OUT"'/$name.log 2>&1 && echo "done $name" || echo "FAILED $name"' _
