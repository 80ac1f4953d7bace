"""Random streams under DDP: the same initial weights on every process, its own noise on each.

train() seeds every process with cfg.seed before it builds the model, so all ranks start from the same
weights (DDP broadcasts rank 0's anyway). After that, every rank would draw the very same dropout masks,
z ~ q(z|x) noise and transpositions for its different segments: noise repeated across the global batch
averages out no better than one rank's. `PerRankSeed` reseeds each process when training starts from
(seed, global rank, global step): per rank, and a resumed run does not replay the noise of its first
steps (Lightning restores no random state from a checkpoint). The validation noise is not touched: the
module draws it from its own generator, fixed per segment of the validation sample.

Only these generators are reseeded; PL_GLOBAL_SEED (set by seed_everything) stays the run's seed, because
Lightning's DistributedSampler shuffles with it and must shuffle the same way on every rank.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

log = logging.getLogger(__name__)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A 32-bit seed for (run seed, global rank, global step), unrelated across its arguments."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(rank), int(step)]).generate_state(1)[0])


class PerRankSeed(Callback):
    """Seed torch, numpy and random with rank_seed(seed, global rank, global step) when training starts
    (after the checkpoint is restored: the step is the one training starts from)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed = rank_seed(self.seed, trainer.global_rank, trainer.global_step)
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed)
        random.seed(seed)
        log.info(
            "rank %d: noise seeded with %d (seed %d, step %d)",
            trainer.global_rank,
            seed,
            self.seed,
            trainer.global_step,
        )
