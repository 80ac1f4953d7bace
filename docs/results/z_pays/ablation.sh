#!/usr/bin/env bash
# The recipe ablation of docs/results/z_pays: one run per line of RUNS (name, then overrides), seed 0,
# JOBS (3) single-thread processes side by side. Resumable: started again, a finished run is skipped and
# an interrupted one continues from its last checkpoint. Then `python scripts/compare.py OUT` reports.
#   bash docs/results/z_pays/ablation.sh [OUT] [RUNS]
set -euo pipefail
export OUT=${1:-outputs/z_pays_ablation}
RUNS=${2:-$(dirname "$0")/ablation_runs.txt}
export PY=${PY:-.venv/bin/python}
export BASE="experiment=demo_size kl=constant kl.beta=0.05 kl.zero_steps=300 trainer.max_steps=1500 \
trainer.val_check_interval=150 data.val_segments=256 eval.fidelity.n_reconstructions=32 \
eval.fidelity.n_samples=4 trainer.enable_progress_bar=false skip_finished=true resume=true seed=0"
mkdir -p "$OUT"

run_one() {  # name override...
  local name=$1; shift
  # shellcheck disable=SC2086  # BASE is a list of overrides
  if OMP_NUM_THREADS=1 "$PY" scripts/train.py $BASE "$@" "output_dir=$OUT/$name" "hydra.run.dir=$OUT/$name" \
      >> "$OUT/$name.log" 2>&1; then echo "done $name"; else echo "FAILED $name (see $OUT/$name.log)"; fi
}
export -f run_one
grep -v '^#' "$RUNS" | grep -v '^[[:space:]]*$' | xargs -P "${JOBS:-3}" -L 1 bash -c 'run_one "$@"' _
