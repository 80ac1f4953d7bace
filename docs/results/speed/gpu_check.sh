#!/usr/bin/env bash
# The GPU checks issue 12 still asks for, as one short script for a session lent a device (~3 min on an
# H200 once the packages are in): run from the repo root, logs into $1 (default $OUT).
#   1. `benchmark.py train device=cuda` in bf16 at d_model 512, 6+6 layers, T 512: tokens/s and MFU against
#      the bf16 peak of an 8192² matmul measured in the same run (the last H200 run measured its peak at
#      2048², which leaves an H200 half idle);
#   2. `benchmark.py compare device=cuda`: training (bf16 autocast) and cached sampling vs x-transformers.
# Packages the machine lacks (x-transformers and what the project imports beyond torch) travel as wheels:
# see the device tool's README (pip download ... -d .whl, carry .whl, pip install --target /tmp/site).
set -u
DEST=${1:-${OUT:?usage: gpu_check.sh OUT_DIR}}
PY=${PY:-python3}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; git rev-parse HEAD;
  $PY -c "import torch; print('torch', torch.__version__)"; } > "$DEST/machine.txt" 2>&1
t0=$(date +%s)
$PY scripts/benchmark.py train device=cuda d_model=512 layers=6 seq_len=512 batch_size=32 > "$DEST/gpu_train.log" 2>&1
echo "gpu_train: $(( $(date +%s) - t0 )) s" >> "$DEST/times.txt"
$PY scripts/benchmark.py compare device=cuda uncached_length=128 > "$DEST/gpu_compare.log" 2>&1
echo "gpu_compare: $(( $(date +%s) - t0 )) s" >> "$DEST/times.txt"
