#!/bin/bash
# per-bar vs per-segment fidelity study, 2 seeds in parallel, one thread each
set -u
cd /work/study
source /work/main/.venv/bin/activate
export PYTHONPATH=/work/study/src
OUT=/work/study/outputs/per_bar_fidelity
mkdir -p $OUT
date -u +%FT%TZ > $OUT/started
python scripts/prepare_data.py data=bach paths.data_dir=/work/main/data > $OUT/prepare.log 2>&1
pids=""
for s in 0 1; do
  OMP_NUM_THREADS=1 python scripts/train.py -m experiment=per_bar_fidelity seed=$s paths.data_dir=/work/main/data \
    hydra.sweep.dir=$OUT '~hydra.callbacks.report' trainer.enable_progress_bar=false > $OUT/seed$s.log 2>&1 &
  pids="$pids $!"
done
for p in $pids; do wait $p; done
python scripts/compare.py $OUT > $OUT/compare.log 2>&1
date -u +%FT%TZ > $OUT/finished
