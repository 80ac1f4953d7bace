#!/bin/bash
# From the repository root:  bash docs/results/control/run.sh [OUT]
# Two demo-size per-bar models on 2-bar Bach segments, the same but for attribute-conditioned decoding
# (model.attributes=[rhythm,polyphony]) in one; trained side by side (one thread each), then attribute vectors
# of both and the control evaluation on the test split.
set -eu
OUT=${1:-outputs/control}
mkdir -p "$OUT"
python scripts/prepare_data.py data=bach_2bar > "$OUT/prepare.log" 2>&1
COMMON="experiment=demo_size model.latent=bar trainer.max_steps=1000 trainer.val_check_interval=250
  kl=cyclical kl.beta=0.2 kl.zero_steps=100 kl.cycles=2 eval.fidelity.n_reconstructions=32 trainer.enable_progress_bar=false"
OMP_NUM_THREADS=1 python scripts/train.py $COMMON "model.attributes=[rhythm,polyphony]" output_dir="$OUT/attributes" \
  > "$OUT/train_attributes.log" 2>&1 &
a=$!
OMP_NUM_THREADS=1 python scripts/train.py $COMMON output_dir="$OUT/plain" > "$OUT/train_plain.log" 2>&1 &
b=$!
wait $a; wait $b
EVAL="control=true vectors=true n_segments=32 batch_size=16"
OMP_NUM_THREADS=1 python scripts/evaluate.py ckpt="$OUT/attributes/checkpoints/last.ckpt" $EVAL out_dir="$OUT/eval_attributes" \
  > "$OUT/eval_attributes.log" 2>&1 &
a=$!
OMP_NUM_THREADS=1 python scripts/evaluate.py ckpt="$OUT/plain/checkpoints/last.ckpt" $EVAL out_dir="$OUT/eval_plain" \
  > "$OUT/eval_plain.log" 2>&1 &
b=$!
wait $a; wait $b
cat "$OUT/eval_attributes/evaluation.md" "$OUT/eval_plain/evaluation.md"
