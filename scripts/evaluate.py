"""Evaluate a checkpoint's control.  python scripts/evaluate.py ckpt=PATH control=true [control.protocol=shift]
-> evaluation.json, evaluation.md (ρ beside its copy and shuffled-request baselines, per protocol)."""

from musicvae.cli.evaluate import main

if __name__ == "__main__":
    main()
