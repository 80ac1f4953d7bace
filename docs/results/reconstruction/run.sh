#!/usr/bin/env bash
# Whole-piece fidelity over decoding settings (issue 31): the rate-distortion study's checkpoints at its tuned
# rate (beta 0.05, lr 2e-3, last.ckpt: 4,800 steps, the weights' moving average), seed 0, one per decoder; 10 test chorales
# each, reconstructed whole as sample.py does (skeleton kept), beside the same model decoding another piece's
# latents. One single-thread process; resumable (a setting whose pieces.json exists is not run again).
#   RD=<the study's sweep dir> OUT=docs/results/reconstruction bash docs/results/reconstruction/run.sh
set -euo pipefail
RD=${RD:?the rate_distortion_demo sweep dir} OUT=${OUT:-docs/results/reconstruction} PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SETTINGS=(  # every key given, so the table does not depend on the defaults of the day
  "greedy pieces.top_k=1 pieces.temperature=1.0 pieces.top_p=1.0 pieces.skeleton=true"
  "t0.5 pieces.top_k=0 pieces.temperature=0.5 pieces.top_p=1.0 pieces.skeleton=true"
  "t0.8 pieces.top_k=0 pieces.temperature=0.8 pieces.top_p=1.0 pieces.skeleton=true"
  "t1.0 pieces.top_k=0 pieces.temperature=1.0 pieces.top_p=1.0 pieces.skeleton=true"
  "t0.8_p0.9 pieces.top_k=0 pieces.temperature=0.8 pieces.top_p=0.9 pieces.skeleton=true"
  "t1.0_p0.9 pieces.top_k=0 pieces.temperature=1.0 pieces.top_p=0.9 pieces.skeleton=true"
  "t0.5_free pieces.top_k=0 pieces.temperature=0.5 pieces.top_p=1.0 pieces.skeleton=false"
  "t1.0_free pieces.top_k=0 pieces.temperature=1.0 pieces.top_p=1.0 pieces.skeleton=false"
)
for mode in in_attention cross_attention none; do
  ckpt=$RD/beta0.05_lr0.002_${mode}_seed0/checkpoints/last.ckpt  # step 4,800 (cross_attention's best is at 4,200)
  for s in "${SETTINGS[@]}"; do
    read -r name overrides <<< "$s"
    dir=$OUT/runs/$mode/$name
    [ -f "$dir/pieces.json" ] && continue
    # shellcheck disable=SC2086
    $PY scripts/evaluate.py ckpt="$ckpt" fidelity=true pieces.n_pieces=10 $overrides out_dir="$dir" > /dev/null
    echo "$mode $name done $(date +%T)"
  done
done
# The recipe's own rate (lr 1e-3) at two ends: the default decoding and the issue's (T = 1, skeleton off).
for mode in in_attention none; do
  ckpt=$RD/beta0.05_lr0.001_${mode}_seed0/checkpoints/last.ckpt
  for s in "${SETTINGS[0]}" "${SETTINGS[7]}"; do
    read -r name overrides <<< "$s"
    dir=$OUT/runs/${mode}_lr1e-3/$name
    [ -f "$dir/pieces.json" ] && continue
    # shellcheck disable=SC2086
    $PY scripts/evaluate.py ckpt="$ckpt" fidelity=true pieces.n_pieces=10 $overrides out_dir="$dir" > /dev/null
    echo "$mode lr1e-3 $name done $(date +%T)"
  done
done
$PY docs/results/reconstruction/table.py "$OUT/runs" > "$OUT/table.md"
