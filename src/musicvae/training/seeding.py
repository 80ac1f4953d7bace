"""Random streams under DDP: the same initial weights on every process, its own noise on each.

train() seeds every process with cfg.seed before it builds the model, so all ranks start from the same
weights (DDP broadcasts rank 0's anyway). After that, every rank would draw the very same dropout masks,
z ~ q(z|x) noise and transpositions for its different segments: noise repeated across the global batch
averages out no better than one rank's. `PerRankSeed` reseeds each process when training starts from
(seed, global rank, global step): per rank, and a resumed run does not replay the noise of its first
steps. Lightning restores no random state from a checkpoint, so `PerRankSeed` saves rank 0's (torch,
numpy, random) in it: a single-process run resumed from it goes on with the very noise the uninterrupted
run drew (its data position comes back with the sampler, `LengthGroupedBatches.resume_after`), so the two
end with the same weights. A DDP run reseeds every rank from (seed, rank, step) on resumption. The
validation noise is not touched: the module draws it from its own generator, fixed per segment of the
validation sample.

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


def random_state() -> dict:
    """torch's, numpy's and random's global states as tensors and plain data (a weights_only checkpoint)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "random": random.getstate(),
    }


def set_random_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))


class PerRankSeed(Callback):
    """Seed torch, numpy and random with rank_seed(seed, global rank, global step) when training starts
    (after the checkpoint is restored: the step is the one training starts from), or, for a single-process
    run resumed from a checkpoint that holds its random state, set that state."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.saved: dict | None = None  # the state a checkpoint brought (load_state_dict)
        self.world_size = 1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.world_size = trainer.world_size

    def state_dict(self) -> dict:
        """Saved in every checkpoint: rank 0's random state at that step (restored by a 1-process resume)."""
        return {"random_state": random_state(), "world_size": self.world_size}

    def load_state_dict(self, state_dict: dict) -> None:
        self.saved = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.saved is not None and trainer.world_size == 1 == self.saved.get("world_size"):
            set_random_state(self.saved["random_state"])
            log.info("random state restored from the checkpoint (step %d)", trainer.global_step)
            return
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
