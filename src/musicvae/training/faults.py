"""Faults a run reports or survives instead of failing silently.

- Preemption: SIGTERM (what a scheduler sends first) makes Lightning stop at the next batch; by itself
  the process would then exit 0 with no checkpoint since the last validation. `CheckpointOnInterrupt`
  writes `last.ckpt` at that point, and train() turns the stop into `Interrupted` (exit code 143).
- SIGUSR1 (what SLURM sends ahead of a time limit with `--signal=USR1@...`): under SLURM, Lightning's own
  handler saves a checkpoint and requeues the job (SLURMEnvironment's auto-requeue), and the requeued
  job resumes from it; elsewhere `CheckpointOnInterrupt` turns it into SIGTERM, so it stops the same way:
  a checkpoint, then exit 143. (hydra/launcher=slurm asks for SIGUSR2, which submitit itself handles by
  requeueing without a checkpoint: there `callbacks=[default,periodic_checkpoint]` bounds what is lost.)
- Non-finite losses and gradients: `NonFiniteGuard` stops the run with one clear error naming the step
  and the last good checkpoint (`callbacks.non_finite.on_nan=stop`, the default), or drops the batch and counts it
  (`callbacks.non_finite.on_nan=skip`). A stopped run writes no checkpoint after the fault, so last.ckpt stays finite.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

from musicvae.errors import UserError

log = logging.getLogger(__name__)

ON_NAN = ("stop", "skip")


class CheckpointOnInterrupt(Callback):
    """On SIGTERM (or SIGUSR1 outside SLURM), save the run's state to `path` (its last.ckpt) before
    Lightning stops."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._previous_usr1 = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not SLURMEnvironment.detect() and hasattr(signal, "SIGUSR1"):
            self._previous_usr1 = signal.signal(signal.SIGUSR1, _usr1_as_sigterm)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_usr1)
            self._previous_usr1 = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)


def _usr1_as_sigterm(signum, frame) -> None:
    log.warning("SIGUSR1 received (not under SLURM): stopping as for SIGTERM, with a checkpoint")
    os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM handler takes it from here (all ranks)


class NonFiniteLoss(UserError):
    """Training produced a NaN or infinite loss or gradient."""


class NonFiniteGuard(Callback):
    """Check the gradients before every optimizer step (a NaN or infinite loss makes them non-finite too):
    stop with a clear error, or drop the step and count it."""

    def __init__(self, on_nan: str = "stop"):
        if on_nan not in ON_NAN:
            raise UserError(f"callbacks.non_finite.on_nan={on_nan!r} is not one of {', '.join(ON_NAN)}")
        self.on_nan = on_nan
        self.skipped = 0

    def _fault(self, trainer: pl.Trainer, what: str) -> None:
        if self.on_nan == "skip":
            self.skipped += 1
            return
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        raise NonFiniteLoss(
            f"{what} at step {trainer.global_step}: training stopped. Last good checkpoint: "
            f"{last or 'none yet'}. Lower optim.lr or keep trainer.gradient_clip_val on; "
            "callbacks.non_finite.on_nan=skip drops such batches instead"
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads])).all():
            loss = float(trainer.callback_metrics.get("train/loss", math.nan))
            self._fault(trainer, f"non-finite loss or gradient (train/loss {loss})")
            optimizer.zero_grad(set_to_none=True)  # skip: no parameter has a grad, AdamW leaves them as they are
        if self.on_nan == "skip":  # a column of zeros under `stop` would say nothing
            pl_module.log("train/skipped", float(self.skipped))
