#!/usr/bin/env bash
# The GPU-machine part of docs/results/speed/: run from the repo root on a machine with one CUDA GPU and
# >= 16 cores, the project's packages importable. Writes logs into $1 as it goes.
#   1. GPU: `benchmark.py train` in bf16 at d_model 512, 6+6 layers, T 512, the GPU to itself
#      (meanwhile the data cache is built once, on the CPU);
#   2. the attn_dropout x scaled_residual_init ablation on the demo's collapse metrics: 12 demo-size runs
#      (in_attention, collapse_demo's KL, seeds 0-2) side by side on the GPU, cores 4-15;
#   3. meanwhile CPU benchmarks on cores of their own: compare vs x-transformers on cores 0-1;
#      `benchmark.py train` at its defaults and cached sampling at 512 and 2,048 tokens before
#      (BEFORE_SRC, the code before the change) and after, on cores 2-3.
set -u
DEST=${1:?usage: device_run.sh OUT_DIR}  # gets one archive, results.tgz, refreshed every 15 s
BEFORE_SRC=${BEFORE_SRC:-}
PY=${PY:-python3}
OUT=/tmp/speed_results; mkdir -p "$OUT" "$DEST"
pack() { tar -czf "$DEST/.results.tgz" --exclude='*.ckpt' -C "$OUT" . 2>/dev/null && mv "$DEST/.results.tgz" "$DEST/results.tgz"; }
( while sleep 15; do pack; done ) & packer=$!
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; $PY -c "import torch; print('torch', torch.__version__)"; } > "$OUT/machine.txt" 2>&1
t0=$(date +%s); stamp() { echo "$1: $(( $(date +%s) - t0 )) s" >> "$OUT/times.txt"; }

taskset -c 4-15 $PY scripts/prepare_data.py data=bach_2bar > "$OUT/prepare.log" 2>&1 &
prep=$!
$PY scripts/benchmark.py train device=cuda d_model=512 layers=6 seq_len=512 batch_size=32 > "$OUT/gpu_train.log" 2>&1
stamp gpu_train
wait $prep; stamp prepare

SWEEP="$OUT/ablation"; mkdir -p "$SWEEP"; pids=""
for ad in 0.1 0.0; do for sri in false true; do for seed in 0 1 2; do
  name="ad${ad}_sri${sri}_seed${seed}"
  OMP_NUM_THREADS=1 taskset -c 4-15 $PY scripts/train.py experiment=demo_size trainer=gpu \
    kl.beta=0.2 kl.zero_steps=100 kl.cycles=2 seed=$seed \
    model.attn_dropout=$ad model.scaled_residual_init=$sri data.loader_workers=0 \
    eval.fidelity.n_reconstructions=0 eval.fidelity.n_samples=0 trainer.enable_progress_bar=false \
    output_dir="$SWEEP/$name" > "$OUT/log_$name.txt" 2>&1 &
  pids="$pids $!"
done; done; done

( OMP_NUM_THREADS=2 taskset -c 0,1 $PY scripts/benchmark.py compare > "$OUT/cpu_compare.log" 2>&1; stamp cpu_compare ) &
pids="$pids $!"
cpu() { OMP_NUM_THREADS=2 taskset -c 2,3 "$@"; }
cpu $PY scripts/benchmark.py train > "$OUT/cpu_train.log" 2>&1; stamp cpu_train
for length in 512 2048; do for side in after before; do
  src=$PWD/src; [ "$side" = before ] && src=$BEFORE_SRC
  [ -n "$src" ] || continue
  PYTHONPATH="$src:${PYTHONPATH#*:}" cpu $PY docs/results/speed/cached_sampling.py $length >> "$OUT/cpu_cached_sampling.log" 2>&1
done; done
stamp cpu_cached_sampling
for p in $pids; do wait $p; done; stamp all
$PY scripts/compare.py "$SWEEP" > "$OUT/ablation_report.log" 2>&1
echo done >> "$OUT/times.txt"
kill $packer; pack
