#!/bin/bash
# From the repository root:  bash docs/results/grammar_mask/run.sh [OUT]
# A model trained 30 steps (demo size, 4-bar Bach segments), then 7 interpolation steps and 8 prior
# samples decoded without and with the REMI grammar mask: malformed tokens dropped, bars per file.
set -eu
OUT=${1:-outputs/grammar_mask}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
python scripts/train.py experiment=demo_size data=bach trainer.max_steps=30 trainer.val_check_interval=30 \
  output_dir="$OUT/run" eval.fidelity.n_reconstructions=0 eval.fidelity.n_samples=0 \
  trainer.enable_progress_bar=false > "$OUT/train.log" 2>&1
A=$(ls data/midi/bach/*.mid | sed -n 10p); B=$(ls data/midi/bach/*.mid | sed -n 20p)
for g in false true; do
  python scripts/sample.py ckpt="$OUT/run/checkpoints/last.ckpt" mode=interpolate input="$A" input2="$B" steps=7 \
    grammar=$g piano_roll=false out_dir="$OUT/interpolate_grammar_$g" > "$OUT/interpolate_grammar_$g.log" 2>&1
  python scripts/sample.py ckpt="$OUT/run/checkpoints/last.ckpt" mode=prior n=8 grammar=$g piano_roll=false \
    out_dir="$OUT/prior_grammar_$g" > "$OUT/prior_grammar_$g.log" 2>&1
done
python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for kind in ("interpolate", "prior"):
    for g in ("false", "true"):
        r = json.loads((out / f"{kind}_grammar_{g}" / "samples.json").read_text())["results"]
        print(f"{kind:11s} grammar={g:5s} files={len(r)} tokens={sum(x['tokens'] for x in r)} "
              f"dropped={sum(x['malformed_tokens_dropped'] for x in r)} bars={[x['bars'] for x in r]} "
              f"notes_min={min(x['notes'] for x in r)}")
PY
