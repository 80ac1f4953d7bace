"""What the weights' average buys at a run's last step: the validation metrics of a finished run's last.ckpt,
read once with its averaged weights (`state_dict`, what the run logged and what sampling uses) and once with
the raw weights it kept beside them (`current_model_state`).

    python docs/results/rate_distortion_demo/ema_vs_raw.py RUN_DIR [RUN_DIR ...] > ema_vs_raw.csv

Each RUN_DIR is a training run's folder (config.yaml, checkpoints/last.ckpt); its data cache must be where
its config says (data.cache_dir). One validation pass per weight set on the run's fixed validation sample.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from musicvae.data import MidiDataModule
from musicvae.models.checkpoint import read_checkpoint
from musicvae.training.train import build_module

KEYS = ("val/distortion", "val/kl", "val/zgap", "val/mi", "val/recon")


def validate(run_dir: Path, weights: str) -> dict[str, float]:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    module = build_module(cfg, dm)
    ckpt = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    module.load_state_dict(ckpt[weights])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return {"run": run_dir.name, "weights": weights, "step": ckpt["global_step"], **{k: metrics[k] for k in KEYS}}


def main(run_dirs: list[str]) -> None:
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    writer = csv.DictWriter(sys.stdout, fieldnames=["run", "weights", "step", *KEYS])
    writer.writeheader()
    for run_dir in map(Path, run_dirs):
        for weights in ("state_dict", "current_model_state"):
            writer.writerow(validate(run_dir, weights))
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
