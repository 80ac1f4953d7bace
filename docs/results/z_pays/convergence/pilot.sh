#!/bin/bash
# Convergence pilot: the demo_size recipe at STEPS steps (lr 2e-3, cosine to 0), β 0 for 600 steps then 0.05,
# seed 0, one single-thread process per mode side by side, into OUT/<mode>; a finished mode is skipped.
#   bash pilot.sh 4800 outputs/conv_pilot in_attention none cross_attention
#   bash pilot.sh 9600 outputs/conv_pilot_9600 in_attention none
# Run from a worktree of the commit under study (6754b02 here), data from the main checkout.
STEPS=$1; OUT=$2; shift 2
mkdir -p "$OUT"
for mode in "$@"; do
  [ -f "$OUT/$mode/done" ] && continue
  ( OMP_NUM_THREADS=1 python scripts/train.py \
     experiment=demo_size model/conditioning=$mode kl=constant kl.beta=0.05 kl.zero_steps=600 \
     trainer.max_steps=$STEPS optim.lr=2e-3 seed=0 trainer.enable_progress_bar=false \
     eval.fidelity.n_reconstructions=32 eval.fidelity.n_samples=8 \
     hydra.run.dir="$OUT/$mode" > "$OUT/$mode.log" 2>&1 && touch "$OUT/$mode/done" ) &
done
wait
