#!/bin/bash
# Convergence pilot 2: the recipe at 9600 steps (lr 2e-3 cosine to 0), in_attention and none, seed 0.
cd /work/wt_conv
OUT=outputs/conv_pilot_9600
mkdir -p $OUT
for mode in in_attention none; do
  if [ -f $OUT/$mode/done ]; then continue; fi
  ( OMP_NUM_THREADS=1 MUSICVAE_DATA_DIR=/work/main/data PYTHONPATH=/work/wt_conv/src /work/main/.venv/bin/python scripts/train.py \
     experiment=demo_size model/conditioning=$mode kl=constant kl.beta=0.05 kl.zero_steps=600 \
     trainer.max_steps=9600 optim.lr=2e-3 seed=0 trainer.enable_progress_bar=false \
     eval.fidelity.n_reconstructions=32 eval.fidelity.n_samples=8 \
     hydra.run.dir=$OUT/$mode > $OUT/$mode.log 2>&1 && touch $OUT/$mode/done ) &
done
wait
