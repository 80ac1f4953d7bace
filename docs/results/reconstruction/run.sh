#!/usr/bin/env bash
# Whole-piece fidelity over decoding settings (issue 31): the rate-distortion study's checkpoints at its tuned
# rate (beta 0.05, lr 2e-3, 4,800 steps, the weights' moving average), seed 0, one per decoder; 10 test chorales
# each, reconstructed whole as sample.py does (skeleton kept), beside the same model decoding another piece's
# latents. One single-thread process; resumable (a setting whose pieces.json exists is not run again).
#   RD=<the study's sweep dir> OUT=docs/results/reconstruction bash docs/results/reconstruction/run.sh
set -euo pipefail
RD=${RD:?the rate_distortion_demo sweep dir} OUT=${OUT:-docs/results/reconstruction} PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SETTINGS=(
  "greedy pieces.top_k=1"
  "t0.5 pieces.temperature=0.5"
  "t0.8 pieces.temperature=0.8"
  "t1.0 pieces.temperature=1.0"
  "t0.8_p0.9 pieces.temperature=0.8 pieces.top_p=0.9"
  "t1.0_p0.9 pieces.temperature=1.0 pieces.top_p=0.9"
  "t0.5_free pieces.temperature=0.5 pieces.skeleton=false"
  "t1.0_free pieces.temperature=1.0 pieces.skeleton=false"
)
for mode in in_attention cross_attention none; do
  ckpt=$RD/beta0.05_lr0.002_${mode}_seed0/checkpoints/best-4800.ckpt
  for s in "${SETTINGS[@]}"; do
    read -r name overrides <<< "$s"
    dir=$OUT/runs/$mode/$name
    [ -f "$dir/pieces.json" ] && continue
    # shellcheck disable=SC2086
    $PY scripts/evaluate.py ckpt="$ckpt" fidelity=true pieces.n_pieces=10 $overrides out_dir="$dir" > /dev/null
    echo "$mode $name done $(date +%T)"
  done
done
$PY docs/results/reconstruction/table.py "$OUT/runs" > "$OUT/table.md"
