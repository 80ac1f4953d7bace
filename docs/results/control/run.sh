#!/bin/bash
# From the repository root:  bash docs/results/control/run.sh [OUT]
# Attribute-conditioned decoding (model.attributes=[rhythm,polyphony], MuseMorphose) on data=mixed (music whose
# texture varies: every class populated), at the conditioning study's recipe (experiment=demo_size: per-bar z,
# 2+2 layers d 128, 2,400 steps of batch 16; β 0 for 600 steps then 0.05, as `make demo`), under both attribute
# definitions (ours: rhythm=positions polyphony=onsets; MuseMorphose's: sub_beats for both), 2 seeds each: four
# runs, two side by side (one thread each). Then the control evaluation of each under both protocols with their
# baselines on 32 test segments, and the table. Resumable: a finished run is not trained again (skip_finished).
set -eu
OUT=${1:-outputs/control}
HERE=$(dirname "$0")
mkdir -p "$OUT"
MM="data.attributes.rhythm=sub_beats data.attributes.polyphony=sub_beats"
python scripts/prepare_data.py data=mixed > "$OUT/prepare_ours.log" 2>&1
python scripts/prepare_data.py data=mixed $MM > "$OUT/prepare_musemorphose.log" 2>&1
COMMON="experiment=demo_size data=mixed kl=constant kl.beta=0.05 kl.zero_steps=600 model.attributes=[rhythm,polyphony]
  eval.fidelity.n_reconstructions=32 trainer.enable_progress_bar=false skip_finished=true"
train() {  # name seed [overrides]
  OMP_NUM_THREADS=1 python scripts/train.py $COMMON "${@:3}" seed="$2" output_dir="$OUT/$1" > "$OUT/train_$1.log" 2>&1
}
evaluate() {  # name
  OMP_NUM_THREADS=1 python scripts/evaluate.py ckpt="$OUT/$1/checkpoints/last.ckpt" control=true \
    "control.protocol=[absolute,shift]" vectors=false n_segments=32 batch_size=16 out_dir="$OUT/$1/control" \
    > "$OUT/eval_$1.log" 2>&1
}
for seed in 0 1; do
  train ours_s$seed $seed & a=$!
  train musemorphose_s$seed $seed $MM & b=$!
  wait $a; wait $b
  evaluate ours_s$seed & a=$!
  evaluate musemorphose_s$seed & b=$!
  wait $a; wait $b
done
python "$HERE/table.py" "$OUT" > "$HERE/table.md"
cat "$HERE/table.md"
