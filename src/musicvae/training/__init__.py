"""Training a VAE: `train(cfg)` (the run: data, model, Lightning trainer, loggers and callbacks from the
config, the end-of-run fidelity), the LightningModule that does the step (`module`), the KL schedule,
faults, resume, seeding, the media callback and the DDP launcher (`ddp`, `rank`)."""

from musicvae.training.train import train

__all__ = ["train"]
